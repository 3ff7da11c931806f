"""tlslite-ng, the independent TLS stack the probes use where OpenSSL cannot go (legacy suites to confirm,
TLS 1.3 tickets to read), imported once per process with its AEADs and X25519 on OpenSSL.

tlslite-ng computes record protection and X25519 in pure Python unless M2Crypto is installed, and M2Crypto
has no wheel: they were most of the 0-RTT ticket probe's CPU (``benchmarks/tlslite_crypto.py`` measures it
both ways). ``cryptography``'s AES-GCM, ChaCha20-Poly1305 and X25519 take the same
inputs and give the same bytes, so the handshake on the wire is unchanged; only the arithmetic moves to OpenSSL.
"""

from __future__ import annotations

import functools
import threading
import warnings

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

_NAMES = {(AESGCM, 16): "aes128gcm", (AESGCM, 32): "aes256gcm", (ChaCha20Poly1305, 32): "chacha20-poly1305"}


class NativeAead:
    """tlslite-ng's AEAD interface (the attributes its record layer reads, ``seal`` and ``open``) over an
    AEAD of ``cryptography``."""

    isBlockCipher = False
    isAEAD = True
    nonceLength = 12
    tagLength = 16
    implementation = "openssl"

    def __init__(self, kind: type[AESGCM | ChaCha20Poly1305], key: bytes | bytearray) -> None:
        self.name = _NAMES[kind, len(key)]
        self.key = key
        self._aead = kind(bytes(key))

    def seal(self, nonce: bytes | bytearray, plaintext: bytes | bytearray, data: bytes | bytearray) -> bytearray:
        """The ciphertext with its tag appended, as tlslite-ng's own ``seal``."""
        self._check(nonce)
        return bytearray(self._aead.encrypt(bytes(nonce), bytes(plaintext), bytes(data)))

    def open(self, nonce: bytes | bytearray, ciphertext: bytes | bytearray,
             data: bytes | bytearray) -> bytearray | None:
        """The plaintext, or None when the tag does not verify (tlslite-ng's convention: it sends the alert)."""
        self._check(nonce)
        try:
            return bytearray(self._aead.decrypt(bytes(nonce), bytes(ciphertext), bytes(data)))
        except InvalidTag:
            return None

    @staticmethod
    def _check(nonce: bytes | bytearray) -> None:
        if len(nonce) != 12:  # cryptography takes other lengths; TLS never does
            raise ValueError("Bad nonce length")


# the second argument is tlslite-ng's list of implementations to choose from: these are the one on offer
def _aes_gcm(key: bytes | bytearray, _implementations: object = None) -> NativeAead:
    return NativeAead(AESGCM, key)


def _chacha20(key: bytes | bytearray, _implementations: object = None) -> NativeAead:
    return NativeAead(ChaCha20Poly1305, key)


def _x25519(scalar: bytes | bytearray, point: bytes | bytearray) -> bytearray:
    """RFC 7748's X25519(k, u), as tlslite-ng's own ``x25519``; all zeros for a low-order point, which
    cryptography refuses and tlslite-ng then refuses itself, with its own alert."""
    key = X25519PrivateKey.from_private_bytes(bytes(scalar))
    try:
        return bytearray(key.exchange(X25519PublicKey.from_public_bytes(bytes(point))))
    except ValueError:
        return bytearray(32)


_LOADING = threading.Lock()


def load_tlslite() -> bool:
    """Import tlslite-ng (False if it is not installed) and give it the native AEADs and X25519; once per process.

    Call it from the event loop's thread before a worker thread of that loop uses tlslite-ng. Threads
    importing it for the first time at once meet its circular imports half-initialised (ImportError), and
    several targets' loops run in threads of their own (fixtures/prefetch.py): the first caller imports it,
    the others wait."""
    with _LOADING:
        return _load()


@functools.lru_cache(maxsize=1)
def _load() -> bool:
    # its package imports asyncore, deprecated since Python 3.11: that warning is not the user's concern
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import tlslite.api  # noqa: F401
            from tlslite import keyexchange, recordlayer, tlsconnection
        except ImportError:
            return False
    # both modules bound the factories by name at import; the record layer looks them up per key change
    for module in (recordlayer, tlsconnection):
        module.createAESGCM = _aes_gcm  # type: ignore[attr-defined]
        module.createCHACHA20 = _chacha20  # type: ignore[attr-defined]
    keyexchange.x25519 = _x25519  # type: ignore[attr-defined]
    return True
