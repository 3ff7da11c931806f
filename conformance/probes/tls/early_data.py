"""TLS 1.3 session resumption and 0-RTT as the server announces them: its NewSessionTicket messages, and in
them the early_data extension with the max_early_data_size it will accept (RFC 8446 4.6.1, 4.2.10).

Early data is replayable (RFC 8446 8), and no profile defines it for SMTP, IMAP or POP3 (RFC 8446 E.5).
Tickets come after the handshake, so tlslite-ng completes one (Python's ssl shows no ticket extensions) and
reads on until the first ticket or the first application data: the greeting on implicit TLS, the answer
to a NOOP after STARTTLS (a server that issues no ticket answers it without one).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from conformance.probes.tls.tlslite_stack import load_tlslite
from conformance.probes.tls.wire import KEY_SHARE_GROUPS, AlertDescription, ExtensionType, describe
from conformance.probes.wire.outcome import ProbeTimeout, ProtocolViolation, alert_words
from conformance.probes.wire.streams import blocking_twin
from conformance.target import Endpoint

MAX_RECORDS = 8  # records read after the handshake before giving up on a ticket or data
_NOOP = {"imap": b"a NOOP\r\n", "smtp": b"NOOP\r\n", "pop3": b"NOOP\r\n"}
# Pinned: tlslite-ng's defaults add X25519MLKEM768 (and its share) only where kyber-py is installed, so the
# hello would differ between installs. The shares of our own hellos first, then the other classic curves.
KEY_SHARES = [g.name.lower() for g in KEY_SHARE_GROUPS]
GROUPS = [*KEY_SHARES, "x448", "secp384r1", "secp521r1"]


@dataclass(frozen=True)
class SessionTickets:
    """What a TLS 1.3 server issued after one handshake (``tickets`` counts those seen before its first data)."""

    tickets: int
    lifetime_s: int = 0
    max_early_data: int = 0  # the largest max_early_data_size announced; 0: no 0-RTT

    def __str__(self) -> str:
        if not self.tickets:
            return "no session ticket before its first application data (no resumption, so no 0-RTT)"
        early = (f"0-RTT announced: up to {self.max_early_data} bytes of early data" if self.max_early_data
                 else "no 0-RTT (no early_data extension)")
        return f"a session ticket valid {self.lifetime_s} s (resumption); {early}"


async def session_tickets(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: Endpoint,
                          timeout: float) -> SessionTickets:
    """One TLS 1.3 handshake at the TLS point of ``reader``/``writer``; raises ProtocolViolation with the
    server's reason if it fails, ProbeTimeout if the server goes quiet."""
    sock = blocking_twin(reader, writer, timeout)  # tlslite-ng speaks blocking sockets only
    if sock is None:
        raise ProtocolViolation("the server sent plaintext where TLS was due")
    command = b"" if endpoint.service.implicit_tls else _NOOP[endpoint.service.protocol]
    load_tlslite()  # here, in the event loop's thread, not in the probe thread
    try:
        return await asyncio.to_thread(_tickets, sock, endpoint.host, command, timeout)
    finally:
        sock.close()


def _tickets(sock: socket.socket, host: str, command: bytes, timeout: float) -> SessionTickets:
    from tlslite.errors import BaseTLSException, TLSAbruptCloseError, TLSLocalAlert, TLSRemoteAlert
    from tlslite.handshakesettings import HandshakeSettings
    from tlslite.tlsconnection import TLSConnection

    settings = HandshakeSettings()
    settings.minVersion = settings.maxVersion = (3, 4)
    settings.eccCurves, settings.keyShares = list(GROUPS), list(KEY_SHARES)
    connection = TLSConnection(sock)
    try:
        connection.handshakeClientCert(settings=settings, serverName=host)
        if command:
            connection.write(command)
        for _ in range(MAX_RECORDS):
            if connection.read(max=4096, min=0) or connection.tickets:
                break
            if connection.closed:
                raise ProtocolViolation("the server closed the connection after the TLS 1.3 handshake, without a "
                                        "session ticket or a greeting")
    except TLSRemoteAlert as exc:
        raise ProtocolViolation(alert_words(describe(AlertDescription, exc.description))) from exc
    except TLSLocalAlert as exc:
        raise ProtocolViolation(f"our TLS 1.3 client gave up: {exc.message or exc.description}") from exc
    except TLSAbruptCloseError as exc:
        raise ProtocolViolation("the server closed the connection during TLS 1.3") from exc
    except BaseTLSException as exc:  # tlslite-ng's own refusals of what the server sent (an invalid key share)
        refused = str(exc) or "a message it could not parse"
        raise ProtocolViolation(f"our TLS 1.3 client refused the server's handshake: {refused}") from exc
    except TimeoutError as exc:
        raise ProbeTimeout(f"no session ticket and no data within {timeout:g} s after the handshake") from exc
    early = [int.from_bytes(bytes(e.extData)[:4], "big") for t in connection.tickets for e in t.extensions
             if e.extType == ExtensionType.EARLY_DATA]
    return SessionTickets(len(connection.tickets), max((t.ticket_lifetime for t in connection.tickets), default=0),
                          max(early, default=0))
