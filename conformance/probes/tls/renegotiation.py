"""Client-initiated renegotiation (CVE-2011-1473): does the server run a new full handshake whenever the
client asks, on one connection? Each costs the server its private-key operation, so a few clients can keep
its CPU busy; refusing them costs nothing (RFC 5746 5: "many servers ... simply refuse to renegotiate").

No stdlib API renegotiates, so pyOpenSSL (PyCA) drives OpenSSL's SSL_renegotiate, through memory BIOs: the
socket stays ours, with its timeout on every read and write (pyOpenSSL on a socket with a timeout raises
WantReadError at once instead of waiting). TLS 1.2 only: TLS 1.3 has no renegotiation (RFC 8446 4.1.2).
Like ``early_data``, it runs in a worker thread on a duplicate of the connected socket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from conformance.probes.starttls.opening import open_to_tls_point
from conformance.probes.tls.wire import AlertDescription, describe
from conformance.probes.wire.config import ProbeConfig, scrubbed
from conformance.probes.wire.outcome import (
    Attempt,
    LocalError,
    ProbeTimeout,
    ProtocolViolation,
    Transcript,
    attempt,
    mapped_errors,
)
from conformance.probes.wire.streams import Deadline, blocking_twin, close
from conformance.target import Endpoint

RENEGOTIATIONS = 3  # asked for in a row: one accepted is the finding, more show it is not a one-off
MAX_RECORD = 1 << 15
_LEGACY_SERVER_CONNECT = 0x4  # reach a server without RFC 5746 too: TLS-RENEG-01 judges that, not this probe
_ALLOW_UNSAFE_LEGACY_RENEGOTIATION = 0x40000
_ALERT_LEVELS = {1: "warning", 2: "fatal"}
T = TypeVar("T")


@dataclass(frozen=True)
class Renegotiation:
    """``accepted``: client-initiated renegotiations the server completed before it refused one (``refusal``,
    in words) or before the probe stopped asking (``refusal`` None)."""

    accepted: int
    refusal: str | None

    @property
    def handshakes(self) -> int:
        return self.accepted + 1

    def __str__(self) -> str:
        if not self.accepted:
            return f"refused a client-initiated renegotiation: {self.refusal}"
        then = f", then refused: {self.refusal}" if self.refusal else ""
        return (f"accepted a client-initiated renegotiation ({self.handshakes} handshakes on one "
                f"connection{then})")


class _Closed(Exception):
    """The server closed the connection while we waited for its answer."""


async def probe_renegotiation(endpoint: Endpoint, cfg: ProbeConfig) -> Attempt[Renegotiation]:
    """One connection: STARTTLS if the service needs it, a TLS 1.2 handshake, then renegotiations.
    The first handshake refused is a ProtocolViolation (the check asks the scan whether only TLS 1.3 is
    spoken); silence a ProbeTimeout."""
    transcript = cfg.transcript(endpoint)

    async def run() -> Renegotiation:
        deadline = Deadline(cfg.session_budget)
        reader, writer = await open_to_tls_point(endpoint, timeout=cfg.timeout, ehlo_name=cfg.ehlo_name,
                                                 transcript=transcript, limiter=cfg.limiter, deadline=deadline)
        try:
            return await _in_thread(reader, writer, endpoint, deadline.clamp(cfg.timeout), transcript)
        finally:
            await close(writer)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


async def _in_thread(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: Endpoint,
                     timeout: float, transcript: Transcript) -> Renegotiation:
    sock = blocking_twin(reader, writer, timeout)
    if sock is None:
        raise ProtocolViolation("the server sent plaintext where TLS was due")
    try:
        with mapped_errors("renegotiating TLS 1.2"):
            result = await asyncio.to_thread(_renegotiate, sock, endpoint.host, timeout)
    finally:
        sock.close()
    transcript.note(f"renegotiation: the server {result}")
    return result


def _renegotiate(sock: socket.socket, host: str, timeout: float) -> Renegotiation:
    from OpenSSL import SSL

    alerts: list[str] = []
    connection = SSL.Connection(_context(alerts), None)
    connection.set_connect_state()
    if not _is_address(host):
        connection.set_tlsext_host_name(host.encode("idna"))
    wire = _Wire(connection, sock, timeout)
    try:
        wire.drive(connection.do_handshake)
    except (SSL.Error, _Closed) as exc:
        raise ProtocolViolation(f"the TLS 1.2 handshake before any renegotiation failed: "
                                f"{_refusal(exc, alerts)}") from exc
    accepted = 0
    for _ in range(RENEGOTIATIONS):
        if not connection.renegotiate():
            raise LocalError("our TLS client could not start a renegotiation")
        del alerts[:]  # only this renegotiation's answer counts
        try:
            wire.drive(lambda: _read_on(connection), done=lambda: not connection.renegotiate_pending())
        except _Closed:
            return Renegotiation(accepted, f"the server sent {alerts[0]}" if alerts
                                 else "the server closed the connection")
        except SSL.Error as exc:
            if not alerts:  # our client stopped on what the server sent: no refusal, no acceptance either
                raise ProtocolViolation(f"renegotiation {accepted + 1} ended without an answer from the server: "
                                        f"our TLS client gave up ({_openssl_reason(exc)})") from exc
            return Renegotiation(accepted, f"the server sent {alerts[0]}")
        accepted += 1
    return Renegotiation(accepted, None)


def _context(alerts: list[str]) -> Any:
    from OpenSSL import SSL

    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(b"ALL:@SECLEVEL=0")  # the suites are judged elsewhere: any will do here
    context.set_options(_LEGACY_SERVER_CONNECT | _ALLOW_UNSAFE_LEGACY_RENEGOTIATION)

    def note_alert(_: Any, where: int, value: int) -> None:
        if where & SSL.SSL_CB_READ_ALERT == SSL.SSL_CB_READ_ALERT:  # SSL_CB_ALERT is in the write flag too
            level = _ALERT_LEVELS.get(value >> 8, "unknown-level")
            name = describe(AlertDescription, value & 0xFF).lower().replace("_", " ")
            alerts.append(f"the {level} alert '{name}'")

    context.set_info_callback(note_alert)
    return context


def _read_on(connection: Any) -> None:
    """SSL_read carries the new handshake along; SSL_do_handshake would not: only SSL_read takes the
    application data (an implicit-TLS greeting) that may arrive before the server's answer. It is dropped."""
    while True:
        connection.recv(MAX_RECORD)


def _refusal(exc: BaseException, alerts: list[str]) -> str:
    if alerts:
        return f"the server sent {alerts[-1]}"
    if isinstance(exc, _Closed):
        return "the server closed the connection"
    return f"our TLS client gave up: {_openssl_reason(exc)}"


def _openssl_reason(exc: BaseException) -> str:
    errors = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    reasons = [e[-1] for e in errors if isinstance(e, tuple) and e]
    return "; ".join(reasons) or "the connection ended without a TLS answer"


class _Wire:
    """Moves bytes between pyOpenSSL's memory BIOs and the socket; every read and write has the timeout."""

    def __init__(self, connection: Any, sock: socket.socket, timeout: float) -> None:
        self._connection, self._sock, self._timeout = connection, sock, timeout

    def drive(self, step: Callable[[], T], done: Callable[[], bool] = lambda: False) -> T | None:
        """Run ``step`` until it returns, or until ``done()`` once every byte received so far is consumed."""
        from OpenSSL import SSL

        while True:
            try:
                result = step()
            except SSL.WantReadError:
                self._flush()
                if done():
                    return None
                self._receive()
                continue
            except SSL.ZeroReturnError as exc:
                raise _Closed() from exc
            self._flush()
            return result

    def _flush(self) -> None:
        from OpenSSL import SSL

        while True:
            try:
                data = self._connection.bio_read(MAX_RECORD)
            except SSL.WantReadError:
                return
            self._sock.sendall(data)

    def _receive(self) -> None:
        try:
            data = self._sock.recv(MAX_RECORD)
        except TimeoutError as exc:
            raise ProbeTimeout(f"the server did not answer a TLS 1.2 handshake message within "
                               f"{self._timeout:g} s") from exc
        except ConnectionResetError as exc:
            raise _Closed() from exc
        if not data:
            self._connection.bio_shutdown()
            raise _Closed()
        self._connection.bio_write(data)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
