"""STARTTLS command injection: a naive server that keeps its plaintext buffer across the handshake
is caught; servers that discard it or hang up pass."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from certgen import make_pki
from cryptography.hazmat.primitives.serialization import Encoding
from fake_imap import FakeImap
from hostile import TLS_ALERT_HANDSHAKE_FAILURE, reset, run, serving, smtp_server

from conformance.probes.starttls.injection import InjectionResult, probe_starttls_injection
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Service

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    pki = make_pki()
    cert, key = pki.leaf("localhost").write(tmp_path_factory.mktemp("inj-tls"), "leaf")
    cert.write_bytes(cert.read_bytes() + pki.intermediate.cert.public_bytes(Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def naive_smtp(context: ssl.SSLContext, *, discard: bool = False, hang_up: bool = False,  # type: ignore[no-untyped-def]
               extra: bytes = b"", reset_pipelined: bool = False):
    """An asyncio SMTP server; by default it keeps its StreamReader buffer across start_tls — exactly
    the CVE-2011-0411 mistake."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 naive.test\r\n")
        while line := await asyncio.wait_for(reader.readline(), 10):
            verb = line.strip().upper()
            if verb.startswith(b"EHLO"):
                writer.write(b"250-naive.test\r\n250 STARTTLS\r\n")
            elif verb == b"STARTTLS":
                if hang_up and reader._buffer:  # test server: a pipelined command means hang up
                    return
                writer.write(b"220 go ahead\r\n" + extra)  # extra: response injection
                await writer.drain()
                if reset_pipelined and reader._buffer:  # test server: Dovecot's answer to a pipelined command
                    reset(writer)
                    return
                if discard:
                    reader._buffer.clear()  # test server: what a fixed server does with pre-TLS input
                await writer.start_tls(context)
                continue
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
    return behaviour


def probe(behaviour, service: Service = Service.MX) -> Attempt[InjectionResult]:  # type: ignore[no-untyped-def]
    async def main() -> Attempt[InjectionResult]:
        async with serving(behaviour, service) as endpoint:
            return await probe_starttls_injection(endpoint, ProbeConfig(timeout=5, use_system_store=False))
    return run(main())


def test_naive_smtp_server_executes_injected_command(tls_context: ssl.SSLContext) -> None:
    result = probe(naive_smtp(tls_context))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.executed_after_tls
    assert result.result.first_answer_after_tls == "250 ok"


def test_smtp_server_discarding_buffer_is_safe(tls_context: ssl.SSLContext) -> None:
    result = probe(naive_smtp(tls_context, discard=True))
    assert result.result is not None and not result.result.executed_after_tls
    assert result.result.first_answer_after_tls == "221 bye"


def test_response_injection_is_set_aside_and_command_injection_still_judged(tls_context: ssl.SSLContext) -> None:
    """Bytes after the go-ahead are recorded (STARTTLS-INJECT-02's business) and set aside, and the probe
    still finds out whether the pipelined command runs inside TLS."""
    result = probe(naive_smtp(tls_context, discard=True, extra=b"250 injected\r\n"))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and "250 injected" in (result.result.answered_in_plaintext or "")
    assert not result.result.executed_after_tls and result.result.first_answer_after_tls == "221 bye"


def test_smtp_server_hanging_up_is_safe(tls_context: ssl.SSLContext) -> None:
    result = probe(naive_smtp(tls_context, hang_up=True))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and not result.result.executed_after_tls
    assert result.result.closed_connection


def test_aiosmtpd(tls_context: ssl.SSLContext) -> None:
    from aiosmtpd.smtp import SMTP

    async def main() -> Attempt[InjectionResult]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(object(), tls_context=tls_context), "127.0.0.1", 0)
        from conformance.target import Endpoint
        endpoint = Endpoint(Service.MX, "node1", "localhost", server.sockets[0].getsockname()[1], "127.0.0.1")
        try:
            return await probe_starttls_injection(endpoint, ProbeConfig(timeout=5, use_system_store=False))
        finally:
            server.close()
            await server.wait_closed()

    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and not result.result.executed_after_tls  # aiosmtpd discards the buffer
    assert result.result.first_answer_after_tls == "221 Bye"


def test_naive_imap_server_executes_injected_command(tls_context: ssl.SSLContext) -> None:
    result = probe(FakeImap(tls_context), Service.IMAP)
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.executed_after_tls
    assert (result.result.first_answer_after_tls or "").startswith("X1 ")


def test_implicit_tls_is_bad_input() -> None:
    result = probe(naive_smtp(ssl.create_default_context()), Service.SUBMISSIONS)
    assert result.outcome is Outcome.LOCAL_ERROR


@pytest.mark.parametrize("answer", [b"", TLS_ALERT_HANDSHAKE_FAILURE], ids=["closes", "alert"])
def test_failed_handshake_is_no_evidence(answer: bytes) -> None:
    """Every handshake fails: the go-ahead and the TLS error are kept, and nothing reads as 'not executed'."""
    result = probe(smtp_server(after_starttls=answer))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.tls_error is not None
    assert result.result.starttls_reply.startswith("220") and result.result.first_answer_after_tls is None
    assert not result.result.closed_connection and "without a pipelined command" in result.result.tls_error


def test_breaking_off_only_the_pipelined_session_is_safe(tls_context: ssl.SSLContext) -> None:
    """Go-ahead, then a reset for the session with a pipelined command (Dovecot); a clean session works."""
    result = probe(naive_smtp(tls_context, discard=True, reset_pipelined=True))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.tls_error is None
    assert result.result.closed_connection and result.result.control_answer == "221 bye"
