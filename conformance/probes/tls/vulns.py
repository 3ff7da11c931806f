"""Known implementation flaws, probed with one hand-written exchange each (no local stack will send the
malformed messages these tests need).

Heartbleed (CVE-2014-0160): a heartbeat request whose payload_length claims 16 KiB but carries no payload.
A fixed server discards it silently (RFC 6520 4) or refuses it; a vulnerable one answers with 16 KiB of
its own memory. It is sent right after the server's first flight, as the vulnerable OpenSSL 1.0.1
releases answered heartbeats during the handshake, followed by a close_notify so that a server which
discards it closes at once instead of leaving the prober to wait for its timeout.

OpenSSL CCS injection (CVE-2014-0224): after the server's whole first flight, a ChangeCipherSpec before any
key exchange (RFC 5246 7.1 allows it only once the security parameters are agreed), then two bytes of
application data. A fixed server refuses the ChangeCipherSpec (unexpected_message) or closes; a vulnerable
one takes it, switches to keys derived from an empty master secret and fails to decrypt the application
data (bad_record_mac) — the decision sslyze's plugin makes — or otherwise keeps going.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from conformance.probes.tls.hello import MAX_FLIGHT, Refusal, exchange, read_record
from conformance.probes.tls.wire import (
    Alert,
    AlertDescription,
    ClientHello,
    ContentType,
    DecodeError,
    ExtensionType,
    Handshake,
    HandshakeBuffer,
    HandshakeType,
    Record,
    ServerHello,
    describe,
)
from conformance.probes.wire.outcome import ProtocolViolation

CLAIMED_PAYLOAD = 0x4000
HEARTBEAT_REQUEST = 1
PEER_ALLOWED_TO_SEND = b"\x01"  # RFC 6520 2: the HeartbeatMode the client offers
CLOSE_NOTIFY_WARNING = bytes([1, 0])
CHANGE_CIPHER_SPEC = b"\x01"
EARLY_APPLICATION_DATA = b"\x00\x00"


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
            return Heartbleed(False, f"negotiates heartbeats and refused the over-long request ({_alert_text(payload)})")
    return Heartbleed(False, "negotiates heartbeats and discarded the over-long request (closed the connection)")


@dataclass(frozen=True)
class FullFlight:
    """The server's first flight up to ServerHelloDone: a handshake a client could now continue."""

    hello: ServerHello
    messages: tuple[Handshake, ...]

    @property
    def version(self) -> int:
        return self.hello.selected_version

    def message(self, msg_type: int) -> Handshake | None:
        return next((m for m in self.messages if m.msg_type == msg_type), None)


def _alert_text(payload: bytes) -> str:
    return str(Alert.parse(payload[:2])) if len(payload) >= 2 else "a truncated alert"


async def full_flight(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      hello: ClientHello) -> FullFlight | Refusal:
    """Send a TLS 1.0-1.2 ``hello`` and read everything up to ServerHelloDone (``exchange`` stops earlier)."""
    writer.write(hello.record())
    await writer.drain()
    buffer, seen = HandshakeBuffer(), 0
    messages: list[Handshake] = []
    while (record := await read_record(reader)) is not None:
        content_type, payload = record
        seen += len(payload)
        if content_type == ContentType.ALERT and not messages:
            return Refusal(_alert_text(payload))
        if content_type == ContentType.ALERT:  # it took the hello, so this is no refusal of what it offered
            raise ProtocolViolation(f"answered ServerHello, then aborted its first flight with {_alert_text(payload)}")
        if content_type != ContentType.HANDSHAKE or seen > MAX_FLIGHT:
            raise DecodeError(f"{describe(ContentType, content_type)} record in the first flight "
                              f"after {seen} bytes, before ServerHelloDone")
        messages += buffer.feed(payload)
        if messages and messages[0].msg_type != HandshakeType.SERVER_HELLO:
            raise DecodeError(f"expected ServerHello, got {describe(HandshakeType, messages[0].msg_type)}")
        if any(m.msg_type == HandshakeType.SERVER_HELLO_DONE for m in messages):
            return FullFlight(ServerHello.parse(messages[0].body), tuple(messages))
    if messages:
        raise ProtocolViolation("answered ServerHello, then closed the connection before ServerHelloDone")
    return Refusal("closed the connection without an alert")


@dataclass(frozen=True)
class CcsInjection:
    """``vulnerable`` is None when the server's answer settles nothing; ``reason`` says what it did."""

    vulnerable: bool | None
    reason: str


_EARLY_CCS = "a ChangeCipherSpec sent before the key exchange"


async def ccs_injection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        hello: ClientHello) -> CcsInjection:
    """CVE-2014-0224: an early ChangeCipherSpec and a record that only the injected keys would decrypt."""
    flight = await full_flight(reader, writer, hello)
    if isinstance(flight, Refusal):
        return CcsInjection(None, f"the hello was refused ({flight.reason})")
    version = flight.version
    writer.write(Record(ContentType.CHANGE_CIPHER_SPEC, version, CHANGE_CIPHER_SPEC).to_bytes()
                 + Record(ContentType.APPLICATION_DATA, version, EARLY_APPLICATION_DATA).to_bytes())
    await writer.drain()
    record = await read_record(reader)
    if record is None:
        return CcsInjection(False, f"closed the connection on {_EARLY_CCS}")
    content_type, payload = record
    if content_type != ContentType.ALERT:
        return CcsInjection(True, f"answered {_EARLY_CCS} with a {describe(ContentType, content_type)} "
                                  "record instead of refusing it")
    if len(payload) >= 2 and payload[1] in (AlertDescription.BAD_RECORD_MAC, AlertDescription.DECRYPTION_FAILED):
        return CcsInjection(True, f"took {_EARLY_CCS} and tried to decrypt the next record with keys from an "
                                  f"empty master secret ({_alert_text(payload)})")
    return CcsInjection(False, f"refused {_EARLY_CCS} ({_alert_text(payload)})")
