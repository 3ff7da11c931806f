"""IMAP wire parsing, ImapSession and the IMAP capability probe against a small fake server."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path
from typing import Any

import pytest
from certgen import make_pki
from cryptography.hazmat.primitives.serialization import Encoding
from fake_imap import FakeImap
from hostile import run, script, serving

from conformance.probes.imap.session import ImapSession, classify_imap_login, probe_imap_capabilities
from conformance.probes.imap.wire import (
    ImapResponse,
    capabilities_in,
    parse_status,
    quote_string,
    read_response,
)
from conformance.probes.wire.config import CleartextAuth, ProbeConfig
from conformance.probes.wire.outcome import Outcome, ProtocolViolation, Transcript
from conformance.target import Secret, Service

pytestmark = pytest.mark.unit

PASSWORD = "correct horse \"battery\" staple\\"


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    pki = make_pki()
    cert, key = pki.leaf("localhost").write(tmp_path_factory.mktemp("imap-tls"), "leaf")
    cert.write_bytes(cert.read_bytes() + pki.intermediate.cert.public_bytes(Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def cfg() -> ProbeConfig:
    return ProbeConfig(timeout=5, use_system_store=False, secrets=(PASSWORD,))


# --- wire ---------------------------------------------------------------------------------------

def test_status_and_capabilities_parsing() -> None:
    status = parse_status("OK [CAPABILITY IMAP4rev1 STARTTLS] hello")
    assert status is not None and status.code == "CAPABILITY IMAP4rev1 STARTTLS"
    assert capabilities_in((), status.code) == {"IMAP4REV1", "STARTTLS"}
    assert capabilities_in(["CAPABILITY imap4rev1 auth=plain"]) == {"IMAP4REV1", "AUTH=PLAIN"}
    assert capabilities_in(["OK [CAPABILITY X] done"]) == {"X"}
    assert parse_status("FETCH (FLAGS ())") is None


def test_quote_string_escapes_and_refuses_crlf() -> None:
    assert quote_string('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(ValueError):
        quote_string("a\r\nb")


def _read(data: bytes, tag: str = "A1") -> ImapResponse:
    async def main() -> ImapResponse:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_response(reader, tag, timeout=1, transcript=Transcript())
    return run(main())


def test_read_response_with_literal_and_untagged() -> None:
    response = _read(b"* 1 FETCH (BODY[] {11}\r\nhello\r\nworld)\r\n* OK [UNSEEN 1] x\r\nA1 OK [READ-ONLY] done\r\n")
    assert response.ok and response.code == "READ-ONLY" and response.text == "done"
    assert response.untagged[0] == "1 FETCH (BODY[] {11}\r\nhello\r\nworld)"
    assert str(response) == "A1 OK [READ-ONLY] done"


@pytest.mark.parametrize("data", [b"A2 OK wrong tag\r\n", b"+ go on\r\n", b"A1 MAYBE\r\n", b"* 1 {999999999}\r\n"])
def test_read_response_violations(data: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        _read(data)


def test_classify_login() -> None:
    def r(status: str, code: str | None = None) -> ImapResponse:
        return ImapResponse("A1", status, code, "")
    assert classify_imap_login(None, False) is CleartextAuth.NOT_TRIED
    assert classify_imap_login(r("OK"), False) is CleartextAuth.ACCEPTED
    assert classify_imap_login(r("BAD"), False) is CleartextAuth.REFUSED_FOR_TLS
    assert classify_imap_login(r("NO", "PRIVACYREQUIRED"), False) is CleartextAuth.REFUSED_FOR_TLS
    assert classify_imap_login(r("NO"), True) is CleartextAuth.REFUSED_FOR_TLS
    assert classify_imap_login(r("NO", "AUTHENTICATIONFAILED"), True) is CleartextAuth.CREDENTIALS_CHECKED
    assert classify_imap_login(r("NO"), False) is CleartextAuth.CREDENTIALS_CHECKED


# --- session and probe ---------------------------------------------------------------------------

@pytest.mark.parametrize("sasl_ir", [False, True])
def test_session_starttls_then_login_and_authenticate(tls_context: ssl.SSLContext, sasl_ir: bool) -> None:
    fake = FakeImap(tls_context, user="alice", password=PASSWORD, sasl_ir=sasl_ir)

    async def main() -> tuple[list[str], list[str]]:
        async with serving(fake, Service.IMAP) as endpoint, ImapSession(endpoint, cfg()) as imap:
            await imap.connect()
            assert imap.capabilities is not None and "LOGINDISABLED" in imap.capabilities
            assert (await imap.starttls()).ok
            assert imap.tls is not None and "LOGINDISABLED" not in (imap.capabilities or ())
            statuses = [(await imap.login("alice", "wrong")).status,
                        (await imap.authenticate_plain("alice", Secret(PASSWORD, "t"))).status]
            await imap.logout()
            return statuses, imap.transcript.lines

    statuses, lines = run(main())
    assert statuses == ["NO", "OK"]
    text = "\n".join(lines)
    token = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    assert PASSWORD not in text and token not in text and "wrong" not in text


def probe(fake: Any, service: Service = Service.IMAP) -> Any:
    async def main() -> Any:
        async with serving(fake, service) as endpoint:
            return await probe_imap_capabilities(endpoint, cfg())
    return run(main())


def test_probe_good_server(tls_context: ssl.SSLContext) -> None:
    fake = FakeImap(tls_context, greeting_caps=False)
    result = probe(fake)
    assert result.outcome is Outcome.COMPLETED, result.reason
    caps = result.result
    assert caps.logindisabled_before_tls and caps.starttls_offered and caps.tls is not None
    assert caps.post_tls is not None and "AUTH=PLAIN" in caps.post_tls
    assert caps.cleartext_login is CleartextAuth.REFUSED_FOR_TLS
    assert fake.logins and fake.logins[0] not in "\n".join(result.transcript)


def test_probe_server_checking_cleartext_login(tls_context: ssl.SSLContext) -> None:
    caps = probe(FakeImap(tls_context, logindisabled=False)).result
    assert not caps.logindisabled_before_tls
    assert caps.cleartext_login is CleartextAuth.CREDENTIALS_CHECKED
    assert caps.login_before_tls.code == "AUTHENTICATIONFAILED"


def test_probe_no_starttls(tls_context: ssl.SSLContext) -> None:
    caps = probe(FakeImap(tls_context, starttls=False, logindisabled=False)).result
    assert not caps.starttls_offered and caps.tls is None and caps.post_tls is None


def test_probe_preauth_skips_login() -> None:
    behaviour = script(b"* PREAUTH [CAPABILITY IMAP4rev1] welcome\r\n", None, b"* BYE\r\nM1 OK bye\r\n")
    result = probe(behaviour)
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result.preauth and result.result.cleartext_login is CleartextAuth.NOT_TRIED


def test_probe_implicit_tls(tls_context: ssl.SSLContext, tmp_path: Path) -> None:
    fake = FakeImap(tls_context, starttls=False, logindisabled=False)

    async def main() -> Any:
        server = await asyncio.start_server(fake, "127.0.0.1", 0, ssl=tls_context)
        from conformance.target import Endpoint
        endpoint = Endpoint(Service.IMAPS, "node1", "localhost", server.sockets[0].getsockname()[1], "127.0.0.1")
        try:
            return await probe_imap_capabilities(endpoint, cfg())
        finally:
            server.close()
            await server.wait_closed()

    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result.tls is not None and result.result.pre_tls is None
    assert "AUTH=PLAIN" in result.result.post_tls


def test_a_completion_with_another_tag_is_a_surplus_reply() -> None:
    """A server answering every command twice: the second command must not take the first's completion."""
    behaviour = script(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n", None, b"M1 OK done\r\nM1 OK done\r\n",
                       None, b"M2 OK done\r\n")

    async def main() -> None:
        async with serving(behaviour, Service.IMAP) as endpoint, ImapSession(endpoint, cfg()) as imap:
            await imap.connect()
            await imap.noop()
            with pytest.raises(ProtocolViolation, match="tagged 'M1' arrived.*tag is M2.*surplus"):
                await imap.noop()

    run(main())
