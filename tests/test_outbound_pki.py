"""The outbound lab's PKI: a sender that trusts several labs' CAs at once (one CA file, as the real rig's
senders and policy daemon do) still verifies each lab's certificates."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from conformance.probes.outbound.pki import CA_CERT, LabPki

pytestmark = pytest.mark.unit


def _handshake(client: ssl.SSLObject, server: ssl.SSLObject, wires: tuple[ssl.MemoryBIO, ...]) -> None:
    """Both sides of a TLS handshake in memory: no socket, nothing to time out."""
    c_in, c_out, s_in, s_out = wires
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("the in-memory handshake did not finish")


def test_a_leaf_verifies_against_several_labs_cas(tmp_path: Path) -> None:
    labs = {name: (tmp_path / name, LabPki.load_or_create(tmp_path / name, f"{name}.lab.test"))
            for name in ("first", "second")}
    cafile = tmp_path / "all-cas.pem"
    cafile.write_bytes(b"".join((directory / CA_CERT).read_bytes() for directory, _ in labs.values()))
    host = "mx1.starttls.second.lab.test"
    issued = labs["second"][1].issue(host)
    (tmp_path / "chain.pem").write_bytes(issued.chain_pem)
    (tmp_path / "key.pem").write_bytes(issued.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    client_ctx = ssl.create_default_context(cafile=str(cafile))
    wires = tuple(ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(wires[0], wires[1], server_hostname=host)
    server = server_ctx.wrap_bio(wires[2], wires[3], server_side=True)
    _handshake(client, server, wires)
    assert client.version() is not None
