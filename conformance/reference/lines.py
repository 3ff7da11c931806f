"""What the gateway's POP3 and IMAP sessions share: the lifecycle of one connection on asyncio streams
(refused or registered, errors collected, the auth session ended), shutdown by the node, bounded lines.
Each protocol adds its greeting, commands and replies; SMTP runs on aiosmtpd instead.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import ClassVar

from conformance.reference.outage import Component
from conformance.reference.runtime import NodeRuntime, reset_transport


class SessionEnded(Exception):
    """End the session (QUIT/LOGOUT, node shutdown, idle timeout, a client past the line bound)."""


class LineSession:
    """One connection of a line protocol. ``shutdown`` is called by the node going down."""

    max_line: ClassVar[int]
    node_down: ClassVar[str]   # the protocol's last words when the node goes down

    def __init__(self, runtime: NodeRuntime, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 starttls: ssl.SSLContext | None, implicit_tls: bool) -> None:
        self.runtime = runtime
        self.reader, self.writer = reader, writer
        self.starttls_context = starttls
        self.tls = implicit_tls
        self.user: str | None = None
        self._did_starttls = False

    async def converse(self) -> None:
        """Greet the client and answer its commands until the session ends."""
        raise NotImplementedError

    def ended_user(self) -> str | None:
        """Whose auth session ends with this connection."""
        return self.user

    async def run(self) -> None:
        runtime = self.runtime
        if runtime.down(Component.NODE):
            if runtime.flaws.reset_on_shutdown:
                reset_transport(self.writer.transport)
                return
            await self._send(self.node_down)
            self.writer.close()
            return
        runtime.sessions.add(self)
        try:
            await self.converse()
        except (SessionEnded, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ssl.SSLError, TimeoutError, OSError):
            pass  # the client went away, or the session ended: nothing to report
        except Exception as error:  # noqa: BLE001 - a gateway bug: collected, re-raised by check_errors
            runtime.errors.add(error)
        finally:
            runtime.sessions.discard(self)
            user = self.ended_user()
            if user is not None:
                runtime.auth.session_ended(user)
            if self.writer.transport is not None:  # None after a handshake the client abandoned
                self.writer.close()

    def shutdown(self, reset: bool) -> None:
        if reset:
            reset_transport(self.writer.transport)
            return
        if self.writer.is_closing():
            return
        try:
            self.writer.write(self.node_down.encode() + b"\r\n")
        except (AttributeError, RuntimeError, OSError):
            pass  # asyncio tears the TLS layer down under us when the client left at the same moment
        self.writer.close()

    async def _start_tls(self) -> None:
        """Upgrade the stream to TLS (called right after the go-ahead, with no await in between: the
        ClientHello must reach the TLS layer). Raises SessionEnded when the client drops mid-handshake."""
        assert self.starttls_context is not None
        # asyncio's stream protocol learns that it runs under TLS only once start_tls has returned: a client
        # that closes during the handshake gets "keep half-open" from it, which the TLS layer logs as a warning
        self.writer._protocol._over_ssl = True  # type: ignore[attr-defined]
        try:
            await self.writer.start_tls(self.starttls_context,
                                        ssl_handshake_timeout=self.runtime.settings.handshake_timeout)
        except AttributeError:
            # CPython 3.11: a client that drops during the handshake leaves the StreamWriter without a
            # transport, and start_tls trips over None instead of raising a connection error
            raise SessionEnded() from None
        self.tls, self._did_starttls = True, True

    async def _send(self, line: str | bytes) -> None:
        self.writer.write((line.encode() if isinstance(line, str) else line) + b"\r\n")
        await self.writer.drain()

    async def _readline(self) -> bytes:
        line = await asyncio.wait_for(self.reader.readuntil(b"\n"), self.runtime.settings.idle_timeout)
        if len(line) > self.max_line:
            raise SessionEnded()
        return line
