"""TCP connections to an endpoint: timed, error-mapped, and polite (a per-host connection cap).

The cap matters against real MX hosts, which rate-limit or blacklist scanners that open many
connections at once. A slot is held from connect until the connection is lost, whoever closes it.

A dead endpoint (refused, silent, greylisting) costs a run one timeout, not one per check: the
limiter's ``EndpointHealth`` keeps what the first contact found, and ``open_tcp`` answers every later
connection to that endpoint with the same error at once.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from conformance.probes.wire.outcome import LocalError, ProbeError, mapped_errors
from conformance.probes.wire.streams import MAX_LINE, ContactReader
from conformance.target import Endpoint, Target


class EndpointHealth:
    """Per run (one per ProbeConfig, so one per pytest-xdist worker): endpoints found unreachable,
    silent or greylisting on first contact, with the error that showed it."""

    def __init__(self) -> None:
        self._down: dict[tuple[str, int], ProbeError] = {}

    def learn(self, endpoint: Endpoint, error: ProbeError) -> None:
        self._down.setdefault((endpoint.connect_host, endpoint.port), error)

    def known_down(self, endpoint: Endpoint) -> ProbeError | None:
        """A fresh error of the same kind and words as the first one, or None."""
        first = self._down.get((endpoint.connect_host, endpoint.port))
        return type(first)(str(first)) if first is not None else None

    def down(self) -> dict[str, str]:
        """What the run learned: ``host:port`` -> the reason."""
        return {f"{host}:{port}": str(error) for (host, port), error in self._down.items()}


@dataclass
class _LoopSlots:
    """The per-event-loop part of a limiter, held by reference so ``HostLimiter.unguarded`` shares it."""

    loop: asyncio.AbstractEventLoop | None = None
    semaphores: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    active: Counter[str] = field(default_factory=Counter)


class HostLimiter:
    """At most ``max_per_host`` concurrent connections per host, and a count of connections opened.

    Semaphores are created lazily inside the running loop (and afresh if a later ``asyncio.run``
    uses a new loop), because an asyncio primitive is bound to the loop that first used it.
    """

    def __init__(self, max_per_host: int, slot_timeout: float = 300.0, health: EndpointHealth | None = None) -> None:
        if max_per_host < 1:
            raise ValueError(f"max_per_host must be >= 1, got {max_per_host}")
        self.max_per_host = max_per_host
        self.slot_timeout = slot_timeout
        self.health = health
        self.opened: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self._slots = _LoopSlots()

    @classmethod
    def from_target(cls, target: Target, health: EndpointHealth | None = None) -> HostLimiter:
        return cls(target.max_connections_per_host, health=health)

    def unguarded(self) -> HostLimiter:
        """The same connection budget without the health record, for probes that must see an endpoint
        go down and come back (failover): they connect afresh every time."""
        clone = copy.copy(self)
        clone.health = None
        return clone

    @property
    def total_opened(self) -> int:
        return sum(self.opened.values())

    def _semaphore(self, host: str) -> asyncio.Semaphore:
        slots = self._slots
        if asyncio.get_running_loop() is not slots.loop:
            slots.loop, slots.semaphores, slots.active = asyncio.get_running_loop(), {}, Counter()
        if host not in slots.semaphores:
            slots.semaphores[host] = asyncio.Semaphore(self.max_per_host)
        return slots.semaphores[host]

    async def acquire(self, host: str) -> Callable[[], None]:
        """Wait for a slot; return the (idempotent) function that gives it back."""
        semaphore = self._semaphore(host)
        try:
            await asyncio.wait_for(semaphore.acquire(), self.slot_timeout)
        except TimeoutError:
            raise LocalError(f"no free connection slot for {host} within {self.slot_timeout:g} s "
                             f"(max_connections_per_host={self.max_per_host}); a connection was leaked?") from None
        active = self._slots.active
        self.opened[host] += 1
        active[host] += 1
        self.peak[host] = max(self.peak[host], active[host])
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                active[host] -= 1
                semaphore.release()

        return release


class _SlotProtocol(asyncio.StreamReaderProtocol):
    """Gives the limiter slot back when the connection is lost, however that happens
    (our close, the server's close, a reset, or after a TLS upgrade: SSLProtocol forwards it)."""

    def __init__(self, reader: asyncio.StreamReader, release: Callable[[], None]) -> None:
        super().__init__(reader)
        self._release = release

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)


async def open_tcp(endpoint: Endpoint, timeout: float, limiter: HostLimiter | None = None,
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the endpoint. Raises Unreachable (refused, DNS, reset),
    ProbeTimeout (connect took longer than ``timeout``) or LocalError (no limiter slot); with the
    limiter's health record, at once the error an earlier first contact with this endpoint met."""
    health = limiter.health if limiter is not None else None
    _raise_if_known_down(endpoint, health)
    host = endpoint.connect_host
    release: Callable[[], None] = lambda: None
    if limiter is not None:
        release = await limiter.acquire(host)
    loop = asyncio.get_running_loop()
    reader = ContactReader(limit=MAX_LINE, loop=loop)
    try:
        _raise_if_known_down(endpoint, health)  # learned while this one waited for a slot
        with mapped_errors(f"connecting to {endpoint}"):
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _SlotProtocol(reader, release), host, endpoint.port), timeout)
    except ProbeError as exc:
        release()
        if health is not None and not isinstance(exc, LocalError):
            health.learn(endpoint, exc)
        raise
    except BaseException:
        release()
        raise
    if health is not None:
        reader.on_first_contact = lambda error: health.learn(endpoint, error)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def _raise_if_known_down(endpoint: Endpoint, health: EndpointHealth | None) -> None:
    known = health.known_down(endpoint) if health is not None else None
    if known is not None:
        raise known
