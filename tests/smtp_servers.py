"""aiosmtpd (a real SMTP server nobody here wrote) on 127.0.0.1 port 0, with STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from conformance.target import Endpoint, Service

USER = "alice@example.test"
PASSWORD = "Tr0ub4dor&3-known-secret"


class Recorder:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins: list[bool] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope.original_content or b"")
        return "250 2.0.0 queued"


def authenticator(recorder: Recorder) -> Any:
    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == USER.encode() and data.password == PASSWORD.encode()
        recorder.logins.append(ok)
        return AuthResult(success=ok, handled=False)  # handled defaults to True: aiosmtpd would send nothing
    return check


@contextlib.asynccontextmanager
async def aiosmtpd_server(context: ssl.SSLContext, *, auth_require_tls: bool = True,
                          recorder: Recorder | None = None, service: Service = Service.SUBMISSION,
                          ) -> AsyncIterator[Endpoint]:
    handler = recorder or Recorder()
    loop = asyncio.get_running_loop()
    # loop.create_server directly: aiosmtpd's Controller cannot bind port 0 (aiosmtpd issue #388)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="mx.test", tls_context=context, auth_require_tls=auth_require_tls,
                     authenticator=authenticator(handler)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Endpoint(service, "node1", "localhost", port, "127.0.0.1")
    finally:
        server.close()
        await server.wait_closed()


class EndlessSasl(SMTP):
    """A broken SASL state machine: once AUTH starts, every line (also "*", also STARTTLS) gets another
    334 challenge until the client hangs up. STARTTLS works on a connection that never sent AUTH."""

    async def smtp_AUTH(self, arg: str) -> None:
        while True:
            await self.push("334 ")
            if not await self._reader.readline():
                return


@contextlib.asynccontextmanager
async def endless_sasl_server(context: ssl.SSLContext) -> AsyncIterator[Endpoint]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: EndlessSasl(Recorder(), hostname="mx.test", tls_context=context),
                                      "127.0.0.1", 0)
    try:
        yield Endpoint(Service.SUBMISSION, "node1", "localhost", server.sockets[0].getsockname()[1], "127.0.0.1")
    finally:
        server.close()
        await server.wait_closed()


class TimingOracle(SMTP):
    """AUTH PLAIN whose failure waits ``known_delay`` for USER and ``unknown_delay`` for anyone else: the
    few-millisecond oracle of a real MTA that hashes only known users' passwords."""

    def __init__(self, *args: Any, known_delay: float, unknown_delay: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.known_delay, self.unknown_delay = known_delay, unknown_delay

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        _, user, password = base64.b64decode(args[1]).split(b"\0")
        await asyncio.sleep(self.known_delay if user == USER.encode() else self.unknown_delay)
        ok = user == USER.encode() and password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(user, b"") if ok else None)


@contextlib.asynccontextmanager
async def timing_oracle_server(context: ssl.SSLContext, *, known_delay: float, unknown_delay: float,
                               ) -> AsyncIterator[Endpoint]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: TimingOracle(Recorder(), hostname="mx.test", tls_context=context, known_delay=known_delay,
                             unknown_delay=unknown_delay), "127.0.0.1", 0)
    try:
        yield Endpoint(Service.SUBMISSION, "node1", "localhost", server.sockets[0].getsockname()[1], "127.0.0.1")
    finally:
        server.close()
        await server.wait_closed()
