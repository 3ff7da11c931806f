"""tlslite-ng's record protection on OpenSSL: the same bytes as its own pure-Python AEADs, and in use."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from conformance.probes.tls.tlslite_stack import NativeAead, load_tlslite
from conformance.probes.tls.tlslite_stack import _aes_gcm as native_aes_gcm
from conformance.probes.tls.tlslite_stack import _chacha20 as native_chacha20
from conformance.probes.tls.tlslite_stack import _x25519 as native_x25519

pytestmark = pytest.mark.unit

CASES = [("python_aesgcm", native_aes_gcm, 16), ("python_aesgcm", native_aes_gcm, 32),
         ("python_chacha20_poly1305", native_chacha20, 32)]


@pytest.mark.parametrize(("pure_module", "native", "key_size"), CASES, ids=["aes128gcm", "aes256gcm", "chacha20"])
def test_the_native_aead_seals_and_opens_as_tlslite_ngs_own(pure_module, native, key_size) -> None:
    assert load_tlslite()  # imports tlslite-ng without its asyncore warning
    pure = importlib.import_module(f"tlslite.utils.{pure_module}").new
    key, nonce, data = bytearray(os.urandom(key_size)), bytearray(os.urandom(12)), bytearray(b"\x17\x03\x03\x00\x40")
    plaintext = bytearray(os.urandom(300))
    theirs, ours = pure(key), native(key)
    assert (ours.name, ours.isAEAD, ours.isBlockCipher, ours.nonceLength, ours.tagLength) == \
        (theirs.name, theirs.isAEAD, theirs.isBlockCipher, theirs.nonceLength, theirs.tagLength)
    sealed = ours.seal(nonce, plaintext, data)
    assert sealed == theirs.seal(nonce, plaintext, data)
    assert theirs.open(nonce, sealed, data) == plaintext == ours.open(nonce, sealed, data)


def test_a_forged_record_opens_to_none_as_tlslite_ng_expects() -> None:
    """tlslite-ng sends bad_record_mac when ``open`` returns None; an exception would escape as a crash."""
    aead = native_aes_gcm(bytearray(16))
    sealed = aead.seal(bytearray(12), b"secret", b"header")
    sealed[0] ^= 1
    assert aead.open(bytearray(12), sealed, b"header") is None
    with pytest.raises(ValueError, match="nonce"):
        aead.seal(bytearray(8), b"x", b"")


def test_x25519_gives_tlslite_ngs_own_results() -> None:
    """RFC 7748: the top bit of u is ignored and the scalar clamped, by both; a low-order point gives the
    all-zero secret that tlslite-ng refuses with its own alert."""
    assert load_tlslite()
    from tlslite.utils.x25519 import X25519_G, x25519

    scalars = [bytearray(os.urandom(32)) for _ in range(3)]
    points = [bytearray(X25519_G), bytearray(os.urandom(32)), bytearray(os.urandom(31) + b"\xff")]
    for scalar in scalars:
        for point in points:
            assert native_x25519(scalar, point) == x25519(scalar, point)
    low_order = bytearray(32)  # u = 0
    assert native_x25519(scalars[0], low_order) == x25519(scalars[0], low_order) == bytearray(32)


# a TLS 1.3 handshake with tlslite-ng against Python's ssl, in a fresh interpreter: the loader's effect on
# tlslite-ng's own modules, and that the handshake still completes on the wire
_HANDSHAKE = """
import socket, ssl, sys, threading
from conformance.probes.tls.tlslite_stack import load_tlslite
assert load_tlslite()
from tlslite.tlsconnection import TLSConnection
from tlslite.handshakesettings import HandshakeSettings
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
listener = socket.create_server(("127.0.0.1", 0))
def serve():
    conn, _ = listener.accept()
    with context.wrap_socket(conn, server_side=True) as tls:
        tls.sendall(tls.recv(100).upper())
threading.Thread(target=serve, daemon=True).start()
client = TLSConnection(socket.create_connection(listener.getsockname(), timeout=10))
settings = HandshakeSettings()
settings.minVersion = settings.maxVersion = (3, 4)
client.handshakeClientCert(settings=settings)
client.write(b"hello")
print(client.read(max=100, min=5).decode(), client.getCipherName(), client.getCipherImplementation())
"""


def test_a_tls13_handshake_runs_on_the_native_aead(tmp_path) -> None:
    from conformance.reference.pki import CertVariant, Pki

    chain, key = Pki.create(tmp_path).leaf(CertVariant.GOOD)
    done = subprocess.run([sys.executable, "-c", _HANDSHAKE, str(chain), str(key)], capture_output=True, text=True,
                          timeout=60, check=False)
    words = done.stdout.split()
    assert words[:1] == ["HELLO"] and words[-1] == "openssl", done.stdout + done.stderr
    assert words[1] in ("aes128gcm", "aes256gcm", "chacha20-poly1305")


def test_the_loader_hands_tlslite_ngs_record_layer_the_native_aeads() -> None:
    from tlslite import keyexchange, recordlayer

    assert load_tlslite() and load_tlslite()
    assert isinstance(recordlayer.createAESGCM(bytearray(16), ["python"]), NativeAead)
    assert isinstance(recordlayer.createCHACHA20(bytearray(32), ["python"]), NativeAead)
    assert keyexchange.x25519 is native_x25519
