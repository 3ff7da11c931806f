"""Hostile and broken servers: every one yields a typed outcome within the timeout, with the server's words."""

from __future__ import annotations

import asyncio

import pytest
from hostile import CLOSE, Behaviour, endless_line, run, script, serving, silent, trickle

from conformance.probes.connect import HostLimiter, open_tcp
from conformance.probes.outcome import Attempt, Outcome, Transcript, attempt
from conformance.probes.starttls import open_to_tls_point
from conformance.probes.wire import close
from conformance.target import Endpoint, Service

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
    "injection": (script(b"220 ok\r\n", None, EHLO_OK, None, b"220 go ahead\r\n250 injected\r\n"),
                  Outcome.SERVER_ERROR, "plaintext"),
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
