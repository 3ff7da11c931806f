"""A fleet on loopback: TCP proxies that put each reference gateway on a loopback address of its own
(127.0.1.x), count the connections each host receives and the most open at once, and can add latency.

Used by tests/test_fleet.py (connection totals and the per-host ceiling, serial vs pytest-xdist) and
benchmarks/fleet.py (the same fleet behind 50 ms of round-trip time).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self


class Served(Protocol):
    """What ``proxied_target`` needs of a gateway: a ``Gateway``, or the benchmark's handle on one that runs
    in a process of its own."""

    ports: dict[tuple[str, str], int]

    def write_target(self, path: Path) -> Path: ...


class FleetProxy:
    """Listeners on (host, any port) forwarding to 127.0.0.1:upstream, in a thread with its own loop."""

    def __init__(self, rtt: float = 0.0) -> None:
        self.delay = rtt / 2
        self.opened: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.clients: Counter[tuple[str, str]] = Counter()  # (host, the client's address) -> connections
        self.most_hosts = 0  # the most hosts with a connection open at one moment (targets probed at once)
        self.together: set[frozenset[str]] = set()  # pairs of hosts that had connections open at one moment
        self._active: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._servers: list[asyncio.AbstractServer] = []
        self._links: set[_Link] = set()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def forward(self, host: str, upstream_port: int) -> int:
        """Listen on ``host`` (a free port) and forward to 127.0.0.1:``upstream_port``; returns the port."""
        async def listen() -> int:
            server = await self._loop.create_server(lambda: self._accepted(host, upstream_port), host, 0)
            self._servers.append(server)
            return int(server.sockets[0].getsockname()[1])
        return asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)

    def reset(self) -> None:
        async def clear() -> None:
            self.opened.clear()
            self.peak.clear()
            self.clients.clear()
            self.most_hosts = 0
            self.together.clear()
        asyncio.run_coroutine_threadsafe(clear(), self._loop).result(10)

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for link in list(self._links):
            link.abort()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _accepted(self, host: str, upstream_port: int) -> _Link:
        link = _Link(self, host, upstream_port)
        self._links.add(link)
        return link

    def _count_open(self, host: str, client: str) -> None:
        self.opened[host] += 1
        self.clients[host, client] += 1
        self._active[host] += 1
        self.peak[host] = max(self.peak[host], self._active[host])
        self.most_hosts = max(self.most_hosts, len(self._active))
        self.together.update(frozenset((host, other)) for other in self._active if other != host)

    def _count_closed(self, host: str) -> None:
        # only hosts with a connection open stay: the two lines above walk them on every connection
        self._active[host] -= 1
        if not self._active[host]:
            del self._active[host]


class _Delayed:
    """One direction of a link: chunks written to ``sink`` ``delay`` seconds after they arrived, in order.

    Protocol callbacks and one timer per burst rather than stream tasks and a queue: the proxy shares the
    benchmark's two cores with the scan it measures, so its own cost must stay small."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self._loop = loop
        self._delay = delay
        self._due: deque[tuple[float, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.sink: asyncio.Transport | None = None

    def push(self, data: bytes) -> None:
        """Queue ``data``; b"" closes the sink once everything before it is written."""
        self._due.append((self._loop.time() + self._delay, data))
        self._arm()

    def attach(self, sink: asyncio.Transport) -> None:
        self.sink = sink
        self._arm()

    def _arm(self) -> None:
        if self._timer is None and self._due and self.sink is not None:
            self._timer = self._loop.call_at(self._due[0][0], self._flush)

    def _flush(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._due and self._due[0][0] <= now and self.sink is not None:
            data = self._due.popleft()[1]
            if data:
                self.sink.write(data)
            else:
                self.sink.close()
        self._arm()


class _Link(asyncio.Protocol):
    """The client's side of one proxied connection; ``_Upstream`` is the gateway's side."""

    def __init__(self, proxy: FleetProxy, host: str, upstream_port: int) -> None:
        self._proxy, self._host, self._upstream_port = proxy, host, upstream_port
        loop = proxy._loop
        self.to_upstream = _Delayed(loop, proxy.delay)
        self.to_client = _Delayed(loop, proxy.delay)
        self._state = "new"  # new -> counted -> closed (or new -> closed when the client left at once)
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.to_client.attach(transport)
        loop = self._proxy._loop
        # The client closed its previous connection (FIN sent) before it opened this one; the loop may
        # still hold that EOF in the same batch as this accept: let it be read first, so no close is
        # counted late (a few loop turns, no wall-clock wait).
        _after_turns(loop, 4, self._count)
        loop.create_task(self._connect_upstream())

    def _count(self) -> None:
        if self._state == "new" and self._transport is not None:
            self._state = "counted"
            self._proxy._count_open(self._host, self._transport.get_extra_info("peername")[0])

    async def _connect_upstream(self) -> None:
        loop = self._proxy._loop
        try:
            await asyncio.wait_for(loop.create_connection(lambda: _Upstream(self), "127.0.0.1", self._upstream_port), 10)
        except (OSError, TimeoutError):
            self.abort()

    def data_received(self, data: bytes) -> None:
        self.to_upstream.push(data)

    def eof_received(self) -> bool:
        self._client_left()
        self.to_upstream.push(b"")
        return True  # half-open until the gateway's answer, delayed, has gone out

    def connection_lost(self, exc: Exception | None) -> None:
        self._client_left()
        self.to_upstream.push(b"")
        self._proxy._links.discard(self)

    def _client_left(self) -> None:
        """A connection counts as open from accept until the client's end of it closes (the moment the
        client gives its connection slot back), not until the upstream side has finished too."""
        if self._state == "new":
            self._count()
        if self._state == "counted":
            self._proxy._count_closed(self._host)
        self._state = "closed"

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _after_turns(loop: asyncio.AbstractEventLoop, turns: int, callback: Callable[[], None]) -> None:
    """``callback`` once the loop has gone round ``turns`` times (each turn runs what was ready before it)."""
    if turns <= 1:
        loop.call_soon(callback)
    else:
        loop.call_soon(_after_turns, loop, turns - 1, callback)


class _Upstream(asyncio.Protocol):
    def __init__(self, link: _Link) -> None:
        self._link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._link.to_upstream.attach(transport)

    def data_received(self, data: bytes) -> None:
        self._link.to_client.push(data)

    def eof_received(self) -> bool:
        self._link.to_client.push(b"")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._link.to_client.push(b"")


def proxied_target(gateway: Served, proxy: FleetProxy, host: str, path: Path, name: str,
                   max_per_host: int = 4) -> Path:
    """The gateway's target file with every node on ``host`` behind the proxy, named ``name``."""
    text = gateway.write_target(path).read_text(encoding="utf-8")
    # every service port the gateway listens on, through the proxy on the fleet's own address
    ports = {port: proxy.forward(host, port) for port in gateway.ports.values()}
    text = re.sub(r"(\w+) = (\d+)([,} ])", lambda m: f"{m[1]} = {ports.get(int(m[2]), int(m[2]))}{m[3]}", text)
    text = text.replace('address = "127.0.0.1"', f'address = "{host}"')
    text = text.replace('name = "reference"', f'name = "{name}"', 1)
    text = re.sub(r"max_connections_per_host = \d+", f"max_connections_per_host = {max_per_host}", text)
    path.write_text(text, encoding="utf-8")
    return path
