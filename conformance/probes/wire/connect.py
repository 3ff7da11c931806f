"""TCP connections to an endpoint: timed, error-mapped, and polite (a per-host connection cap).

The cap matters against real MX hosts, which rate-limit or blacklist scanners that open many
connections at once. A slot is held from connect until the connection is lost, whoever closes it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from conformance.probes.wire.outcome import LocalError, mapped_errors
from conformance.probes.wire.streams import MAX_LINE
from conformance.target import Endpoint, Target


class HostLimiter:
    """At most ``max_per_host`` concurrent connections per host, and a count of connections opened.

    Semaphores are created lazily inside the running loop (and afresh if a later ``asyncio.run``
    uses a new loop), because an asyncio primitive is bound to the loop that first used it.
    """

    def __init__(self, max_per_host: int, slot_timeout: float = 300.0) -> None:
        if max_per_host < 1:
            raise ValueError(f"max_per_host must be >= 1, got {max_per_host}")
        self.max_per_host = max_per_host
        self.slot_timeout = slot_timeout
        self.opened: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self._active: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    @classmethod
    def from_target(cls, target: Target) -> HostLimiter:
        return cls(target.max_connections_per_host)

    @property
    def total_opened(self) -> int:
        return sum(self.opened.values())

    def _semaphore(self, host: str) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._semaphores, self._active = loop, {}, Counter()
        if host not in self._semaphores:
            self._semaphores[host] = asyncio.Semaphore(self.max_per_host)
        return self._semaphores[host]

    async def acquire(self, host: str) -> Callable[[], None]:
        """Wait for a slot; return the (idempotent) function that gives it back."""
        semaphore = self._semaphore(host)
        try:
            await asyncio.wait_for(semaphore.acquire(), self.slot_timeout)
        except TimeoutError:
            raise LocalError(f"no free connection slot for {host} within {self.slot_timeout:g} s "
                             f"(max_connections_per_host={self.max_per_host}); a connection was leaked?") from None
        self.opened[host] += 1
        self._active[host] += 1
        self.peak[host] = max(self.peak[host], self._active[host])
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._active[host] -= 1
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
    ProbeTimeout (connect took longer than ``timeout``) or LocalError (no limiter slot)."""
    host = endpoint.connect_host
    release: Callable[[], None] = lambda: None
    if limiter is not None:
        release = await limiter.acquire(host)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE, loop=loop)
    try:
        with mapped_errors(f"connecting to {endpoint}"):
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _SlotProtocol(reader, release), host, endpoint.port), timeout)
    except BaseException:
        release()
        raise
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
