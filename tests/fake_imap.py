"""A tiny well-behaved IMAP server for probe tests: greeting, CAPABILITY, STARTTLS, LOGIN,
AUTHENTICATE PLAIN (with and without SASL-IR), LOGOUT. Its switches mimic real configurations."""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass, field


@dataclass
class FakeImap:
    tls_context: ssl.SSLContext | None
    user: str = "alice"
    password: str = "pw"
    logindisabled: bool = True         # Dovecot's default: LOGINDISABLED until TLS
    refusal: str = "BAD [PRIVACYREQUIRED] Plaintext authentication disallowed"
    sasl_ir: bool = False
    starttls: bool = True
    greeting_caps: bool = True
    sasl_before_tls: bool = False      # LOGINDISABLED, yet AUTHENTICATE checks credentials in clear
    endless_sasl: bool = False         # AUTHENTICATE answers every line, "*" too, with another "+"
    logins: list[str] = field(default_factory=list)

    def caps(self, tls: bool) -> str:
        words = ["IMAP4rev1"]
        words += ["STARTTLS"] if self.starttls and not tls else []
        words += ["LOGINDISABLED"] if self.logindisabled and not tls else ["AUTH=PLAIN"]
        words += ["SASL-IR"] if self.sasl_ir else []
        return " ".join(words)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = False
        greeting = f"[CAPABILITY {self.caps(tls)}] " if self.greeting_caps else ""
        writer.write(f"* OK {greeting}fake ready\r\n".encode())
        while line := await asyncio.wait_for(reader.readline(), 10):
            tag, _, rest = line.decode().rstrip("\r\n").partition(" ")
            verb, _, args = rest.partition(" ")
            verb = verb.upper()
            if verb == "CAPABILITY":
                writer.write(f"* CAPABILITY {self.caps(tls)}\r\n{tag} OK done\r\n".encode())
            elif verb == "STARTTLS" and self.starttls and not tls and self.tls_context is not None:
                writer.write(f"{tag} OK begin TLS\r\n".encode())
                await writer.drain()
                await writer.start_tls(self.tls_context)
                tls = True
            elif verb == "LOGIN":
                user, password = (a.strip('"') for a in args.split(" ", 1))
                writer.write(self._auth(tag, tls, user, password))
            elif verb == "AUTHENTICATE" and self.endless_sasl:
                while True:
                    writer.write(b"+ \r\n")
                    await writer.drain()
                    if not await asyncio.wait_for(reader.readline(), 10):
                        return
            elif verb == "AUTHENTICATE":
                token = args.partition(" ")[2]
                if not token:
                    writer.write(b"+ \r\n")
                    await writer.drain()
                    token = (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
                _, user, password = base64.b64decode(token).decode().split("\0")
                writer.write(self._auth(tag, tls or self.sasl_before_tls, user, password))
            elif verb == "LOGOUT":
                writer.write(f"* BYE bye\r\n{tag} OK done\r\n".encode())
                await writer.drain()
                return
            else:
                writer.write(f"{tag} BAD unknown\r\n".encode())
            await writer.drain()

    def _auth(self, tag: str, tls: bool, user: str, password: str) -> bytes:
        self.logins.append(password)
        if self.logindisabled and not tls:
            return f"{tag} {self.refusal}\r\n".encode()
        if (user, password) == (self.user, self.password):
            return f"{tag} OK [CAPABILITY IMAP4rev1] logged in\r\n".encode()
        return f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n".encode()
