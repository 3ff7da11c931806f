"""A fleet on loopback: TCP proxies that put each reference gateway on a loopback address of its own
(127.0.1.x), count the connections each host receives and the most open at once, and can add latency.

Used by tests/test_fleet.py (connection totals and the per-host ceiling, serial vs pytest-xdist) and
benchmarks/fleet.py (the same fleet behind 50 ms of round-trip time).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from conformance.reference.gateway import Gateway


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
            server = await asyncio.start_server(lambda r, w: self._handle(host, upstream_port, r, w), host, 0)
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
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, host: str, upstream_port: int, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        """A connection counts as open from accept until the client's end of it closes (the moment the
        client gives its connection slot back), not until the upstream side has finished too."""
        # The client closed its previous connection (FIN sent) before it opened this one; the loop may
        # still hold that EOF in the same batch as this accept: let it be read first, so no close is
        # counted late (a few loop turns, no wall-clock wait).
        for _ in range(3):
            await asyncio.sleep(0)
        self.opened[host] += 1
        self.clients[host, writer.get_extra_info("peername")[0]] += 1
        self._active[host] += 1
        self.peak[host] = max(self.peak[host], self._active[host])
        self.most_hosts = max(self.most_hosts, sum(1 for n in self._active.values() if n))
        self.together.update(frozenset((host, other)) for other, n in self._active.items() if n and other != host)
        client_open = [True]

        def client_closed() -> None:
            if client_open[0]:
                client_open[0] = False
                self._active[host] -= 1

        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", upstream_port), 10)
        except (OSError, TimeoutError):
            writer.close()
            client_closed()
            return
        try:
            await asyncio.gather(self._pipe(reader, up_writer, client_closed), self._pipe(up_reader, writer),
                                 return_exceptions=True)
        finally:
            client_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    on_eof: Callable[[], None] = lambda: None) -> None:
        """Copy one direction, each chunk delayed by half the round trip (order kept)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((time.monotonic() + self.delay, data))
        except OSError:
            pass
        on_eof()
        queue.put_nowait((time.monotonic() + self.delay, b""))
        try:
            await sender
        except OSError:
            pass


def proxied_target(gateway: Gateway, proxy: FleetProxy, host: str, path: Path, name: str,
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
