"""Bounded, timed line I/O over asyncio streams: the only place probes touch a StreamReader/Writer.

Every read has a per-call timeout and honours an optional overall ``Deadline``, so a tarpit that
trickles one byte a second cannot hold a probe past either. Lines are bounded by the stream's limit
(set in ``connect.open_tcp``): an endless line becomes a ``ProtocolViolation``, not a growing buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Iterator

from conformance.probes.wire.outcome import (
    ProbeError,
    ProbeTimeout,
    ProtocolViolation,
    ServerUnavailable,
    Unreachable,
    mapped_errors,
)

# RFC 5321 4.5.3.1.5 allows 512-octet reply lines and IMAP servers send long CAPABILITY lines;
# 16 KiB is generous for both and still small enough that a hostile server cannot make us hoard memory.
MAX_LINE = 16 * 1024


class ContactReader(asyncio.StreamReader):
    """A StreamReader that can tell the run's health record how the first contact went (set by
    ``connect.open_tcp`` when there is one; ``first_contact`` reports and clears it)."""

    on_first_contact: Callable[[ProbeError], None] | None = None


class DeadlinePassed(ProbeTimeout):
    """The probe's own overall budget ran out: about the probe, not the server's silence."""


# Silence, a closed connection or "not now" at the first exchange is the endpoint's state, not one probe's.
_ENDPOINT_STATES = (ProbeTimeout, Unreachable, ServerUnavailable)


@contextlib.contextmanager
def first_contact(reader: asyncio.StreamReader) -> Iterator[None]:
    """Around the server's first words on a connection (its greeting): a timeout, a close or a 4xx/BYE
    there is reported to the run's health record, so the other probes of the run do not wait for it again."""
    try:
        yield
    except _ENDPOINT_STATES as exc:
        report_first_contact(reader, exc)
        raise
    finally:
        if isinstance(reader, ContactReader):
            reader.on_first_contact = None


def report_first_contact(reader: asyncio.StreamReader, error: ProbeError) -> None:
    """Tell the run's health record (if the connection has one and this is its first exchange) that the
    endpoint did not answer; the probe's own deadline running out says nothing about the server."""
    report = reader.on_first_contact if isinstance(reader, ContactReader) else None
    if report is not None and not isinstance(error, DeadlinePassed):
        report(error)


class Deadline:
    """An overall time budget shared by several reads (a whole session or a multi-line reply)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._expires = asyncio.get_running_loop().time() + seconds

    def remaining(self) -> float:
        return max(0.0, self._expires - asyncio.get_running_loop().time())

    def clamp(self, timeout: float) -> float:
        return min(timeout, self.remaining())


def _budget(timeout: float, deadline: Deadline | None) -> float:
    return deadline.clamp(timeout) if deadline is not None else timeout


async def read_line(reader: asyncio.StreamReader, *, timeout: float, deadline: Deadline | None = None,
                    what: str) -> bytes:
    """One line including its terminator. Raises ProbeTimeout (no complete line in time), Unreachable
    (the server closed; the partial line is quoted) or ProtocolViolation (line longer than MAX_LINE)."""
    salvaged = _line_left_by_a_broken_connection(reader)
    if salvaged is not None:
        return salvaged
    budget = _budget(timeout, deadline)
    if budget <= 0:
        raise DeadlinePassed(f"overall deadline of {deadline.seconds:g} s passed before {what}")  # type: ignore[union-attr]
    try:
        with mapped_errors(what):
            return await asyncio.wait_for(reader.readuntil(b"\n"), budget)
    except asyncio.LimitOverrunError:
        raise ProtocolViolation(f"line longer than {MAX_LINE} bytes while {what}") from None
    except ProbeTimeout:
        # a budget cut well short by the probe's own deadline proves nothing about the server's silence
        # (a reply's deadline starts at the full timeout, so its first line's budget is a hair below it)
        kind = ProbeTimeout if budget >= 0.9 * timeout else DeadlinePassed
        raise kind(f"no complete line within {budget:.1f} s while {what}") from None
    except Unreachable as exc:
        partial = exc.__cause__.partial if isinstance(exc.__cause__, asyncio.IncompleteReadError) else b""
        if partial:
            raise Unreachable(f"server closed the connection mid-line while {what}: {quote(partial)}") from None
        raise Unreachable(str(exc)) from None


def _line_left_by_a_broken_connection(reader: asyncio.StreamReader) -> bytes | None:
    """A complete line the server sent before its connection broke. StreamReader.readuntil raises the
    stored error (a reset) before it looks at its buffer, so replies that arrived ahead of a reset would
    be lost, and whether they were depended on timing."""
    if reader.exception() is None:
        return None
    buffer = getattr(reader, "_buffer", None)  # private, like peek_buffer: StreamReader has no peek
    if not isinstance(buffer, bytearray) or b"\n" not in buffer:
        return None
    end = buffer.index(b"\n") + 1
    line = bytes(buffer[:end])
    del buffer[:end]
    return line


async def read_exactly(reader: asyncio.StreamReader, n: int, *, timeout: float,
                       deadline: Deadline | None = None, what: str) -> bytes:
    """Exactly n bytes (an IMAP literal), with the same timeout rules as read_line."""
    budget = _budget(timeout, deadline)
    with mapped_errors(what):
        return await asyncio.wait_for(reader.readexactly(n), budget)


async def send(writer: asyncio.StreamWriter, data: bytes, *, timeout: float, what: str) -> None:
    """Write and drain with a timeout: a server that stops reading cannot stall us."""
    with mapped_errors(what):
        writer.write(data)
        await asyncio.wait_for(writer.drain(), timeout)


async def close(writer: asyncio.StreamWriter, timeout: float = 2.0) -> None:
    """Close without ever raising or hanging: teardown must not hide the real outcome."""
    try:
        tls = not writer.transport.is_closing() and writer.get_extra_info("ssl_object") is not None
        writer.close()
        if tls:
            # Our close_notify is sent; RFC 8446 6.1 lets us close without the server's. asyncio would wait
            # for it up to 30 s (ssl_shutdown_timeout), holding the per-host slot, on servers that never send it.
            writer.transport.abort()
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ConnectionError):
        pass  # teardown must not mask the outcome we already have (ssl.SSLError is an OSError)


def buffered_bytes(reader: asyncio.StreamReader) -> int:
    """Bytes the server already sent that nobody has read. After a 220/OK to STARTTLS this must be 0:
    anything else is plaintext injected ahead of the handshake (CVE-2011-0411 class)."""
    return len(peek_buffer(reader))


def peek_buffer(reader: asyncio.StreamReader) -> bytes:
    """What the server sent that nobody has read yet. StreamReader has no public peek, so its
    private buffer is read here, in one place."""
    return bytes(getattr(reader, "_buffer", b""))


def blocking_twin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> socket.socket | None:
    """A blocking duplicate of the connected socket, each operation bounded by ``timeout``, for a TLS stack
    that speaks blocking sockets only (tlslite-ng, pyOpenSSL) in a thread; asyncio's transport stops reading
    meanwhile (the caller aborts it afterwards). None when the server already sent plaintext where TLS was due."""
    if isinstance(writer.transport, asyncio.ReadTransport):
        writer.transport.pause_reading()
    if peek_buffer(reader):
        return None
    raw = writer.get_extra_info("socket")
    twin = socket.socket(raw.family, raw.type, raw.proto, fileno=os.dup(raw.fileno()))
    twin.settimeout(timeout)
    return twin


def quote(data: bytes, limit: int = 120) -> str:
    """A server's bytes as one printable, bounded string for a reason or transcript."""
    text = data.decode("utf-8", "backslashreplace").rstrip("\r\n")
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(data)} bytes)"
