"""What every session of one node shares: its name, the flaws, the mail store, the auth engine, outages."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Protocol

from conformance.reference.flaws import Flaws
from conformance.reference.lockout import AuthEngine
from conformance.reference.outage import Component, Outages
from conformance.reference.store import MailStore

DOMAIN = "example.test"


@dataclass(frozen=True)
class Settings:
    """Tunables; tests shorten the slow ones."""

    stall_delay: float = 6.0           # slow_data_reply: DATA reply delay while stalled (beyond a 5 s budget)
    slow_recovery_delay: float = 11.0  # slow_recovery: a node stays down this long after `up` (RTO is 10 s)
    timing_oracle_delay: float = 0.15  # auth_timing_oracle: extra time for a known user's wrong password
    unknown_rcpt_limit: int = 20       # unknown recipients answered before the session is cut with 421
    handshake_timeout: float = 10.0
    idle_timeout: float = 60.0


class Outbound(Protocol):
    def submit(self, mail_from: str, recipients: list[str], message: bytes) -> None: ...


class Closable(Protocol):
    def shutdown(self, reset: bool) -> None: ...


class ErrorLog:
    """Errors raised inside the servers (our bugs, not client misbehaviour), re-raised by check_errors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []

    def add(self, error: BaseException) -> None:
        with self._lock:
            self._errors.append(error)

    def take(self) -> list[BaseException]:
        with self._lock:
            errors, self._errors = self._errors, []
            return errors


@dataclass
class NodeRuntime:
    node: str
    host: str
    flaws: Flaws
    store: MailStore
    auth: AuthEngine
    outages: Outages
    errors: ErrorLog
    settings: Settings
    preauth_user: str                  # imap_preauth: who an imaps PREAUTH greeting logs in
    sessions: set[Closable] = field(default_factory=set)
    held: list[tuple[list[str], bytes]] = field(default_factory=list)  # duplicate_after_recovery
    sender: Outbound | None = None     # delivers mail for non-local domains (the outbound family)

    def down(self, component: Component) -> bool:
        return self.outages.is_down(self.node, component)


def reset_transport(transport: asyncio.BaseTransport | None) -> None:
    """Abort with SO_LINGER 0: the peer sees a TCP RST, not an orderly close (reset_on_shutdown)."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already closed: nothing left to reset
    abort = getattr(transport, "abort", None)
    if abort is not None:
        abort()
    else:
        transport.close()
