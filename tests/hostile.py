"""Small scripted servers on 127.0.0.1 port 0 for probe tests: well-behaved and hostile.

Each behaviour is an ``async def (reader, writer)`` coroutine; ``serving`` runs one for every
connection and cancels stragglers on exit, so a test never leaves a task or socket behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from conformance.target import Endpoint, Service

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
T = TypeVar("T")

TEST_BOUND = 30.0  # no single test may run longer than this, whatever the probe does


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run with a hard outer bound, so a bug in a probe fails the test instead of hanging it."""
    async def bounded() -> T:
        return await asyncio.wait_for(coro, TEST_BOUND)
    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def serving(behaviour: Behaviour, service: Service = Service.SUBMISSION) -> AsyncIterator[Endpoint]:
    tasks: set[asyncio.Task[None]] = set()
    errors: list[BaseException] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await behaviour(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception as exc:  # noqa: BLE001 - collected and re-raised in the test, like pytest-httpserver
            errors.append(exc)
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Endpoint(service, "node1", "localhost", port, "127.0.0.1")
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
    if errors:
        raise errors[0]


async def read_cmd(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), 10)


CLOSE = b""


def script(*steps: bytes | None) -> Behaviour:
    """A plain dialogue: bytes are sent, None waits for one client line, CLOSE hangs up."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for step in steps:
            if step is CLOSE:
                return
            if step is None:
                if not await read_cmd(reader):
                    return
            else:
                writer.write(step)
                await writer.drain()
        await reader.read(1)  # keep the connection until the client closes
    return behaviour


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)


def trickle(data: bytes, interval: float = 0.2) -> Behaviour:
    """A tarpit: one byte per interval, forever (cycling data)."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            for byte in data:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(interval)
    return behaviour


async def endless_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = b"220" + b"x" * 4093
    for _ in range(1000):  # 4 MB at most: far beyond any bound the client may have
        writer.write(chunk)
        await writer.drain()


async def hidden_auth_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Submission that advertises no AUTH and refuses AUTH PLAIN for TLS, yet runs AUTH LOGIN in clear."""
    writer.write(b"220 hidden.test\r\n")
    while line := (await read_cmd(reader)).strip().upper():
        if line.startswith(b"EHLO"):
            writer.write(b"250-hidden.test\r\n250 8BITMIME\r\n")
        elif line == b"AUTH LOGIN":
            writer.write(b"334 VXNlcm5hbWU6\r\n")
            await writer.drain()
            await read_cmd(reader)
            writer.write(b"334 UGFzc3dvcmQ6\r\n")
            await writer.drain()
            await read_cmd(reader)
            writer.write(b"535 5.7.8 Authentication credentials invalid\r\n")
        elif line.startswith(b"AUTH"):
            writer.write(b"530 5.7.0 Must issue a STARTTLS command first\r\n")
        elif line == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            return
        else:
            writer.write(b"502 5.5.1 not here\r\n")
        await writer.drain()
