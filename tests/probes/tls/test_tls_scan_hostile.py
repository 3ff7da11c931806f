"""A hostile or broken server gives the TLS scanner a typed outcome, never a hang or a traceback."""

from __future__ import annotations

import asyncio
import socket

import pytest
from hostile import run, serving, trickle
from tls_servers import hello_then_abort_server

from conformance.probes.tls.scan import ScanSettings, scan_endpoint
from conformance.probes.tls.wire import ContentType, Record, TlsVersion
from conformance.probes.wire.outcome import Outcome
from conformance.target import Endpoint, Service

pytestmark = pytest.mark.reference

FAST = ScanSettings(timeout=0.5, max_connections_per_host=4)


def reply(data: bytes):  # type: ignore[no-untyped-def]
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(0.05)
    return behaviour


async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(60)  # reads nothing, answers nothing, keeps the connection: cancelled on exit


def scan_of(behaviour):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        async with serving(behaviour, Service.SUBMISSIONS) as endpoint:
            return await scan_endpoint(endpoint, FAST)
    return run(go())


@pytest.mark.parametrize(("answer", "reason"), [
    (b"220 mx.example.test ESMTP\r\n", "not a TLS record"),
    (bytes([22, 3, 3, 0xFF, 0xFF]), "exceeds"),
    (Record(ContentType.HANDSHAKE, 0x0303, b"\x02\x00\x00\x04\x03\x03").to_bytes(), "handshake message"),
    (Record(ContentType.HANDSHAKE, 0x0303, b"\x02\x00\x00\x02\x03\x03").to_bytes(), "ServerHello: random"),
    (Record(ContentType.HANDSHAKE, 0x0303, b"\x0b\x00\x00\x00").to_bytes(), "expected ServerHello"),
    (bytes([22, 3, 3, 0, 10]) + b"short", "closed"),
])
def test_garbage_is_a_server_error(answer: bytes, reason: str) -> None:
    attempt = scan_of(reply(answer))
    assert attempt.outcome is Outcome.SERVER_ERROR
    assert reason in attempt.reason


def test_silent_server_is_inconclusive_not_unsupported() -> None:
    attempt = scan_of(mute)
    assert attempt.outcome is Outcome.INCONCLUSIVE
    assert "timed out" in attempt.reason


def test_slow_drip_is_bounded_by_the_deadline() -> None:
    attempt = scan_of(trickle(bytes([22, 3, 3, 0, 60]) + b"\x02" * 60, interval=0.2))
    assert attempt.outcome is Outcome.INCONCLUSIVE
    assert "timed out" in attempt.reason


def test_closed_port_is_inconclusive() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = Endpoint(Service.SUBMISSIONS, "node1", "localhost", port, "127.0.0.1")
    attempt = run(scan_endpoint(endpoint, FAST))
    assert attempt.outcome is Outcome.INCONCLUSIVE
    assert attempt.reason


def test_alert_to_everything_means_nothing_accepted() -> None:
    attempt = scan_of(reply(Record(ContentType.ALERT, 0x0303, b"\x02\x28").to_bytes()))
    assert attempt.ok and attempt.result is not None
    assert attempt.result.accepted_versions == frozenset()
    assert attempt.result.suites == {}


async def sslv2_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers an SSLv2 CLIENT-HELLO with a SERVER-HELLO and every TLS hello with an alert. Crafted
    bytes: no SSLv2 stack exists here to serve it for real."""
    first = await reader.read(2)
    if first and first[0] & 0x80:
        body = bytes([4, 0, 1]) + (2).to_bytes(2, "big") + bytes(6) + bytes(16)  # type, hit, cert type...
        writer.write((0x8000 | len(body)).to_bytes(2, "big") + body)
    else:
        writer.write(Record(ContentType.ALERT, 0x0301, b"\x02\x46").to_bytes())
    await writer.drain()


def test_sslv2_server_hello_is_detected() -> None:
    attempt = scan_of(sslv2_only)
    assert attempt.ok and attempt.result is not None
    assert attempt.result.accepted_versions == {TlsVersion.SSL2}


def test_a_server_hello_without_a_completed_handshake_is_no_acceptance() -> None:
    """Issue 13: a server that answers every hello with a ServerHello and then internal_error accepted
    nothing; each version is unsettled with the server's alert in words, in a few extra connections."""
    with hello_then_abort_server() as served:
        attempt = run(scan_endpoint(served.endpoint, FAST))
    assert attempt.ok and attempt.result is not None
    scan = attempt.result
    assert scan.accepted_versions == frozenset() and scan.suites == {}
    assert set(scan.unsettled_versions) == {TlsVersion.SSL3, TlsVersion.TLS1_0, TlsVersion.TLS1_1,
                                            TlsVersion.TLS1_2, TlsVersion.TLS1_3}
    assert scan.unsettled_versions[TlsVersion.TLS1_2] == (
        "TLS 1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: answers ServerHello, handshake fails: the server sent the TLS alert 'internal error'")
    assert "static RSA" not in str(scan)  # nothing is reported as accepted, so no suite is judged
    assert scan.connections == served.accepted <= 37  # one confirmation per version, not one per suite
    # issue 16: a ServerHello for RSA key exchange and then an alert is no refusal of it (ROBOT stays open)
    assert scan.robot is None and scan.ccs_injection is None
    assert any(i.startswith("ROBOT (a well-formed block): ") and "answered ServerHello, then aborted" in i
               for i in scan.inconclusive), scan.inconclusive
    # issue 16: no stack here serves ML-KEM; the crafted ServerHello takes the client's first share, as a
    # server preferring X25519MLKEM768 does, and the report says what it chose
    assert scan.post_quantum == "X25519MLKEM768 (hybrid ML-KEM) chosen"

