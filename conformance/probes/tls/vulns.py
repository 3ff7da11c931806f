"""Known implementation flaws, probed with one hand-written exchange each (no local stack will send the
malformed messages these tests need).

Heartbleed (CVE-2014-0160): a heartbeat request whose payload_length claims 16 KiB but carries no payload.
A fixed server discards it silently (RFC 6520 4) or refuses it; a vulnerable one answers with 16 KiB of
its own memory. It is sent right after the server's first flight, as the vulnerable OpenSSL 1.0.1
releases answered heartbeats during the handshake, followed by a close_notify so that a server which
discards it closes at once instead of leaving the prober to wait for its timeout.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from conformance.probes.tls.hello import Refusal, exchange, read_record
from conformance.probes.tls.wire import (
    Alert,
    ClientHello,
    ContentType,
    ExtensionType,
    Record,
)

CLAIMED_PAYLOAD = 0x4000
HEARTBEAT_REQUEST = 1
PEER_ALLOWED_TO_SEND = b"\x01"  # RFC 6520 2: the HeartbeatMode the client offers
CLOSE_NOTIFY_WARNING = bytes([1, 0])


@dataclass(frozen=True)
class Heartbleed:
    """``vulnerable`` is None when the server's answer settles nothing; ``reason`` says what it did."""

    vulnerable: bool | None
    reason: str


async def heartbleed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: ClientHello) -> Heartbleed:
    """Offer the heartbeat extension in ``hello``; if the server takes it, send the over-long request."""
    answer = await exchange(reader, writer, hello)
    if isinstance(answer, Refusal):
        return Heartbleed(None, f"the hello offering heartbeats was refused ({answer.reason})")
    if answer.hello.extension(ExtensionType.HEARTBEAT) is None:
        return Heartbleed(False, "the server does not negotiate the heartbeat extension")
    version = answer.version
    request = bytes([HEARTBEAT_REQUEST]) + CLAIMED_PAYLOAD.to_bytes(2, "big")
    writer.write(Record(ContentType.HEARTBEAT, version, request).to_bytes()
                 + Record(ContentType.ALERT, version, CLOSE_NOTIFY_WARNING).to_bytes())
    await writer.drain()
    while (record := await read_record(reader)) is not None:
        content_type, payload = record
        if content_type == ContentType.HEARTBEAT:
            if len(payload) > len(request):
                return Heartbleed(True, f"answered a heartbeat that carried no payload with "
                                        f"{len(payload) - len(request)} bytes of its memory")
            return Heartbleed(False, "answered the heartbeat without adding bytes")
        if content_type == ContentType.ALERT:
            alert = str(Alert.parse(payload[:2])) if len(payload) >= 2 else "a truncated alert"
            return Heartbleed(False, f"negotiates heartbeats and refused the over-long request ({alert})")
    return Heartbleed(False, "negotiates heartbeats and discarded the over-long request (closed the connection)")
