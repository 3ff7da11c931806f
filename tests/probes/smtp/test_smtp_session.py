"""SMTP wire parsing, the SmtpSession against aiosmtpd (a real server we did not write), the capability
probe, and redaction of credentials."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import certgen
import pytest
from certgen import Pki
from hostile import NOT_TLS, OVERSIZED_RECORD, TLS_ALERT_HANDSHAKE_FAILURE, run, script, serving, smtp_server
from smtp_servers import PASSWORD, USER, Recorder, aiosmtpd_server

from conformance.probes.smtp.session import CleartextAuth, SmtpSession, probe_smtp_capabilities
from conformance.probes.smtp.wire import EhloResult, SmtpReply
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Outcome, ProtocolViolation, ServerUnavailable
from conformance.target import Secret

pytestmark = pytest.mark.unit



# --- wire format -------------------------------------------------------------------------------

def test_reply_parse_multiline_and_enhanced() -> None:
    reply = SmtpReply.parse(b"250-mx.test greets you\r\n250-SIZE 1000\r\n250 2.0.0 ok\r\n")
    assert reply.code == 250 and reply.lines == ("mx.test greets you", "SIZE 1000", "2.0.0 ok")
    assert reply.enhanced is None  # only the first line's text carries the enhanced code
    assert SmtpReply.parse(b"550 5.7.1 relaying denied\r\n").enhanced == "5.7.1"
    assert SmtpReply.parse(b"550 4.7.1 class mismatch\r\n").enhanced is None


def test_reply_round_trip_and_bare_code() -> None:
    reply = SmtpReply.parse(b"250\r\n")
    assert reply.lines == ("",) and reply.to_bytes() == b"250 \r\n"
    multi = SmtpReply(250, None, ("a", "b"))
    assert SmtpReply.parse(multi.to_bytes()) == multi


@pytest.mark.parametrize("garbage", [b"2500 x\r\n", b"hello\r\n", b"25 x\r\n", b"650 x\r\n"])
def test_reply_garbage_rejected(garbage: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        SmtpReply.parse(garbage)


def test_ehlo_capabilities() -> None:
    reply = SmtpReply.parse(b"250-mx.test hi\r\n250-SIZE 35882577\r\n250-AUTH PLAIN LOGIN\r\n"
                            b"250-AUTH=CRAM-MD5\r\n250-starttls\r\n250 8BITMIME\r\n")
    caps = EhloResult.from_reply(reply)
    assert caps.greeting_name == "mx.test"
    assert caps.starttls and caps.has("8bitmime")
    assert caps.auth_mechanisms == {"PLAIN", "LOGIN", "CRAM-MD5"}
    assert caps.size_limit == 35882577


# --- a real server: aiosmtpd with STARTTLS and AUTH --------------------------------------------

@pytest.fixture(scope="module")
def server_context(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return certgen.server_context(pki, pki.leaf("localhost"), tmp_path_factory.mktemp("smtp-tls"))


def config(anchor: Path | None = None) -> ProbeConfig:
    return ProbeConfig(timeout=5, ehlo_name="probe.test", trust_anchors=(anchor,) if anchor else (),
                       use_system_store=False, secrets=(PASSWORD,))


def test_session_starttls_auth_and_mail(server_context: ssl.SSLContext) -> None:
    recorder = Recorder()

    async def main() -> tuple[list[int], SmtpSession]:
        async with aiosmtpd_server(server_context, recorder=recorder) as endpoint, \
                SmtpSession(endpoint, config()) as smtp:
            codes = [(await smtp.connect()).code]
            pre = await smtp.ehlo()
            assert pre.starttls and not pre.auth_mechanisms  # auth_require_tls hides AUTH before TLS
            codes.append((await smtp.starttls()).code)
            assert smtp.tls is not None and smtp.tls.version in ("TLSv1.2", "TLSv1.3")
            assert smtp.capabilities is not None and {"PLAIN", "LOGIN"} <= smtp.capabilities.auth_mechanisms
            codes.append((await smtp.auth_login(USER, "wrong")).code)
            codes.append((await smtp.auth_plain(USER, Secret(PASSWORD, "test"))).code)
            codes.append((await smtp.mail(USER)).code)
            codes.append((await smtp.rcpt("bob@example.test")).code)
            codes.append((await smtp.data(b"Subject: t\n\n.leading dot\nbody\n")).code)
            quit_reply = await smtp.quit()
            codes.append(quit_reply.code if quit_reply else 0)
            return codes, smtp

    codes, smtp = run(main())
    assert codes == [220, 220, 535, 235, 250, 250, 250, 221]
    assert recorder.messages == [b"Subject: t\r\n\r\n.leading dot\r\nbody\r\n"]
    assert "C: AUTH PLAIN <redacted>" in smtp.transcript.lines


def test_capability_probe_good_server(server_context: ssl.SSLContext, anchor: Path) -> None:
    async def main() -> Any:
        async with aiosmtpd_server(server_context) as endpoint:
            return await probe_smtp_capabilities(endpoint, config(anchor))

    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    caps = result.result
    assert caps.starttls_offered and caps.starttls_reply.code == 220
    assert caps.tls is not None and len(caps.tls.peer_chain_der) == 2
    assert caps.auth_mechanisms_before_tls == frozenset()
    assert {"PLAIN", "LOGIN"} <= caps.auth_mechanisms_after_tls
    assert caps.cleartext_auth is CleartextAuth.REFUSED_FOR_TLS, caps.auth_before_tls


def test_capability_probe_auth_before_tls_flaw(server_context: ssl.SSLContext) -> None:
    async def main() -> Any:
        async with aiosmtpd_server(server_context, auth_require_tls=False) as endpoint:
            return await probe_smtp_capabilities(endpoint, config())

    caps = run(main()).result
    assert {"PLAIN", "LOGIN"} <= caps.auth_mechanisms_before_tls
    assert caps.cleartext_auth is CleartextAuth.CREDENTIALS_CHECKED
    assert caps.auth_before_tls.code == 535


def test_capability_probe_without_starttls_still_reports() -> None:
    behaviour = script(b"220 mx.test\r\n", None, b"250-mx.test\r\n250 AUTH PLAIN\r\n", None,
                       b"235 2.7.0 welcome, whoever you are\r\n")

    async def main() -> Any:
        async with serving(behaviour) as endpoint:
            return await probe_smtp_capabilities(endpoint, config())

    result = run(main())
    assert result.outcome is Outcome.COMPLETED
    assert not result.result.starttls_offered
    assert result.result.cleartext_auth is CleartextAuth.ACCEPTED


# --- redaction -------------------------------------------------------------------------------------

def _forms(secret: str) -> list[str]:
    return [secret, base64.b64encode(secret.encode()).decode(),
            base64.b64encode(f"\0{USER}\0{secret}".encode()).decode()]


def test_password_never_in_transcript_reason_or_exception(server_context: ssl.SSLContext) -> None:
    """AUTH PLAIN and LOGIN, successful and failed, then a server that hangs up mid-AUTH."""
    async def main() -> tuple[list[str], list[str]]:
        seen: list[str] = []
        errors: list[str] = []
        async with aiosmtpd_server(server_context, auth_require_tls=False) as endpoint:
            async with SmtpSession(endpoint, config()) as smtp:
                await smtp.connect()
                await smtp.ehlo()
                await smtp.auth_login(USER, Secret(PASSWORD, "test"))
                seen += smtp.transcript.lines
            async with SmtpSession(endpoint, config()) as smtp:
                await smtp.connect()
                await smtp.ehlo()
                await smtp.auth_plain(USER, PASSWORD)
                seen += smtp.transcript.lines
        hangup = script(b"220 mx.test\r\n", None, b"250 AUTH PLAIN LOGIN\r\n", None, b"334 VXNlcm5hbWU6\r\n",
                        None, b"334 UGFzc3dvcmQ6\r\n", None, b"")
        async with serving(hangup) as endpoint, SmtpSession(endpoint, config()) as smtp:
            await smtp.connect()
            await smtp.ehlo()
            try:
                await smtp.auth_login(USER, Secret(PASSWORD, "test"))
            except Exception as exc:  # noqa: BLE001 - whatever it is, it must not carry the secret
                errors += [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
            seen += smtp.transcript.lines
        return seen, errors

    seen, errors = run(main())
    assert errors, "the hang-up should have raised"
    text = "\n".join(seen + errors)
    for form in _forms(PASSWORD):
        assert form not in text
    assert repr(Secret(PASSWORD, "test")).count(PASSWORD) == 0


# --- replies stay matched to commands; reasons say what the server did ----------------------------

def test_surplus_replies_are_a_violation_not_the_next_answer() -> None:
    """A server answering every command twice: STARTTLS must not read EHLO's second reply as its own."""
    async def main() -> Any:
        async with serving(smtp_server(times=2)) as endpoint:
            return await probe_smtp_capabilities(endpoint, config(), try_auth_before_tls=False)

    result = run(main())
    assert result.outcome is Outcome.SERVER_ERROR, result
    assert "nobody asked for before sending STARTTLS" in result.reason and "250-mx.test" in result.reason
    assert "refused" not in result.reason


def test_surplus_reply_never_answers_a_later_rcpt() -> None:
    """Every RCPT really gets 550; stale 250s from the doubled MAIL reply must not stand in for them."""
    async def main() -> Any:
        doubled = smtp_server({"EHLO": b"250 mx.test\r\n", "RCPT": b"550 5.1.1 no such user\r\n"}, times=2)
        async with serving(doubled) as endpoint, SmtpSession(endpoint, config()) as smtp:
            await smtp.connect()
            await smtp.ehlo()
            with pytest.raises(ProtocolViolation, match="nobody asked for before sending MAIL"):
                await smtp.mail("a@example.test")

    run(main())


def test_unsolicited_421_is_the_server_closing() -> None:
    async def main() -> Any:
        closing = smtp_server({"EHLO": b"250 mx.test\r\n421 4.3.2 shutting down\r\n"})
        async with serving(closing) as endpoint, SmtpSession(endpoint, config()) as smtp:
            await smtp.connect()
            await smtp.ehlo()
            with pytest.raises(ServerUnavailable, match="421 4.3.2 shutting down"):
                await smtp.noop()

    run(main())


@pytest.mark.parametrize(("answer", "words"), [
    (TLS_ALERT_HANDSHAKE_FAILURE, "the server sent the TLS alert 'handshake failure'"),
    (NOT_TLS, "not TLS (wrong version number)"),
    (OVERSIZED_RECORD, "oversized TLS record"),
], ids=["alert", "not-tls", "oversized-record"])
def test_handshake_failure_after_220_keeps_the_go_ahead(answer: bytes, words: str) -> None:
    """220 to STARTTLS, then a broken handshake: the 220 stands and the reason is the TLS error, in words."""
    async def main() -> Any:
        async with serving(smtp_server(after_starttls=answer)) as endpoint:
            return await probe_smtp_capabilities(endpoint, config(), try_auth_before_tls=False)

    result = run(main())
    assert result.ok, result
    caps = result.result
    assert caps.starttls_reply is not None and caps.starttls_reply.code == 220
    assert caps.tls is None and caps.tls_error is not None and words in caps.tls_error, caps.tls_error
    assert "SSL" not in caps.tls_error and "_" not in caps.tls_error
