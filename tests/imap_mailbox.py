"""A tiny IMAPS server over a list of messages, enough for imapclient to log in, EXAMINE INBOX,
UID SEARCH SUBJECT and UID FETCH BODY.PEEK[HEADER] (the delivery probe's read-back)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from conformance.target import Endpoint, Service


@dataclass
class MailboxImap:
    messages: list[bytes]
    user: str
    password: str
    logins: list[bool] = field(default_factory=list)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] mailbox ready\r\n")
        try:
            while line := await asyncio.wait_for(reader.readline(), 10):
                if not await self._command(line.decode().rstrip("\r\n"), writer):
                    break
                await writer.drain()
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _command(self, line: str, writer: asyncio.StreamWriter) -> bool:
        tag, _, rest = line.partition(" ")
        words = rest.split(" ")
        verb = words[0].upper()
        uid = verb == "UID"
        if uid:
            verb, words = words[1].upper(), words[1:]
        if verb == "CAPABILITY":
            writer.write(f"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n".encode())
        elif verb == "LOGIN":
            user, password = (w.strip('"') for w in words[1:3])
            ok = (user, password) == (self.user, self.password)
            self.logins.append(ok)
            writer.write(f"{tag} {'OK logged in' if ok else 'NO [AUTHENTICATIONFAILED] no'}\r\n".encode())
        elif verb in ("SELECT", "EXAMINE"):
            writer.write(f"* {len(self.messages)} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] ok\r\n"
                         f"{tag} OK [READ-ONLY] done\r\n".encode())
        elif verb == "SEARCH":
            needle = " ".join(words[2:]).strip('"').lower() if len(words) > 2 else ""
            hits = [str(n) for n, m in enumerate(self.messages, 1) if needle in _subject(m).lower()]
            writer.write(f"* SEARCH {' '.join(hits)}\r\n{tag} OK done\r\n".encode())
        elif verb == "FETCH":
            for number in _numbers(words[1], len(self.messages)):
                header = self.messages[number - 1].split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                writer.write(f"* {number} FETCH (UID {number} BODY[HEADER] {{{len(header)}}}\r\n".encode()
                             + header + b")\r\n")
            writer.write(f"{tag} OK done\r\n".encode())
        elif verb == "NOOP":
            writer.write(f"{tag} OK done\r\n".encode())
        elif verb == "LOGOUT":
            writer.write(f"* BYE bye\r\n{tag} OK done\r\n".encode())
            await writer.drain()
            return False
        else:
            writer.write(f"{tag} BAD unknown\r\n".encode())
        return True


def _subject(message: bytes) -> str:
    found = re.search(rb"^Subject: (.*)$", message, re.MULTILINE | re.IGNORECASE)
    return found.group(1).decode() if found else ""


def _numbers(spec: str, count: int) -> list[int]:
    numbers: list[int] = []
    for part in spec.split(","):
        low, _, high = part.partition(":")
        top = count if high == "*" else int(high or low)
        numbers += [n for n in range(int(low), top + 1) if 1 <= n <= count]
    return numbers


@contextlib.asynccontextmanager
async def mailbox_server(mailbox: MailboxImap, context: ssl.SSLContext) -> AsyncIterator[Endpoint]:
    server = await asyncio.start_server(mailbox, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Endpoint(Service.IMAPS, "node1", "localhost", port, "127.0.0.1")
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
