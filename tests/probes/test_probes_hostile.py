"""Hostile and broken servers: every one yields a typed outcome within the timeout, with the server's words."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from pathlib import Path

import pytest
from hostile import CLOSE, Behaviour, endless_line, mute, run, script, serving, silent, trickle

from conformance.probes.imap.session import ImapCapabilities, probe_imap_capabilities
from conformance.probes.smtp.session import SmtpCapabilities, SmtpSession, probe_smtp_capabilities
from conformance.probes.starttls.opening import open_to_tls_point
from conformance.probes.wire.config import ProbeConfig, scrubbed, secret_forms
from conformance.probes.wire.connect import EndpointHealth, HostLimiter, open_tcp
from conformance.probes.wire.outcome import Attempt, Outcome, ProbeError, Transcript, attempt
from conformance.probes.wire.streams import close
from conformance.target import Endpoint, Service, load_target

pytestmark = pytest.mark.unit

TIMEOUT = 0.5
EHLO_OK = b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"


async def _tls_point(endpoint: Endpoint) -> Attempt[int]:
    transcript = Transcript(endpoint.id)

    async def go() -> int:
        _reader, writer = await open_to_tls_point(endpoint, timeout=TIMEOUT, ehlo_name="probe.test",
                                                 transcript=transcript)
        await close(writer)
        return 1

    return await attempt(endpoint.id, transcript, go())


def tls_point(behaviour: Behaviour, service: Service = Service.SUBMISSION) -> Attempt[int]:
    async def main() -> Attempt[int]:
        async with serving(behaviour, service) as endpoint:
            return await _tls_point(endpoint)
    return run(main())


SMTP_CASES = {
    "no-greeting": (silent, Outcome.INCONCLUSIVE, "no complete line"),
    "tarpit": (trickle(b"220 slow.test ESMTP\r\n"), Outcome.INCONCLUSIVE, "no complete line"),
    "421-greeting": (script(b"421 4.3.2 busy, try later\r\n"), Outcome.INCONCLUSIVE, "421 4.3.2 busy"),
    "554-greeting": (script(b"554 5.7.1 go away\r\n"), Outcome.INCONCLUSIVE, "554 5.7.1 go away"),
    "garbage": (script(b"HTTP/1.1 400 Bad Request\r\n"), Outcome.SERVER_ERROR, "HTTP/1.1 400"),
    "endless-line": (endless_line, Outcome.SERVER_ERROR, "line longer than"),
    "close-mid-reply": (script(b"220 ok\r\n", None, b"250-mx.test\r\n250-PIPE", CLOSE),
                        Outcome.INCONCLUSIVE,
                        "250-PIPE"),
    "starttls-454": (script(b"220 ok\r\n", None, EHLO_OK, None, b"454 4.7.0 TLS not available\r\n"),
                     Outcome.INCONCLUSIVE, "454 4.7.0 TLS not available"),
    "starttls-not-offered": (script(b"220 ok\r\n", None, b"250-mx.test\r\n250 PIPELINING\r\n"),
                             Outcome.SERVER_ERROR, "STARTTLS not offered"),
    "starttls-502": (script(b"220 ok\r\n", None, EHLO_OK, None, b"502 5.5.1 no\r\n"),
                     Outcome.SERVER_ERROR, "502 5.5.1 no"),
    "mixed-codes": (script(b"220-hello\r\n250 ok\r\n"), Outcome.SERVER_ERROR, "reply code changed"),
    # plaintext after the go-ahead is discarded (as a safe client must) and reported by STARTTLS-INJECT-02
    "injection": (script(b"220 ok\r\n", None, EHLO_OK, None, b"220 go ahead\r\n250 injected\r\n"),
                  Outcome.COMPLETED, ""),
}


@pytest.mark.parametrize("case", SMTP_CASES)
def test_smtp_starttls_point_hostile(case: str) -> None:
    behaviour, outcome, words = SMTP_CASES[case]
    result = tls_point(behaviour)
    assert result.outcome is outcome, result
    assert words in result.reason


def test_smtp_starttls_point_positioned_for_client_hello() -> None:
    seen: list[bytes] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-mx.test ESMTP\r\n220 second line\r\n")
        await reader.readline()
        writer.write(EHLO_OK)
        await reader.readline()
        writer.write(b"220 2.0.0 ready\r\n")
        seen.append(await asyncio.wait_for(reader.readexactly(5), 5))

    async def main() -> None:
        async with serving(server) as endpoint:
            transcript = Transcript(endpoint.id)
            _reader, writer = await open_to_tls_point(endpoint, timeout=2, ehlo_name="probe.test",
                                                     transcript=transcript)
            writer.write(b"\x16\x03\x01\x00\x00")
            await writer.drain()
            await asyncio.sleep(0)
            await close(writer)
            assert "C: EHLO probe.test" in transcript.lines
            assert transcript.lines[-1] == "S: 220 2.0.0 ready"

    run(main())
    assert seen == [b"\x16\x03\x01\x00\x00"]


IMAP_CASES = {
    "bye-greeting": (script(b"* BYE too many connections\r\n"), Outcome.INCONCLUSIVE, "too many connections"),
    "no-greeting": (silent, Outcome.INCONCLUSIVE, "no complete line"),
    "garbage": (script(b"220 this is smtp\r\n"), Outcome.SERVER_ERROR, "220 this is smtp"),
    "starttls-no": (script(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", None, b"S2 NO not now\r\n"),
                    Outcome.SERVER_ERROR, "S2 NO not now"),
    "no-starttls": (script(b"* OK hi\r\n", None, b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nS1 OK done\r\n"),
                    Outcome.SERVER_ERROR, "STARTTLS not in"),
    "bye-then-close": (script(b"* OK hi\r\n", None, b"* BYE shutting down\r\n", CLOSE), Outcome.INCONCLUSIVE,
                       "shutting down"),
    "bye-then-silence": (script(b"* OK hi\r\n", None, b"* BYE shutting down\r\n"), Outcome.INCONCLUSIVE,
                         "shutting down"),
    "huge-literal": (script(b"* OK hi\r\n", None, b"* CAPABILITY {99999999}\r\n"), Outcome.SERVER_ERROR,
                     "literal"),
}


@pytest.mark.parametrize("case", IMAP_CASES)
def test_imap_starttls_point_hostile(case: str) -> None:
    behaviour, outcome, words = IMAP_CASES[case]
    result = tls_point(behaviour, Service.IMAP)
    assert result.outcome is outcome, result
    assert words in result.reason


def test_imap_starttls_point_ok_with_literal_in_capability_response() -> None:
    behaviour = script(b"* OK hi\r\n", None, b"* CAPABILITY IMAP4rev1 {8}\r\nSTARTTLS\r\nS1 OK done\r\n", None,
                       b"S2 OK begin TLS\r\n")
    assert tls_point(behaviour, Service.IMAP).outcome is Outcome.COMPLETED


def test_implicit_tls_returns_right_after_connect() -> None:
    result = tls_point(silent, Service.SUBMISSIONS)
    assert result.outcome is Outcome.COMPLETED
    assert len(result.transcript) == 1 and result.transcript[0].startswith("-- connected to submissions")


def test_connection_refused_is_inconclusive() -> None:
    async def main() -> Attempt[int]:
        async with serving(silent) as endpoint:
            pass
        return await _tls_point(endpoint)  # the port is closed now
    result = run(main())
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "connecting to" in result.reason


def test_host_limiter_caps_concurrent_connections_and_counts() -> None:
    limiter = HostLimiter(2, slot_timeout=0.5)

    async def main() -> tuple[int, int, str]:
        async with serving(silent) as endpoint:
            first = await open_tcp(endpoint, 1, limiter)
            second = await open_tcp(endpoint, 1, limiter)
            transcript = Transcript()
            third = await attempt(endpoint.id, transcript, open_tcp(endpoint, 1, limiter))
            await close(first[1])
            fourth = await open_tcp(endpoint, 1, limiter)  # the closed connection gave its slot back
            await close(second[1])
            await close(fourth[1])
            return limiter.total_opened, limiter.peak["127.0.0.1"], third.reason

    opened, peak, reason = run(main())
    assert (opened, peak) == (3, 2)
    assert "no free connection slot" in reason


HEALTH_CASES = {
    "silent": (silent, Service.SUBMISSION, "no complete line within 0.5 s while waiting for the SMTP greeting"),
    "one-byte-a-second": (trickle(b"220 slow.test ESMTP\r\n", interval=1.0), Service.SUBMISSION,
                          "no complete line within 0.5 s while waiting for the SMTP greeting"),
    "greylisting": (script(b"421 4.7.0 greylisted, try later\r\n"), Service.MX,
                    "server not available: greeting 421 4.7.0 greylisted, try later"),
    "imap-bye": (script(b"* BYE too many connections\r\n"), Service.IMAP,
                 "server refused the session: * BYE too many connections"),
    "mute-implicit-tls": (mute, Service.SUBMISSIONS, "timed out while TLS handshake"),
}


def _counting(behaviour: Behaviour, opened: list[int]) -> Behaviour:
    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(1)
        await behaviour(reader, writer)
    return counted


@pytest.mark.parametrize("case", HEALTH_CASES)
def test_dead_endpoint_is_contacted_once_and_every_probe_gets_its_reason(case: str) -> None:
    behaviour, service, reason = HEALTH_CASES[case]
    cfg = replace(probe_cfg(), limiter=HostLimiter(4, health=EndpointHealth()))
    opened: list[int] = []

    async def main() -> list[str]:
        async with serving(_counting(behaviour, opened), service) as endpoint:
            probe = probe_imap_capabilities if endpoint.protocol == "imap" else probe_smtp_capabilities
            return [(await probe(endpoint, cfg)).reason for _ in range(3)]  # type: ignore[operator]

    reasons = run(main())
    assert reasons == [reason] * 3
    assert len(opened) == 1


def test_refused_endpoint_is_learned_and_not_reconnected() -> None:
    health = EndpointHealth()
    cfg = replace(probe_cfg(), limiter=HostLimiter(4, health=health))

    async def main() -> list[Attempt[SmtpCapabilities]]:
        async with serving(silent) as endpoint:
            pass
        return [await probe_smtp_capabilities(endpoint, cfg) for _ in range(2)]  # the port is closed now

    first, second = run(main())
    assert first.reason == second.reason and first.reason.startswith("connection refused by the server while connecting to")
    assert cfg.limiter is not None and cfg.limiter.total_opened == 1  # one connection attempt
    assert list(health.down().values()) == [first.reason]


def test_failover_probes_connect_afresh_past_a_dead_record() -> None:
    """Active families must see a node come back: ``unguarded`` shares the budget, not the memory."""
    limiter = HostLimiter(4, health=EndpointHealth())
    opened: list[int] = []

    async def main() -> tuple[str, str]:
        async with serving(_counting(script(b"421 4.3.2 shutting down\r\n"), opened)) as endpoint:
            guarded = await probe_smtp_capabilities(endpoint, replace(probe_cfg(), limiter=limiter))
            fresh = await probe_smtp_capabilities(endpoint, replace(probe_cfg(), limiter=limiter.unguarded()))
            return guarded.reason, fresh.reason

    guarded, fresh = run(main())
    assert guarded == fresh and len(opened) == 2 and limiter.total_opened == 2


def test_a_probe_deadline_running_out_teaches_nothing() -> None:
    """Our own session budget ending before the greeting says nothing about the server."""
    health = EndpointHealth()
    cfg = ProbeConfig(timeout=TIMEOUT, session_timeout=0.1, limiter=HostLimiter(4, health=health))
    result = smtp_probe(silent, cfg)
    assert result.outcome is Outcome.INCONCLUSIVE and health.down() == {}


# --- whole probes (sessions) against hostile servers ----------------------------------------------

SECRET = "hunter2-Correct-Secret"


def probe_cfg(timeout: float = TIMEOUT, session_timeout: float | None = None) -> ProbeConfig:
    return ProbeConfig(timeout=timeout, ehlo_name="probe.test", use_system_store=False, secrets=(SECRET,),
                       session_timeout=session_timeout)


def smtp_probe(behaviour: Behaviour, cfg: ProbeConfig | None = None,
               service: Service = Service.SUBMISSION) -> Attempt[SmtpCapabilities]:
    async def main() -> Attempt[SmtpCapabilities]:
        async with serving(behaviour, service) as endpoint:
            return await probe_smtp_capabilities(endpoint, cfg or probe_cfg())
    return run(main())


async def continuation_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 ok\r\n")
    await reader.readline()
    for _ in range(100_000):  # bounded, and far beyond MAX_REPLY_LINES
        writer.write(b"250-more\r\n")
        await writer.drain()


async def slow_continuation(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Each line arrives well within the per-line timeout, but the reply never ends."""
    writer.write(b"220 ok\r\n")
    await reader.readline()
    for _ in range(1000):
        writer.write(b"250-more\r\n")
        await writer.drain()
        await asyncio.sleep(TIMEOUT / 5)


async def slow_but_polite(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Every reply comes within the per-read timeout; together they overrun the session deadline."""
    await asyncio.sleep(0.3)
    writer.write(b"220 ok\r\n")
    while await reader.readline():
        await asyncio.sleep(0.3)
        writer.write(b"250-mx.test\r\n250 STARTTLS\r\n")


SESSION_CASES = {
    "no-greeting": (silent, Outcome.INCONCLUSIVE, "no complete line"),
    "tarpit": (trickle(b"220 slow.test ESMTP\r\n"), Outcome.INCONCLUSIVE, "no complete line"),
    "421-greeting": (script(b"421 4.3.2 busy\r\n"), Outcome.INCONCLUSIVE, "421 4.3.2 busy"),
    "garbage": (script(b"SSH-2.0-OpenSSH_9.2\r\n"), Outcome.SERVER_ERROR, "SSH-2.0-OpenSSH_9.2"),
    "endless-line": (endless_line, Outcome.SERVER_ERROR, "line longer than"),
    "close-mid-reply": (script(b"220 ok\r\n", None, b"250-mx.test\r\n250-AU", CLOSE), Outcome.INCONCLUSIVE,
                        "250-AU"),
    "421-mid-session": (script(b"220 ok\r\n", None, b"421 4.7.0 too many errors\r\n"), Outcome.INCONCLUSIVE,
                        "421 4.7.0 too many errors"),
    "continuation-forever": (continuation_forever, Outcome.SERVER_ERROR, "reply exceeds"),
    "slow-continuation": (slow_continuation, Outcome.INCONCLUSIVE, "while reading the reply to EHLO"),
    "echoes-secret": (script(b"220 ok\r\n", None, f"999 {SECRET}\r\n".encode()), Outcome.SERVER_ERROR,
                      "not an SMTP reply"),
}


@pytest.mark.parametrize("case", SESSION_CASES)
def test_smtp_capability_probe_hostile(case: str) -> None:
    behaviour, outcome, words = SESSION_CASES[case]
    result = smtp_probe(behaviour)
    assert result.outcome is outcome, result
    assert words in result.reason
    assert SECRET not in result.reason and SECRET not in "\n".join(result.transcript)


def test_smtp_probe_session_deadline() -> None:
    result = smtp_probe(slow_but_polite, probe_cfg(timeout=2, session_timeout=0.5))
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "deadline" in result.reason or "no complete line" in result.reason


def test_smtp_probe_starttls_454_is_kept_as_the_servers_answer() -> None:
    """The capability probe reports the 454 (checks decide); open_to_tls_point calls it inconclusive."""
    result = smtp_probe(script(b"220 ok\r\n", None, EHLO_OK, None, b"454 4.7.0 TLS not available\r\n", None,
                               b"221 bye\r\n"), service=Service.MX)  # MX: no AUTH attempt before STARTTLS
    assert result.outcome is Outcome.COMPLETED
    assert result.result is not None and result.result.starttls_reply is not None
    assert str(result.result.starttls_reply) == "454 4.7.0 TLS not available"
    assert result.result.tls is None


IMAP_SESSION_CASES = {
    "bye-greeting": (script(b"* BYE [UNAVAILABLE] maintenance\r\n"), Outcome.INCONCLUSIVE, "maintenance"),
    "garbage": (script(b"\x16\x03\x01\x00\x05hello\r\n"), Outcome.SERVER_ERROR, "not an IMAP greeting"),
    "tarpit": (trickle(b"* OK slow\r\n"), Outcome.INCONCLUSIVE, "no complete line"),
    "close-after-greeting": (script(b"* OK hi\r\n", None, b"* CAPABILITY IMAP4rev1", CLOSE),
                             Outcome.INCONCLUSIVE, "* CAPABILITY IMAP4rev1"),
    "wrong-tag": (script(b"* OK hi\r\n", None, b"X9 OK whatever\r\n"), Outcome.SERVER_ERROR, "X9 OK whatever"),
}


@pytest.mark.parametrize("case", IMAP_SESSION_CASES)
def test_imap_capability_probe_hostile(case: str) -> None:
    behaviour, outcome, words = IMAP_SESSION_CASES[case]

    async def main() -> Attempt[ImapCapabilities]:
        async with serving(behaviour, Service.IMAP) as endpoint:
            return await probe_imap_capabilities(endpoint, probe_cfg())

    result = run(main())
    assert result.outcome is outcome, result
    assert words in result.reason


# --- redaction: a run with a known password --------------------------------------------------------

def _decoded(word: bytes) -> bytes:
    try:
        return base64.b64decode(word + b"=" * (-len(word) % 4)).replace(b"\0", b" ")
    except ValueError:
        return b""


async def echo_everything(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The worst case: a server that quotes back every line it gets, decoded too, and finally hangs
    up with the secret in a 421 (so it lands in an exception message and the attempt's reason)."""
    writer.write(b"220 echo.test\r\n")
    sasl_lines = 0
    for _ in range(10):
        line = (await reader.readline()).strip()
        if not line:
            return
        decoded = _decoded(line.split()[-1])
        if line.upper().startswith(b"EHLO"):
            writer.write(b"250-echo.test\r\n250 AUTH PLAIN LOGIN\r\n")
        elif line.upper() == b"AUTH LOGIN" or sasl_lines == 1:
            sasl_lines += 1
            writer.write(b"334 you said " + line + b" = " + decoded + b"\r\n")
        else:
            writer.write(b"421 4.7.0 you said " + line + b" = " + decoded + b"\r\n")
        await writer.drain()


def test_known_password_never_leaks(minimal_target: Path) -> None:
    target = load_target(minimal_target)
    account = target.account("test")
    assert account is not None
    password = account.password.reveal()
    seen: list[str] = []

    async def session(endpoint: Endpoint, cfg: ProbeConfig, how: str, transcript: Transcript | None = None,
                      ) -> None:
        async with SmtpSession(endpoint, cfg, transcript) as smtp:
            await smtp.connect()
            await smtp.ehlo()
            await (smtp.auth_plain if how == "plain" else smtp.auth_login)(account.username, account.password)

    async def main() -> None:
        cfg = replace(ProbeConfig.from_target(target, timeout=2), use_system_store=False)
        async with serving(echo_everything) as endpoint:
            for how in ("plain", "login"):
                transcript = cfg.transcript(endpoint)
                try:
                    await session(endpoint, cfg, how)
                except ProbeError as exc:
                    seen.extend([str(exc), repr(exc)])
                result = scrubbed(await attempt(endpoint.id, transcript, session(endpoint, cfg, how, transcript)), cfg)
                seen.extend([result.reason, repr(result), *result.transcript, str(target), repr(account)])

    run(main())
    text = "\n".join(seen)
    assert "421" in text and "<redacted>" in text  # the server did echo, and the echo was caught
    for form in secret_forms(account.username, password):
        assert form not in text, form
