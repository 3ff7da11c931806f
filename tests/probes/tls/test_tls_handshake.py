"""Full stdlib handshakes: implicit TLS and after STARTTLS; chain captured; trust judged apart from TLS."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from certgen import Issued, Pki, make_pki
from cryptography.hazmat.primitives.serialization import Encoding
from hostile import run, script, serving

from conformance.probes.tls.handshake import HandshakeResult, probe_handshake
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.connect import HostLimiter
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint, Service

pytestmark = pytest.mark.unit


def context_for(pki: Pki, leaf: Issued, directory: Path) -> ssl.SSLContext:
    cert, key = leaf.write(directory, "leaf")
    cert.write_bytes(cert.read_bytes() + pki.intermediate.cert.public_bytes(Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@contextlib.asynccontextmanager
async def implicit_tls_server(context: ssl.SSLContext) -> AsyncIterator[Endpoint]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            writer.write(b"220 tls.test ESMTP\r\n")
            await writer.drain()
            await asyncio.wait_for(reader.read(1), 5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield Endpoint(Service.SUBMISSIONS, "node1", "localhost", server.sockets[0].getsockname()[1], "127.0.0.1")
    finally:
        server.close()
        await server.wait_closed()


def cfg(anchor: Path) -> ProbeConfig:
    return ProbeConfig(timeout=5, trust_anchors=(anchor,), use_system_store=False)


def handshake_implicit(context: ssl.SSLContext, anchor: Path) -> Attempt[HandshakeResult]:
    async def main() -> Attempt[HandshakeResult]:
        async with implicit_tls_server(context) as endpoint:
            return await probe_handshake(endpoint, cfg(anchor))
    return run(main())


def test_implicit_tls_good_chain(pki: Pki, anchor: Path, tmp_path: Path) -> None:
    result = handshake_implicit(context_for(pki, pki.leaf("localhost"), tmp_path), anchor)
    assert result.outcome is Outcome.COMPLETED, result.reason
    hs = result.result
    assert hs is not None and hs.verified, hs.verify_error
    assert hs.version in ("TLSv1.2", "TLSv1.3") and hs.cipher
    assert len(hs.peer_chain_der) == 2 and hs.cert is not None and hs.cert.names_match


def test_wrong_name_completes_but_does_not_verify(pki: Pki, anchor: Path, tmp_path: Path) -> None:
    result = handshake_implicit(context_for(pki, pki.leaf("other.example.test"), tmp_path), anchor)
    assert result.outcome is Outcome.COMPLETED
    assert result.result is not None and not result.result.verified
    assert "localhost not in SAN" in (result.result.verify_error or "")


def test_untrusted_root_completes_but_does_not_verify(anchor: Path, tmp_path: Path) -> None:
    other = make_pki()
    result = handshake_implicit(context_for(other, other.leaf("localhost"), tmp_path), anchor)
    assert result.outcome is Outcome.COMPLETED
    assert result.result is not None and not result.result.verified
    assert "no valid path" in (result.result.verify_error or "")


def test_plaintext_on_implicit_tls_port_is_a_server_error(anchor: Path) -> None:
    async def plaintext(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 plain.test ESMTP\r\n")
        while await reader.read(4096):  # keep reading: closing with unread data would RST the greeting away
            pass

    async def main() -> Attempt[HandshakeResult]:
        async with serving(plaintext, Service.SUBMISSIONS) as endpoint:
            return await probe_handshake(endpoint, cfg(anchor))
    result = run(main())
    assert result.outcome is Outcome.SERVER_ERROR
    assert "plaintext" in result.reason or "TLS error" in result.reason  # before or after start_tls: a race


def test_silent_server_handshake_times_out(anchor: Path) -> None:
    async def main() -> Attempt[HandshakeResult]:
        async with serving(script(), Service.SUBMISSIONS) as endpoint:
            return await probe_handshake(endpoint, ProbeConfig(timeout=0.5, trust_anchors=(anchor,),
                                                               use_system_store=False))
    result = run(main())
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "TLS handshake" in result.reason


def test_starttls_handshake_with_aiosmtpd(pki: Pki, anchor: Path, tmp_path: Path) -> None:
    from aiosmtpd.smtp import SMTP

    context = context_for(pki, pki.leaf("localhost"), tmp_path)

    async def main() -> Attempt[HandshakeResult]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(object(), tls_context=context), "127.0.0.1", 0)
        endpoint = Endpoint(Service.MX, "node1", "localhost", server.sockets[0].getsockname()[1], "127.0.0.1")
        try:
            return await probe_handshake(endpoint, cfg(anchor))
        finally:
            server.close()
            await server.wait_closed()

    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.verified
    assert any(line.startswith("-- TLS established") for line in result.transcript)


def test_limiter_slot_released_after_tls_session(pki: Pki, anchor: Path, tmp_path: Path) -> None:
    """The slot comes back through asyncio's SSLProtocol, which forwards connection_lost to ours."""
    limiter = HostLimiter(1, slot_timeout=3)
    config = ProbeConfig(timeout=5, trust_anchors=(anchor,), use_system_store=False, limiter=limiter)
    context = context_for(pki, pki.leaf("localhost"), tmp_path)

    async def main() -> list[Outcome]:
        async with implicit_tls_server(context) as endpoint:
            return [(await probe_handshake(endpoint, config)).outcome for _ in range(3)]

    assert run(main()) == [Outcome.COMPLETED] * 3
    assert limiter.total_opened == 3 and limiter.peak["127.0.0.1"] == 1


@pytest.mark.parametrize("smtp", [False, True], ids=["implicit", "starttls"])
def test_a_server_that_never_sends_close_notify_costs_no_wait(smtp: bool) -> None:
    """Issue 13: against an MTA that answers at once but never answers our close_notify (nor closes),
    asyncio waited for it (30 s ssl_shutdown_timeout) while the connection kept its per-host slot, so
    the next handshake waited too. With one slot, a second handshake must get it at once."""
    from tls_servers import openssl_server

    limiter = HostLimiter(1, slot_timeout=5)  # a bound for the failure, not a timing assertion

    async def twice(endpoint: Endpoint) -> list[Attempt[HandshakeResult]]:
        config = ProbeConfig(timeout=5, use_system_store=False, limiter=limiter)
        return [await probe_handshake(endpoint, config) for _ in range(2)]

    with openssl_server(lambda ctx: None, smtp=smtp, linger=True) as served:
        attempts = run(twice(served.endpoint))
    assert [a.outcome for a in attempts] == [Outcome.COMPLETED, Outcome.COMPLETED], attempts[-1].reason
    assert served.hung_up == [True, True]  # we ended both connections; the server never did


def test_a_refused_handshake_quotes_the_alert_in_words() -> None:
    """Issue 13: the reason was 'TLS error while TLS handshake: SSLV3_ALERT_HANDSHAKE_FAILURE'."""
    from tls_servers import openssl_server

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("aECDSA")  # the server holds an RSA certificate only

    with openssl_server(lambda ctx: None) as served:
        attempt = run(probe_handshake(served.endpoint, ProbeConfig(timeout=5, use_system_store=False),
                                      context=context))
    assert attempt.outcome is Outcome.SERVER_ERROR
    assert attempt.reason == "TLS error while TLS handshake: the server sent the TLS alert 'handshake failure'", attempt.reason
