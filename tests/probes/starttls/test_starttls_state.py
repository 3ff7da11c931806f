"""STARTTLS state reset, response injection, PREAUTH and plaintext fallback, against aiosmtpd, the fake
IMAP server and small scripted servers that make each mistake."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from fake_imap import FakeImap
from hostile import Behaviour, pop3_stls_server, run, serving
from smtp_servers import aiosmtpd_server

from conformance.probes.starttls.state import (
    EhloState,
    ImplicitGreeting,
    StartTlsState,
    probe_implicit_greeting,
    probe_starttls_state,
)
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Service

pytestmark = pytest.mark.unit

CFG = ProbeConfig(timeout=5, use_system_store=False)


def smtp_server(context: ssl.SSLContext, *, keep_ehlo: bool = False, extra_after_go_ahead: bytes = b"",
                lax: bool = False) -> Behaviour:
    """A scripted SMTP server: forgets EHLO at STARTTLS unless ``keep_ehlo``; ``extra_after_go_ahead`` is
    written right after the 220 (response injection); ``lax`` takes MAIL without any EHLO."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted\r\n")
        helo = False
        while line := await asyncio.wait_for(reader.readline(), 10):
            verb = line.strip().upper()
            if verb.startswith(b"EHLO"):
                helo = True
                writer.write(b"250-scripted\r\n250 STARTTLS\r\n")
            elif verb == b"STARTTLS":
                writer.write(b"220 go ahead\r\n" + extra_after_go_ahead)
                await writer.drain()
                await writer.start_tls(context)
                helo = helo and keep_ehlo
                continue
            elif verb.startswith(b"MAIL"):
                writer.write(b"250 ok\r\n" if helo or lax else b"503 5.5.1 send EHLO first\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
    return behaviour


def state(behaviour, service: Service = Service.MX) -> Attempt[StartTlsState]:  # type: ignore[no-untyped-def]
    async def main() -> Attempt[StartTlsState]:
        async with serving(behaviour, service) as endpoint:
            return await probe_starttls_state(endpoint, CFG, window=0.3)
    return run(main())


def test_aiosmtpd_forgets_ehlo(context: ssl.SSLContext) -> None:
    async def main() -> Attempt[StartTlsState]:
        async with aiosmtpd_server(context, service=Service.MX) as endpoint:
            return await probe_starttls_state(endpoint, CFG, window=0.3)
    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None
    assert result.result.ehlo_state is EhloState.FORGOTTEN
    assert not result.result.response_injected and result.result.tls_version


def test_submission_530_falls_back_to_auth_probe(context: ssl.SSLContext) -> None:
    """aiosmtpd on submission (auth required): MAIL gets 503 before 530, so still FORGOTTEN."""
    async def main() -> Attempt[StartTlsState]:
        async with aiosmtpd_server(context, service=Service.SUBMISSION) as endpoint:
            return await probe_starttls_state(endpoint, CFG, window=0.3)
    result = run(main())
    assert result.result is not None and result.result.ehlo_state is EhloState.FORGOTTEN, result.transcript


def test_kept_ehlo_is_caught(context: ssl.SSLContext) -> None:
    result = state(smtp_server(context, keep_ehlo=True))
    assert result.result is not None and result.result.ehlo_state is EhloState.KEPT
    assert result.result.probe_reply == "250 ok"
    assert result.result.control_reply is not None and result.result.control_reply.startswith("503")


def test_lax_server_is_not_blamed(context: ssl.SSLContext) -> None:
    """A server that never needs EHLO cannot show whether STARTTLS reset it: NEVER_REQUIRED, not KEPT."""
    result = state(smtp_server(context, lax=True))
    assert result.result is not None and result.result.ehlo_state is EhloState.NEVER_REQUIRED


def test_bytes_after_go_ahead_are_response_injection(context: ssl.SSLContext) -> None:
    result = state(smtp_server(context, extra_after_go_ahead=b"250 injected\r\n"))
    assert result.result is not None and result.result.response_injected
    assert "250 injected" in (result.result.injected or "")


def test_imap_state(context: ssl.SSLContext) -> None:
    async def main() -> Attempt[StartTlsState]:
        async with serving(FakeImap(context), Service.IMAP) as endpoint:
            return await probe_starttls_state(endpoint, CFG, window=0.3)
    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and not result.result.logindisabled_after_tls
    assert "AUTH=PLAIN" in (result.result.capabilities_after_tls or frozenset())


def test_no_starttls_is_a_server_error(context: ssl.SSLContext) -> None:
    async def main() -> Attempt[StartTlsState]:
        async with serving(FakeImap(context, starttls=False), Service.IMAP) as endpoint:
            return await probe_starttls_state(endpoint, CFG, window=0.3)
    result = run(main())
    assert result.outcome is Outcome.SERVER_ERROR and "STARTTLS" in result.reason


def test_pop3_user_taken_inside_tls_is_a_reset(context: ssl.SSLContext) -> None:
    result = state(pop3_stls_server(context), Service.POP3)
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.ehlo_state is EhloState.FORGOTTEN
    assert result.result.control_reply is not None and result.result.control_reply.startswith("-ERR [AUTH]")
    assert result.result.probe_reply is not None and result.result.probe_reply.startswith("+OK")


def test_pop3_refusal_kept_across_stls_is_caught(context: ssl.SSLContext) -> None:
    result = state(pop3_stls_server(context, keep_refusal=True), Service.POP3)
    assert result.result is not None and result.result.ehlo_state is EhloState.KEPT
    assert result.result.probe_reply == result.result.control_reply


def test_pop3_user_in_clear_cannot_show_a_reset(context: ssl.SSLContext) -> None:
    result = state(pop3_stls_server(context, user_in_clear=True), Service.POP3)
    assert result.result is not None and result.result.ehlo_state is EhloState.NEVER_REQUIRED


def test_pop3_bytes_after_stls_go_ahead_are_response_injection(context: ssl.SSLContext) -> None:
    result = state(pop3_stls_server(context, extra_after_go_ahead=b"+OK injected\r\n"), Service.POP3)
    assert result.result is not None and result.result.response_injected
    assert "+OK injected" in (result.result.injected or "")


def greeting(behaviour, service: Service) -> Attempt[ImplicitGreeting]:  # type: ignore[no-untyped-def]
    async def main() -> Attempt[ImplicitGreeting]:
        async with serving(behaviour, service) as endpoint:
            return await probe_implicit_greeting(endpoint, CFG)
    return run(main())


def tls_imap(context: ssl.SSLContext, *, preauth: bool = False, plaintext_too: bool = False):  # type: ignore[no-untyped-def]
    """An implicit-TLS IMAP server. The probe's first connection speaks TLS, its second plaintext:
    ``plaintext_too`` answers that second one in plaintext (what a port sniffing the first byte and
    falling back would do); otherwise the handshake simply fails on it."""
    connections = 0

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections > 1 and plaintext_too:
            await asyncio.wait_for(reader.readline(), 10)
            writer.write(b"* OK plaintext welcome\r\n")
            await writer.drain()
            return
        try:
            await writer.start_tls(context)
        except ssl.SSLError:
            return  # a plaintext client: a TLS-only port just fails the handshake
        writer.write(b"* PREAUTH logged in\r\n" if preauth else b"* OK ready\r\n")
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.write(b"* BYE\r\n" + line.split(b" ", 1)[0] + b" OK bye\r\n")
        await writer.drain()
    return behaviour


def test_implicit_tls_without_fallback(context: ssl.SSLContext) -> None:
    result = greeting(tls_imap(context), Service.IMAPS)
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None
    assert not result.result.preauth and not result.result.plaintext_fallback and result.result.greeting


def test_preauth_and_fallback_caught(context: ssl.SSLContext) -> None:
    result = greeting(tls_imap(context, preauth=True, plaintext_too=True), Service.IMAPS)
    assert result.result is not None
    assert result.result.preauth and result.result.plaintext_fallback


def test_plaintext_only_port_reports_tls_error(context: ssl.SSLContext) -> None:
    """No TLS at all on an implicit port: greeting None with the TLS error (TLS-IMPLICIT-01's finding)."""
    result = greeting(FakeImap(None, starttls=False), Service.IMAPS)
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.greeting is None and result.result.tls_error


def test_cleartext_imap_preauth(context: ssl.SSLContext) -> None:
    async def preauth(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* PREAUTH [CAPABILITY IMAP4rev1] hello\r\n")
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.write(b"* BYE\r\n" + line.split(b" ", 1)[0] + b" OK bye\r\n")
        await writer.drain()
    result = greeting(preauth, Service.IMAP)
    assert result.result is not None and result.result.preauth and not result.result.implicit_tls


def test_session_discards_injected_plaintext(context: ssl.SSLContext) -> None:
    """SmtpSession.starttls sets injected bytes aside (noted), so other probes carry on; only
    probe_starttls_state reports them (STARTTLS-INJECT-02)."""
    from conformance.probes.smtp.session import SmtpSession

    async def main() -> tuple[list[str], str | None]:
        async with serving(smtp_server(context, extra_after_go_ahead=b"250 injected\r\n"), Service.MX) as endpoint:
            smtp = SmtpSession(endpoint, CFG)
            await smtp.connect()
            await smtp.ehlo()
            await smtp.starttls()
            version = smtp.tls.version if smtp.tls else None
            await smtp.quit()
            return smtp.transcript.lines, version
    lines, version = run(main())
    assert version is not None
    assert any("discarded" in line and "250 injected" in line for line in lines)


def test_pop3s_falling_back_to_plaintext_is_caught(context: ssl.SSLContext) -> None:
    """pop3s over TLS first; the second, plaintext connection gets a POP3 answer: a plaintext fallback."""
    connections = 0

    async def pop3s(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections > 1:
            await asyncio.wait_for(reader.readline(), 10)
            writer.write(b"-ERR unknown command\r\n")
            await writer.drain()
            return
        await writer.start_tls(context)
        writer.write(b"+OK pop ready\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.readline(), 10)  # QUIT
        writer.write(b"+OK bye\r\n")
        await writer.drain()

    result = greeting(pop3s, Service.POP3S)
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.greeting == "+OK pop ready"
    assert result.result.plaintext_answer == "-ERR unknown command" and result.result.plaintext_fallback
