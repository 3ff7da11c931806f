"""What the SMTP, IMAP and POP3 client sessions share: the connection, its deadline, TLS at once or after
the protocol's go-ahead, and the close. Each protocol's session adds its own commands, replies and wording.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import ClassVar, Self, TypeVar

from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.connect import open_tcp
from conformance.probes.wire.outcome import LocalError, ProtocolViolation, Transcript
from conformance.probes.wire.streams import Deadline, close
from conformance.probes.wire.upgrade import TlsInfo, refuse_injected_plaintext, shared_probe_context, upgrade
from conformance.target import Endpoint, Secret

R = TypeVar("R")


def reveal(secret: Secret | str) -> str:
    return secret.reveal() if isinstance(secret, Secret) else secret


class StreamSession:
    """One connection of a line protocol with a transcript, used as ``async with``; closed on exit."""

    protocol: ClassVar[str] = "a"  # names the protocol in "<protocol> session used before connect()"

    def __init__(self, endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript | None = None, *,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.endpoint = endpoint
        self.cfg = cfg
        self.transcript = transcript if transcript is not None else cfg.transcript(endpoint)
        self.tls_context = tls_context
        self.tls: TlsInfo | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._deadline: Deadline | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            raise LocalError(f"{self.protocol} session used before connect()")
        return self._reader, self._writer

    @property
    def deadline(self) -> Deadline | None:
        return self._deadline

    async def _open(self) -> asyncio.StreamReader:
        """TCP, and TLS at once on an implicit-TLS port; returns the stream the greeting is read from."""
        self._deadline = Deadline(self.cfg.session_budget)
        self._reader, self._writer = await open_tcp(self.endpoint, self.cfg.timeout, self.cfg.limiter)
        self.transcript.note(f"connected to {self.endpoint}")
        if self.endpoint.implicit_tls:
            await self._upgrade()
        return self._reader

    async def _upgrade_after_go_ahead(self, context: ssl.SSLContext | None = None) -> None:
        """TLS after the server's STARTTLS/STLS go-ahead; plaintext it sent before the handshake is dropped."""
        refuse_injected_plaintext(self.streams[0], self.transcript)
        await self._upgrade(context)

    async def _upgrade(self, context: ssl.SSLContext | None = None) -> None:
        reader, writer = self.streams
        assert self._deadline is not None
        self.tls = await upgrade(reader, writer, context or self.tls_context or shared_probe_context(), self.endpoint.host,
                                 timeout=self._deadline.clamp(self.cfg.timeout))
        self.transcript.note(f"TLS established: {self.tls.version} {self.tls.cipher}")

    async def close(self) -> None:
        if self._writer is not None:
            await close(self._writer)
            self._writer = None


async def answer_and_tls_error(starting: Awaitable[R], go_ahead: Callable[[], R | None]) -> tuple[R, str | None]:
    """The answer to STARTTLS/STLS, and the handshake's failure where the go-ahead stood but TLS did not
    follow (both kept: the reason is the TLS error). ``go_ahead`` reads the answer the session kept."""
    try:
        return await starting, None
    except ProtocolViolation as exc:
        answer = go_ahead()
        if answer is None:  # the command exchange itself broke the protocol
            raise
        return answer, str(exc)
