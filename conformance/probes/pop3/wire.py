"""POP3 replies on the wire (RFC 1939 3, RFC 2449 8): status lines, multi-line responses, response codes; bounded.

Hand-written over ``wire.streams`` rather than poplib: poplib blocks, reads lines without a per-read
deadline (``_getline`` over ``makefile``) and hides the exchange; the probes need per-read timeouts, an
overall session budget, a bound on multi-line responses and a transcript, exactly as for SMTP and IMAP.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from conformance.probes.wire.outcome import ProtocolViolation, ServerUnavailable, Transcript
from conformance.probes.wire.streams import Deadline, first_contact, quote, read_line, send

MAX_MULTILINE = 1000       # CAPA answers a dozen lines; more is a server talking past the question
_STATUS = re.compile(r"^(?P<status>\+OK|-ERR)(?:\s+\[(?P<code>[^\]]*)\])?\s*(?P<text>.*)$", re.IGNORECASE)
_TIMESTAMP = re.compile(r"<[^<>@\s]*@[^<>\s]*>")   # RFC 1939 7: the APOP banner timestamp


@dataclass(frozen=True)
class Pop3Reply:
    """One status line: +OK or -ERR, the RFC 2449 response code in brackets (``AUTH``, ``SYS/TEMP``), the text."""

    ok: bool
    code: str | None
    text: str

    @property
    def status(self) -> str:
        return "+OK" if self.ok else "-ERR"

    @property
    def temporary(self) -> bool:
        """RFC 3206 4 / RFC 2449 8.1: SYS/TEMP, IN-USE and LOGIN-DELAY say 'not now', not 'wrong'."""
        first = (self.code or "").upper()
        return first.startswith("SYS/TEMP") or first in ("IN-USE", "LOGIN-DELAY")

    @property
    def short(self) -> str:
        """The answer without its free text ("-ERR [AUTH]"): what a client acts on and what enumeration compares."""
        return self.status + (f" [{self.code.upper()}]" if self.code else "")

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.status}{code} {self.text}".rstrip()


def parse_status(line: str) -> Pop3Reply | None:
    match = _STATUS.match(line.rstrip("\r\n"))
    if not match:
        return None
    return Pop3Reply(match.group("status").upper() == "+OK", match.group("code"), match.group("text"))


def apop_timestamp(greeting: Pop3Reply) -> str | None:
    """The ``<...@...>`` timestamp of an APOP-capable greeting (RFC 1939 7), or None."""
    found = _TIMESTAMP.search(greeting.text)
    return found.group(0) if found else None


async def _line(reader: asyncio.StreamReader, *, timeout: float, deadline: Deadline | None,
                transcript: Transcript | None, what: str) -> str:
    raw = await read_line(reader, timeout=timeout, deadline=deadline, what=what)
    if transcript is not None:
        transcript.server(raw.decode("utf-8", "replace"))
    return raw.decode("utf-8", "replace").rstrip("\r\n")


async def read_reply(reader: asyncio.StreamReader, *, timeout: float, deadline: Deadline | None = None,
                     transcript: Transcript | None = None, what: str, continuation: bool = False) -> Pop3Reply | str:
    """One status line. With ``continuation`` a SASL "+ ..." line is returned as its text (a str);
    anything that is neither is a ProtocolViolation (the server's words quoted)."""
    line = await _line(reader, timeout=timeout, deadline=deadline, transcript=transcript, what=what)
    reply = parse_status(line)
    if reply is not None:
        return reply
    if continuation and (line == "+" or line.startswith("+ ")):
        return line[2:]
    raise ProtocolViolation(f"not a POP3 status line while {what}: {quote(line.encode())}")


async def read_status(reader: asyncio.StreamReader, *, timeout: float, deadline: Deadline | None = None,
                      transcript: Transcript | None = None, what: str) -> Pop3Reply:
    reply = await read_reply(reader, timeout=timeout, deadline=deadline, transcript=transcript, what=what)
    assert isinstance(reply, Pop3Reply)
    return reply


async def read_status_of(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str, *, timeout: float,
                         deadline: Deadline | None = None, transcript: Transcript | None = None) -> Pop3Reply:
    """``command`` for commands that never get a SASL continuation."""
    reply = await command(reader, writer, line, timeout=timeout, deadline=deadline, transcript=transcript)
    assert isinstance(reply, Pop3Reply)
    return reply


async def read_multiline(reader: asyncio.StreamReader, *, timeout: float, deadline: Deadline | None = None,
                         transcript: Transcript | None = None, what: str) -> tuple[str, ...]:
    """The lines of a multi-line response up to the lone "." (RFC 1939 3), byte-stuffing removed; at most
    MAX_MULTILINE lines, all within one reply deadline."""
    reply_deadline = Deadline(deadline.clamp(timeout) if deadline else timeout)
    lines: list[str] = []
    while len(lines) <= MAX_MULTILINE:
        line = await _line(reader, timeout=timeout, deadline=reply_deadline, transcript=transcript, what=what)
        if line == ".":
            return tuple(lines)
        lines.append(line[1:] if line.startswith("..") else line)
    raise ProtocolViolation(f"more than {MAX_MULTILINE} lines without the closing '.' while {what}")


async def read_greeting(reader: asyncio.StreamReader, *, timeout: float, deadline: Deadline | None = None,
                        transcript: Transcript | None = None) -> Pop3Reply:
    """The greeting: +OK returned; -ERR is ServerUnavailable (RFC 2449 8.1.2 lets a busy server say so there)."""
    with first_contact(reader):  # a silent or refusing greeting speaks for the endpoint, not this probe
        reply = await read_status(reader, timeout=timeout, deadline=deadline, transcript=transcript,
                                  what="waiting for the POP3 greeting")
        if not reply.ok:
            raise ServerUnavailable(f"server refused the session: {reply}")
        return reply


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str, *, timeout: float,
                  deadline: Deadline | None = None, transcript: Transcript | None = None, shown: str | None = None,
                  continuation: bool = False) -> Pop3Reply | str:
    """Send one command line and read its status line. ``shown`` is what the transcript records instead
    of ``line`` (a redacted PASS or APOP)."""
    if "\r" in line or "\n" in line:
        raise ValueError("POP3 command contains a line break")
    verb = line.split(" ", 1)[0].upper()
    if transcript is not None:
        transcript.client(shown if shown is not None else line)
    await send(writer, f"{line}\r\n".encode(), timeout=deadline.clamp(timeout) if deadline else timeout,
               what=f"sending {verb}")
    return await read_reply(reader, timeout=timeout, deadline=deadline, transcript=transcript,
                            what=f"reading the reply to {verb}", continuation=continuation)


def capabilities(lines: tuple[str, ...]) -> frozenset[str]:
    """CAPA lines as upper-cased tags (``STLS``, ``USER``); ``SASL PLAIN LOGIN`` also gives ``SASL=PLAIN`` ..."""
    found: set[str] = set()
    for line in lines:
        words = line.split()
        if not words:
            continue
        tag = words[0].upper()
        found.add(tag)
        if tag == "SASL":
            found.update(f"SASL={w.upper()}" for w in words[1:])
    return frozenset(found)
