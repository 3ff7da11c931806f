"""One ClientHello, one answer: the single-connection step every TLS scan is built from.

The answer is the server's *first flight* as far as a prober needs it (ServerHello, and for
(EC)DHE suites the ServerKeyExchange), or the server's refusal. Anything else — garbage, a record
over the size limit, a flight that never ends — is a ``ProtocolViolation``; the caller bounds the
whole exchange with one deadline so a slow-drip server cannot hold it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from conformance.probes.tls.suites import suite
from conformance.probes.tls.wire import (
    Alert,
    ClientHello,
    ContentType,
    DecodeError,
    DheParams,
    EcdheParams,
    HandshakeBuffer,
    HandshakeType,
    Record,
    ServerHello,
    TlsVersion,
    describe,
)

MAX_FLIGHT = 2**20  # bytes we read before calling a first flight hostile


@dataclass(frozen=True)
class ServerFlight:
    """The server accepted the hello: what it chose, and the key-exchange group if it sent one."""

    hello: ServerHello
    dhe_bits: int | None = None
    ecdhe_group: int | None = None
    dhe_prime: int | None = None

    @property
    def version(self) -> int:
        return self.hello.selected_version

    @property
    def cipher_suite(self) -> int:
        return self.hello.cipher_suite


@dataclass(frozen=True)
class Refusal:
    """The server declined the hello: with an alert (``alert`` set) or by closing the connection."""

    reason: str
    alert: int | None = None


Answer = ServerFlight | Refusal


async def read_record(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """The next record (type, payload), or None if the peer closed/reset cleanly between records."""
    try:
        header = await reader.readexactly(Record.HEADER)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise DecodeError(f"connection closed inside a record header ({exc.partial.hex()})") from exc
        return None
    except ConnectionResetError:
        return None
    content_type, _version, length = Record.parse_header(header)
    try:
        return content_type, await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise DecodeError(f"connection closed {len(exc.partial)} bytes into a {length}-byte record") from exc


def _key_exchange(flight: ServerFlight, body: bytes) -> ServerFlight:
    chosen = suite(flight.cipher_suite)
    if chosen.ephemeral_dh:
        params = DheParams.parse(body)
        return ServerFlight(flight.hello, dhe_bits=params.bits, dhe_prime=int.from_bytes(params.prime, "big"))
    if chosen.ephemeral_ecdh:
        return ServerFlight(flight.hello, ecdhe_group=EcdheParams.parse(body).group)
    return flight


def _needs_key_exchange(hello: ServerHello) -> bool:
    if hello.is_retry_request or hello.selected_version >= TlsVersion.TLS1_3:
        return False  # everything after a TLS 1.3 ServerHello is encrypted
    chosen = suite(hello.cipher_suite)
    return chosen.ephemeral_dh or chosen.ephemeral_ecdh


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: ClientHello) -> Answer:
    """Send ``hello`` and read until the server's answer is known. Raises DecodeError on garbage;
    the caller owns the deadline and the connection."""
    writer.write(hello.record())
    await writer.drain()
    handshake, flight, seen = HandshakeBuffer(), None, 0
    while True:
        record = await read_record(reader)
        if record is None:
            if flight is None and handshake.pending:
                raise DecodeError(f"connection closed {handshake.pending} bytes into a handshake message")
            return flight or Refusal("closed the connection without an alert")
        content_type, payload = record
        seen += len(payload)
        if seen > MAX_FLIGHT:
            raise DecodeError(f"first flight exceeds {MAX_FLIGHT} bytes without ServerHelloDone")
        if content_type == ContentType.ALERT:
            if flight:
                return flight
            alert = Alert.parse(payload[:2]) if len(payload) >= 2 else Alert.parse(payload)
            return Refusal(str(alert), alert.description)
        if content_type != ContentType.HANDSHAKE:
            if flight:
                return flight
            raise DecodeError(f"{describe(ContentType, content_type)} record before ServerHello")
        for message in handshake.feed(payload):
            if flight is None:
                if message.msg_type != HandshakeType.SERVER_HELLO:
                    raise DecodeError(f"expected ServerHello, got {describe(HandshakeType, message.msg_type)}")
                flight = ServerFlight(ServerHello.parse(message.body))
                if not _needs_key_exchange(flight.hello):
                    return flight
            elif message.msg_type == HandshakeType.SERVER_KEY_EXCHANGE:
                return _key_exchange(flight, message.body)
            elif message.msg_type in (HandshakeType.SERVER_HELLO_DONE, HandshakeType.CERTIFICATE_REQUEST):
                return flight


async def exchange_ssl2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: bytes) -> bool:
    """Send an SSL 2.0 CLIENT-HELLO; True if the server answered with an SSL 2.0 SERVER-HELLO."""
    writer.write(hello)
    await writer.drain()
    try:
        head = await reader.readexactly(3)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return False
    # SSLv2 record: two-byte length with the high bit set, then message type 4 (SERVER-HELLO).
    return bool(head[0] & 0x80) and head[2] == 4
