"""The lab's receiving MX hosts: aiosmtpd with the posture a scenario needs, recording what arrives.

Each host accepts only recipients of its own scenario's domain (550 otherwise: it relays nothing) and
records, per message, whether STARTTLS was used, the negotiated version and suite and the ClientHello
the sender offered. The ClientHello is copied from the raw bytes on their way into the TLS layer, so
nothing of the handshake changes.
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException

from conformance.probes.outbound.hello import OfferedHello
from conformance.probes.outbound.scenarios import Posture
from conformance.probes.tls.wire import DecodeError

HELLO_LIMIT = 16 * 1024   # bytes kept of what the sender sends first after STARTTLS
GREETING_TIMEOUT = 30.0
# a TLS 1.2 record: alert (21), fatal (2), handshake_failure (40) — RFC 8446 §6, RFC 5246 §7.2
HANDSHAKE_FAILURE_ALERT = bytes((21, 3, 3, 0, 2, 2, 40))


@dataclass(frozen=True)
class Arrival:
    """One message a lab MX host accepted."""

    scenario: str
    host: str
    tls_version: str | None          # None: delivered in plaintext
    cipher: str | None
    hello: OfferedHello | None
    hello_error: str | None
    mail_from: str
    recipients: tuple[str, ...]
    message: bytes


@dataclass
class MxLog:
    """What every MX host of one lab run saw (the lab's one event loop writes it)."""

    arrivals: list[Arrival] = field(default_factory=list)
    connections: dict[str, int] = field(default_factory=dict)   # host -> sessions opened
    refused: list[str] = field(default_factory=list)            # host: recipient refused (not ours)


class _HelloTap(asyncio.BufferedProtocol):
    """Sits between the transport and aiosmtpd's TLS protocol and keeps a copy of the first bytes."""

    def __init__(self, inner: sslproto.SSLProtocol, sink: bytearray) -> None:
        self.inner, self.sink = inner, sink
        self._buffer: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def get_buffer(self, sizehint: int) -> Any:
        self._buffer = self.inner.get_buffer(sizehint)
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        if len(self.sink) < HELLO_LIMIT:
            self.sink += bytes(memoryview(self._buffer)[:nbytes])
        self.inner.buffer_updated(nbytes)

    def eof_received(self) -> None:
        self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class LabSMTP(SMTP):
    """aiosmtpd's SMTP with the ClientHello tap; STARTTLS is aiosmtpd's own, re-wired through the tap
    (``smtp_STARTTLS`` builds the TLS layer inline, so it is overridden rather than wrapped)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hello_bytes = bytearray()

    async def smtp_STARTTLS(self, arg: str) -> None:
        posture = getattr(self.event_handler, "posture", None)
        if arg or not self.tls_context or posture is Posture.STARTTLS_454:
            await self.push("501 Syntax: STARTTLS" if arg else "454 4.7.0 TLS not available")
            return
        await self.push("220 Ready to start TLS")
        if posture is Posture.HANDSHAKE_FAILS:
            await self._fail_handshake()
        waiter = self.loop.create_future()
        self._tls_protocol = sslproto.SSLProtocol(self.loop, self, self.tls_context, waiter, server_side=True)
        self._original_transport = self.transport
        assert self._original_transport is not None
        tap = _HelloTap(self._tls_protocol, self.hello_bytes)
        self._original_transport.set_protocol(tap)
        self.transport = self._tls_protocol._app_transport
        tap.connection_made(self._original_transport)
        try:
            await waiter
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise TLSSetupException() from error

    async def _fail_handshake(self) -> None:
        """Take the ClientHello, answer it with a fatal handshake_failure alert and end the session the way
        aiosmtpd ends one whose handshake failed. The hello is read first: closing with it unread would reset
        the connection before the sender reads the alert."""
        try:
            self.hello_bytes += await asyncio.wait_for(self._reader.read(HELLO_LIMIT), GREETING_TIMEOUT)
        except TimeoutError:
            pass
        assert isinstance(self.transport, asyncio.WriteTransport)
        self.transport.write(HANDSHAKE_FAILURE_ALERT)
        raise TLSSetupException("the lab MX fails every TLS handshake (its posture)")


class _Recorder:
    def __init__(self, scenario: str, host: str, domain: str, posture: Posture, log: MxLog) -> None:
        self.scenario, self.host, self.domain, self.posture, self.log = scenario, host, domain, posture, log
        self._deferred_once = False

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address.rpartition("@")[2].lower().rstrip(".") != self.domain:
            self.log.refused.append(f"{self.host}: {address}")
            return "550 5.7.1 this lab host accepts mail for its own test domain only"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.posture is Posture.TEMPFAIL_FIRST and not self._deferred_once:
            self._deferred_once = True
            return "451 4.3.0 try again later (the lab defers the first delivery)"
        assert isinstance(server, LabSMTP)
        extra = session.ssl or {}
        ssl_object = extra.get("ssl_object") if isinstance(extra, dict) else None
        hello, error = _hello(bytes(server.hello_bytes)) if ssl_object is not None else (None, None)
        cipher = ssl_object.cipher() if ssl_object is not None else None
        self.log.arrivals.append(Arrival(
            self.scenario, self.host, ssl_object.version() if ssl_object is not None else None,
            cipher[0] if cipher else None, hello, error, str(envelope.mail_from or ""),
            tuple(envelope.rcpt_tos), envelope.original_content or b""))
        return "250 2.0.0 accepted by the mailconform lab"


    async def handle_exception(self, error: Exception) -> str:
        # a sender that aborts the TLS handshake (DANE or MTA-STS said no) is behaving, not failing the lab
        return "421 4.3.0 the mailconform lab closes this session"


def _hello(data: bytes) -> tuple[OfferedHello | None, str | None]:
    try:
        return OfferedHello.parse(data), None
    except DecodeError as exc:
        return None, str(exc)


async def start_mx(address: str, port: int, *, scenario: str, host: str, domain: str, posture: Posture,
                   context: ssl.SSLContext | None, log: MxLog) -> asyncio.Server:
    """One lab MX host on (address, port); ``context`` is None for a host without STARTTLS."""
    loop = asyncio.get_running_loop()
    log.connections.setdefault(host, 0)
    if posture is Posture.DOWN:
        async def down(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            log.connections[host] += 1
            writer.write(b"421 4.3.2 " + host.encode() + b" is down (mailconform lab)\r\n")
            await writer.drain()
            writer.close()
        return await asyncio.start_server(down, address, port)
    recorder = _Recorder(scenario, host, domain, posture, log)

    def factory() -> LabSMTP:
        log.connections[host] += 1
        return LabSMTP(recorder, hostname=host, tls_context=context, require_starttls=False,
                       timeout=GREETING_TIMEOUT, ident="mailconform lab")
    # loop.create_server directly: aiosmtpd's Controller cannot bind port 0 and connects to itself once
    return await loop.create_server(factory, address, port)
