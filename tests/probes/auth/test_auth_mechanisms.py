"""The client half of each SASL mechanism, against the RFCs' own vectors and scramp's server half."""

from __future__ import annotations

import base64

import pytest
from scramp import ScramMechanism

from conformance.probes.auth.mechanisms import CANCEL, SCRAM, digest_md5, responder, untested_reason
from conformance.probes.wire.outcome import LocalError

pytestmark = pytest.mark.unit


def test_digest_md5_rfc2831_vector() -> None:
    """RFC 2831 4: chris / secret at elwood.innosoft.com gives response=d388dad90d4bbd760a152321f2143af7."""
    answer = digest_md5("chris", "secret", "imap/elwood.innosoft.com", cnonce="OA6MHXh6VqTrRk")
    challenge = (b'realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",qop="auth",algorithm=md5-sess,'
                 b"charset=utf-8")
    response = base64.b64decode(answer(challenge)).decode()
    assert "response=d388dad90d4bbd760a152321f2143af7" in response
    assert 'digest-uri="imap/elwood.innosoft.com"' in response and "nc=00000001" in response
    assert answer(b"rspauth=ea40f60335c427b5527b84dbabcdfffd") == ""


def _scram_server(mechanism: str, password: str) -> object:
    server_mech = ScramMechanism(mechanism)
    info = server_mech.make_auth_info(password)
    return server_mech.make_server(lambda username: info)


@pytest.mark.parametrize("mechanism", SCRAM)
def test_scram_against_scramp_server(mechanism: str) -> None:
    server = _scram_server(mechanism, "pencil")
    initial, answer = responder(mechanism, "user", "pencil")
    assert initial is not None
    server.set_client_first(base64.b64decode(initial).decode())  # type: ignore[attr-defined]
    final = answer(server.get_server_first().encode())  # type: ignore[attr-defined]
    server.set_client_final(base64.b64decode(final).decode())  # type: ignore[attr-defined]
    assert answer(server.get_server_final().encode()) == ""  # type: ignore[attr-defined]


def test_scram_cancels_when_the_server_cannot_prove_the_password() -> None:
    server = _scram_server("SCRAM-SHA-256", "another-password")
    initial, answer = responder("SCRAM-SHA-256", "user", "pencil")
    assert initial is not None
    server.set_client_first(base64.b64decode(initial).decode())  # type: ignore[attr-defined]
    answer(server.get_server_first().encode())  # type: ignore[attr-defined]
    forged = base64.b64encode(b"v=" + base64.b64encode(b"0" * 32)).decode()
    assert answer(base64.b64decode(forged)) == CANCEL


@pytest.mark.parametrize("mechanism", ["NTLM", "GSSAPI", "SCRAM-SHA-256-PLUS"])
def test_a_mechanism_we_cannot_speak_is_named(mechanism: str) -> None:
    with pytest.raises(LocalError, match=f"does not speak {mechanism}"):
        responder(mechanism, "user", "pencil")
    assert untested_reason(mechanism) == f"untested: mailconform does not speak {mechanism}"
