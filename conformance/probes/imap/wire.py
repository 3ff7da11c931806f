"""IMAP responses on the wire (RFC 9051 2.2.2, 7): untagged, continuation, tagged, literals; bounded.

Hand-written because imaplib/imapclient are blocking and hide the raw exchange; the probes need
per-read timeouts, literal-size bounds and a transcript.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from conformance.probes.wire.outcome import (
    ProbeTimeout,
    ProtocolViolation,
    ServerUnavailable,
    Transcript,
    Unreachable,
)
from conformance.probes.wire.streams import Deadline, first_contact, quote, read_exactly, read_line, send

MAX_LITERAL = 64 * 1024
MAX_UNTAGGED = 1000
MAX_RESPONSE_BYTES = 256 * 1024

_LITERAL = re.compile(rb"\{(?P<n>\d{1,10})\+?\}\r?\n$")
_STATUS = re.compile(r"^(?P<status>OK|NO|BAD|PREAUTH|BYE)(?:\s+\[(?P<code>[^\]]*)\])?\s*(?P<text>.*)$",
                     re.IGNORECASE)


@dataclass(frozen=True)
class ImapResponse:
    """The completion of one command: its tagged status, the response code in brackets, the text,
    and the untagged lines the server sent before it (literals inlined)."""

    tag: str
    status: str
    code: str | None
    text: str
    untagged: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.tag} {self.status}{code} {self.text}".rstrip()


@dataclass(frozen=True)
class StatusLine:
    status: str
    code: str | None
    text: str


def parse_status(rest: str) -> StatusLine | None:
    """``OK [CODE] text`` (after the tag or ``*``), or None if ``rest`` is not a status response."""
    match = _STATUS.match(rest)
    if not match:
        return None
    return StatusLine(match.group("status").upper(), match.group("code"), match.group("text"))


async def read_logical_line(reader: asyncio.StreamReader, *, timeout: float, deadline: Deadline | None,
                            transcript: Transcript | None, what: str) -> str:
    """One response line with every ``{n}`` literal read and inlined. Bounded in literal size and total."""
    parts: list[str] = []
    size = 0
    while True:
        line = await read_line(reader, timeout=timeout, deadline=deadline, what=what)
        size += len(line)
        if transcript is not None:
            transcript.server(line.decode("utf-8", "replace"))
        parts.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        literal = _LITERAL.search(line)
        if not literal:
            return "".join(parts)
        n = int(literal.group("n"))
        if n > MAX_LITERAL or size + n > MAX_RESPONSE_BYTES:
            raise ProtocolViolation(f"literal of {n} bytes exceeds our bound of {MAX_LITERAL} while {what}")
        data = await read_exactly(reader, n, timeout=timeout, deadline=deadline, what=what)
        size += n
        if transcript is not None:
            transcript.note(f"literal of {n} bytes")
        parts.append("\r\n" + data.decode("utf-8", "replace"))


async def read_response(reader: asyncio.StreamReader, tag: str, *, timeout: float,
                        deadline: Deadline | None = None, transcript: Transcript | None = None,
                        what: str = "reading IMAP response") -> ImapResponse:
    """Read until the tagged completion for ``tag``; untagged lines are collected. A ``* BYE`` followed
    by a close is ServerUnavailable (the server's words quoted); a line that is neither untagged,
    continuation nor our tag is a ProtocolViolation."""
    reply_deadline = Deadline(deadline.clamp(timeout) if deadline else timeout)
    untagged: list[str] = []
    bye: str | None = None
    while True:
        try:
            line = await read_logical_line(reader, timeout=timeout, deadline=reply_deadline,
                                           transcript=transcript, what=what)
        except (Unreachable, ProbeTimeout):
            if bye is not None:
                raise ServerUnavailable(f"server ended the session: {bye}") from None
            raise
        head, _, rest = line.partition(" ")
        if head == "*":
            if len(untagged) >= MAX_UNTAGGED:
                raise ProtocolViolation(f"more than {MAX_UNTAGGED} untagged responses while {what}")
            untagged.append(rest)
            if rest.upper().startswith("BYE"):
                bye = quote(line.encode())
            continue
        if head == "+":
            raise ProtocolViolation(f"unexpected continuation request while {what}: {quote(line.encode())}")
        status = parse_status(rest)
        if head != tag and status is not None and status.status in ("OK", "NO", "BAD"):
            # RFC 9051 2.2.2: a command's completion carries the tag the client sent with it
            raise ProtocolViolation(f"a completion tagged {head!r} arrived while {what} (our command's tag is "
                                    f"{tag}): a surplus or mismatched reply, so later replies would answer the "
                                    f"wrong commands: {quote(line.encode())}")
        if head != tag or status is None or status.status not in ("OK", "NO", "BAD"):
            raise ProtocolViolation(f"unexpected line while {what} (expected tag {tag}): {quote(line.encode())}")
        return ImapResponse(tag, status.status, status.code, status.text, tuple(untagged))


async def read_greeting(reader: asyncio.StreamReader, *, timeout: float, deadline: Deadline | None = None,
                        transcript: Transcript | None = None) -> StatusLine:
    """The server greeting: ``* OK`` or ``* PREAUTH`` returned; ``* BYE`` is ServerUnavailable;
    anything else is a ProtocolViolation."""
    with first_contact(reader):  # a silent or 'not now' greeting speaks for the endpoint, not this probe
        line = await read_logical_line(reader, timeout=timeout, deadline=deadline, transcript=transcript,
                                       what="waiting for the IMAP greeting")
        head, _, rest = line.partition(" ")
        status = parse_status(rest) if head == "*" else None
        if status is None or status.status not in ("OK", "PREAUTH", "BYE"):
            raise ProtocolViolation(f"not an IMAP greeting: {quote(line.encode())}")
        if status.status == "BYE":
            raise ServerUnavailable(f"server refused the session: {quote(line.encode())}")
        return status


def capabilities_in(untagged: tuple[str, ...] | list[str], code: str | None = None) -> frozenset[str] | None:
    """Capabilities from an untagged ``CAPABILITY`` response or a ``[CAPABILITY ...]`` response code,
    upper-cased; None when neither carries them."""
    candidates = list(untagged)
    candidates += [s.code for s in map(parse_status, untagged) if s is not None and s.code]
    candidates += [code] if code else []
    for rest in candidates:
        words = rest.split()
        if words and words[0].upper() == "CAPABILITY":
            return frozenset(w.upper() for w in words[1:])
    return None


def quote_string(value: str) -> str:
    """An IMAP quoted string (RFC 9051 4.3); refuses CR/LF, which only a literal can carry."""
    if "\r" in value or "\n" in value:
        raise ValueError("IMAP quoted strings cannot contain CR or LF")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: str, line: str, *,
                  timeout: float, deadline: Deadline | None = None, transcript: Transcript | None = None,
                  secret: bool = False) -> ImapResponse:
    """Send ``tag line`` and read through its tagged completion."""
    if "\r" in line or "\n" in line:
        raise ValueError("IMAP command contains a line break")
    verb = line.split(" ", 1)[0].upper() if not secret else "a redacted command"
    if transcript is not None:
        transcript.client(f"{tag} {line}", secret=secret)
    await send(writer, f"{tag} {line}\r\n".encode(), timeout=deadline.clamp(timeout) if deadline else timeout,
               what=f"sending {verb}")
    return await read_response(reader, tag, timeout=timeout, deadline=deadline, transcript=transcript,
                               what=f"reading the response to {verb}")
