"""SMTP replies on the wire (RFC 5321 4.2): typed, multi-line, bounded.

Hand-written because smtplib is blocking and aiosmtpd is a server; neither reads replies with a
per-line timeout, a reply-size bound and a transcript.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from conformance.probes.wire.outcome import ProtocolViolation, ServerUnavailable, Transcript
from conformance.probes.wire.streams import Deadline, first_contact, peek_buffer, quote, read_line, send

MAX_REPLY_LINES = 200
MAX_REPLY_BYTES = 64 * 1024

_LINE = re.compile(rb"^(?P<code>[2-5][0-5][0-9])(?:[ -](?P<text>.*?))?\r?\n$", re.DOTALL)
_ENHANCED = re.compile(r"^(?P<status>[245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")


@dataclass(frozen=True)
class SmtpReply:
    """One complete reply. ``lines`` is the text after each line's code and separator;
    ``enhanced`` is the RFC 3463 status code of the first line, if it carries one."""

    code: int
    enhanced: str | None
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        """The reply as one line for a reason or an evidence value."""
        return f"{self.code} {' / '.join(self.lines)}".rstrip()

    def to_bytes(self) -> bytes:
        lines = self.lines or ("",)
        last = len(lines) - 1
        return b"".join(f"{self.code}{' ' if i == last else '-'}{text}\r\n".encode() for i, text in enumerate(lines))

    @classmethod
    def parse(cls, data: bytes) -> SmtpReply:
        """A reply from its complete bytes (several CRLF-terminated lines); for tests and tools."""
        raw = [line + b"\n" for line in data.split(b"\n") if line]
        codes, texts = zip(*(_split(line, "parsing reply") for line in raw))
        return _reply(codes[0], list(texts), "parsing reply")


def _split(line: bytes, what: str) -> tuple[int, str]:
    match = _LINE.match(line)
    if not match:
        raise ProtocolViolation(f"not an SMTP reply line while {what}: {quote(line)!r}")
    return int(match.group("code")), (match.group("text") or b"").decode("utf-8", "replace")


def _reply(code: int, texts: list[str], what: str) -> SmtpReply:
    enhanced = None
    if texts:
        found = _ENHANCED.match(texts[0])
        if found and found.group("status")[0] == str(code)[0]:
            enhanced = found.group("status")
    return SmtpReply(code, enhanced, tuple(texts))


async def read_reply(reader: asyncio.StreamReader, *, timeout: float, deadline: Deadline | None = None,
                     transcript: Transcript | None = None, what: str = "reading SMTP reply") -> SmtpReply:
    """Read one whole reply: ``250-...`` continuation lines until ``250 ...``. ``timeout`` bounds the
    whole reply (so a trickling tarpit cannot stretch it), ``deadline`` the session.
    Raises ProtocolViolation on garbage, mixed codes or an oversized reply; ProbeTimeout; Unreachable."""
    reply_deadline = Deadline(deadline.clamp(timeout) if deadline else timeout)
    code: int | None = None
    texts: list[str] = []
    size = 0
    while True:
        line = await read_line(reader, timeout=timeout, deadline=reply_deadline, what=what)
        if transcript is not None:
            transcript.server(line.decode("utf-8", "replace"))
        size += len(line)
        line_code, text = _split(line, what)
        if code is not None and line_code != code:
            raise ProtocolViolation(f"reply code changed from {code} to {line_code} mid-reply while {what}")
        code = line_code
        texts.append(text)
        if line[3:4] != b"-":
            return _reply(code, texts, what)
        if len(texts) >= MAX_REPLY_LINES or size >= MAX_REPLY_BYTES:
            raise ProtocolViolation(f"reply exceeds {MAX_REPLY_LINES} lines / {MAX_REPLY_BYTES} bytes while {what}")


async def read_greeting(reader: asyncio.StreamReader, *, timeout: float, deadline: Deadline | None = None,
                        transcript: Transcript | None = None) -> SmtpReply:
    """The 220 greeting. A 4xx greeting is 'not now' and a 554 greeting 'not for you' (both
    ServerUnavailable: nothing about the server can be proven); any other code is a ProtocolViolation."""
    with first_contact(reader):  # a silent or 'not now' greeting speaks for the endpoint, not this probe
        reply = await read_reply(reader, timeout=timeout, deadline=deadline, transcript=transcript,
                                 what="waiting for the SMTP greeting")
        if reply.code == 220:
            return reply
        if reply.transient:
            raise ServerUnavailable(f"server not available: greeting {reply}")
        if reply.permanent:
            raise ServerUnavailable(f"server refused the session: greeting {reply}")
        raise ProtocolViolation(f"unexpected greeting {reply} (RFC 5321 4.3.1 expects 220)")


def command_bytes(line: str) -> bytes:
    """A command line with CRLF; refuses embedded line breaks so no caller can smuggle a second command."""
    if "\r" in line or "\n" in line:
        raise ValueError("SMTP command contains a line break; use SmtpSession.send_raw for deliberate pipelining")
    return line.encode("utf-8") + b"\r\n"


def refuse_unsolicited_replies(reader: asyncio.StreamReader, before: str,
                               transcript: Transcript | None = None) -> None:
    """Raise if the server sent anything we did not ask for yet (a second reply to one command, a reply
    to nothing). RFC 5321 4.2: "Every command MUST generate exactly one reply"; pipelined replies come in
    command order (RFC 2920 3.1). Read as the next reply, a surplus one would pair every later command
    with an earlier command's answer. A 421 is the one reply a server may send unasked (RFC 5321 3.8)."""
    pending = peek_buffer(reader)
    if not pending:
        return
    if transcript is not None:
        transcript.note(f"{len(pending)} bytes arrived unasked before {before}: {quote(pending)}")
    if pending.startswith(b"421"):
        raise ServerUnavailable(f"server closing the session: {quote(pending)}")
    raise ProtocolViolation(f"the server sent a reply nobody asked for before {before}: '{quote(pending)}' "
                            f"(RFC 5321 4.2: every command gets exactly one reply); later replies would "
                            f"answer the wrong commands")


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str, *, timeout: float,
                   deadline: Deadline | None = None, transcript: Transcript | None = None,
                   secret: bool = False) -> SmtpReply:
    """Send one command line and read its whole reply. ``secret`` keeps the line out of the transcript.
    Raises ProtocolViolation if a reply nobody asked for is waiting (refuse_unsolicited_replies)."""
    verb = line.split(" ", 1)[0].upper() if not secret else "a redacted command"
    refuse_unsolicited_replies(reader, f"sending {verb}", transcript)
    if transcript is not None:
        transcript.client(line, secret=secret)
    await send(writer, command_bytes(line), timeout=deadline.clamp(timeout) if deadline else timeout,
               what=f"sending {verb}")
    return await read_reply(reader, timeout=timeout, deadline=deadline, transcript=transcript,
                            what=f"reading the reply to {verb}")


@dataclass(frozen=True)
class EhloResult:
    """An EHLO reply's capabilities (RFC 5321 4.1.1.1): keywords upper-cased, their parameters kept."""

    reply: SmtpReply
    greeting_name: str
    extensions: frozenset[str]
    parameters: tuple[tuple[str, str], ...]
    auth_mechanisms: frozenset[str]

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.extensions

    def param(self, keyword: str) -> str | None:
        return next((value for key, value in self.parameters if key == keyword.upper()), None)

    @property
    def starttls(self) -> bool:
        return self.has("STARTTLS")

    @property
    def size_limit(self) -> int | None:
        value = self.param("SIZE")
        return int(value) if value and value.isdigit() else None

    @classmethod
    def from_reply(cls, reply: SmtpReply) -> EhloResult:
        first, *rest = reply.lines or ("",)
        parameters = []
        mechanisms: set[str] = set()
        for text in rest:
            keyword, _, value = text.strip().partition(" ")
            # "AUTH=LOGIN PLAIN" is a pre-RFC 4954 form some servers still send alongside "AUTH ..."
            if keyword.upper().startswith("AUTH="):
                keyword, value = "AUTH", keyword[5:] + " " + value
            keyword = keyword.upper()
            if not keyword:
                continue
            parameters.append((keyword, value.strip()))
            if keyword == "AUTH":
                mechanisms.update(m.upper() for m in value.split())
        return cls(reply, first.split(" ", 1)[0], frozenset(k for k, _ in parameters), tuple(parameters),
                   frozenset(mechanisms))
