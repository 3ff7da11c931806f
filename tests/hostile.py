"""Small scripted servers on 127.0.0.1 port 0 for probe tests: well-behaved and hostile.

Each behaviour is an ``async def (reader, writer)`` coroutine; ``serving`` runs one for every
connection and cancels stragglers on exit, so a test never leaves a task or socket behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Self, TypeVar

import dns.flags
import dns.message

from conformance.reference.dns import DnsResponder
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
async def serving(behaviour: Behaviour, service: Service = Service.SUBMISSION, *,
                  tls: ssl.SSLContext | None = None) -> AsyncIterator[Endpoint]:
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

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
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


GREETING = b"220 mx.test ESMTP\r\n"
EHLO_STARTTLS = b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
# What a broken TLS peer answers a ClientHello with (the TLS errors a real server was seen to cause)
TLS_ALERT_HANDSHAKE_FAILURE = b"\x15\x03\x03\x00\x02\x02\x28"
NOT_TLS = b"HTTP/1.0 400 Bad Request\r\n\r\n"
OVERSIZED_RECORD = b"\x16\x03\x03\xff\xff" + b"\x00" * 64


def smtp_server(replies: dict[str, bytes] | None = None, *, times: int = 1, greeting: bytes = GREETING,
                after_starttls: bytes | None = None) -> Behaviour:
    """A line-by-line SMTP server: each command's verb picks its reply (default ``250 ok``), sent ``times``
    times in one write (a server answering every command more than once). ``after_starttls``: the bytes
    sent in answer to the ClientHello after the 220 to STARTTLS, then the connection is closed."""
    table = {"EHLO": EHLO_STARTTLS, "STARTTLS": b"220 2.0.0 Ready to start TLS\r\n", "QUIT": b"221 bye\r\n",
             "DATA": b"354 go ahead\r\n", **(replies or {})}

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        while line := await read_cmd(reader):
            verb = line.split(b" ", 1)[0].strip().decode("ascii", "replace").upper()
            writer.write(table.get(verb, b"250 ok\r\n") * times)
            await writer.drain()
            if verb == "QUIT":
                return
            if verb == "STARTTLS" and after_starttls is not None:
                await reader.read(4096)  # the ClientHello
                writer.write(after_starttls)
                await writer.drain()
                return
    return behaviour


def bare_lf_splitter(after_split: bytes) -> Behaviour:
    """An MTA that ends DATA at <LF>.<LF>: it answers the message, then ``after_split`` (e.g. an SMTP
    synchronization error for the bytes that followed), and resets the connection (SO_LINGER 0) with the
    rest of the body unread, as a real MTA did. Other forms are body; <CRLF>.<CRLF> ends DATA."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(GREETING)
        while line := await read_cmd(reader):
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb != b"DATA":
                writer.write({b"EHLO": b"250 mx.test\r\n", b"QUIT": b"221 bye\r\n"}.get(verb, b"250 ok\r\n"))
                await writer.drain()
                if verb == b"QUIT":
                    return
                continue
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            data = b""
            while b"\n.\n" not in data and b"\r\n.\r\n" not in data:
                data += await asyncio.wait_for(reader.read(4096), 10)
            if b"\n.\n" not in data:
                writer.write(b"250 2.0.0 queued\r\n")
                await writer.drain()
                continue
            writer.write(b"250 2.0.0 queued\r\n" + after_split)
            await writer.drain()
            reset(writer)
            return
    return behaviour


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN, the way a server closing on unread input does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts, never says a word, never hangs up: waits until the client closes."""
    while await reader.read(4096):
        pass


class BackgroundServers:
    """One ``behaviour`` server per service on 127.0.0.1, in a thread of its own, for a suite run in a
    subprocess; ``connections`` counts what each port was asked for (the count is the evidence, not time)."""

    def __init__(self, behaviour: Behaviour, services: tuple[Service, ...] = tuple(Service)) -> None:
        self.behaviour, self.services = behaviour, services
        self.ports: dict[Service, int] = {}
        self.connections: dict[Service, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stop: asyncio.Event | None = None
        self._done: concurrent.futures.Future[None] | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._done = asyncio.run_coroutine_threadsafe(self._serve(ready), self._loop)
        ready.result(timeout=TEST_BOUND)
        return self

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        self._stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            for service in self.services:
                endpoint = await stack.enter_async_context(serving(self._counted(service), service))
                self.ports[service], self.connections[service] = endpoint.port, 0
            ready.set_result(None)
            await self._stop.wait()

    def _counted(self, service: Service) -> Behaviour:
        async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections[service] += 1
            await self.behaviour(reader, writer)
        return behaviour

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None and self._done is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        try:
            self._done.result(timeout=TEST_BOUND)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(TEST_BOUND)
            self._loop.close()
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


def http_answer(status: str, headers: dict[str, str], body: bytes = b"") -> Behaviour:
    """One HTTP/1.1 answer to whatever request comes (an MTA-STS policy host, good or broken)."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Content-Length": str(len(body)), **headers}.items())
        writer.write(f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body)
        await writer.drain()
        await reader.read(1)
    return behaviour


def http_flood(megabytes: int) -> Behaviour:
    """A 200 text/plain answer that claims and streams ``megabytes`` MB: a client must stop reading early."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     f"Content-Length: {megabytes << 20}\r\n\r\n".encode())
        chunk = b"mx: flood.example.test\r\n" * 2600   # about 64 KiB
        for _ in range(megabytes * 16):
            writer.write(chunk)
            await writer.drain()
    return behaviour


class HostileDns(DnsResponder):
    """The reference DNS responder (dnspython's wire format) made to misbehave as broken resolvers do.

    ``mute``: never answers (every query times out); ``truncate_udp``: every UDP answer comes back empty
    with TC set, so a client must ask again over TCP (RFC 7766); ``no_tcp``: nothing listens on TCP."""

    def __init__(self, records: dict[tuple[str, str], list[str]], *, mute: bool = False,
                 truncate_udp: bool = False, no_tcp: bool = False) -> None:
        super().__init__(records)
        self.mute, self.truncate_udp, self.no_tcp = mute, truncate_udp, no_tcp
        self.tcp_answers = 0

    def start(self) -> Self:
        super().start()
        if self.no_tcp:  # the port's TCP side refuses: truncated answers cannot be completed
            with contextlib.suppress(OSError):
                self._sockets[1].shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(), stops listening
            self._sockets[1].close()
        return self

    def _reply(self, data: bytes, udp: bool) -> bytes | None:
        return None if self.mute else super()._reply(data, udp)

    def answer(self, wire: bytes, *, udp: bool = True) -> bytes:
        if udp and self.truncate_udp:
            response = dns.message.make_response(dns.message.from_wire(wire))
            response.flags |= dns.flags.TC
            return response.to_wire()
        self.tcp_answers += not udp
        return super().answer(wire, udp=udp)


POP3_GREETING = b"+OK pop.test ready\r\n"
POP3_CAPA = b"+OK\r\nUSER\r\nSASL PLAIN\r\nRESP-CODES\r\n.\r\n"


def pop3_server(replies: dict[str, bytes] | None = None, *, greeting: bytes = POP3_GREETING) -> Behaviour:
    """A line-by-line POP3 server: each command's verb picks its reply (default ``+OK``). A reply that starts
    with "+ " is a SASL continuation: the next client line is read and answered with the verb's "<VERB>+" entry."""
    table = {"CAPA": POP3_CAPA, "QUIT": b"+OK bye\r\n", **(replies or {})}

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        while line := await read_cmd(reader):
            verb = line.split(b" ", 1)[0].strip().decode("ascii", "replace").upper()
            answer = table.get(verb, b"+OK\r\n")
            writer.write(answer)
            await writer.drain()
            if answer.startswith(b"+ "):
                await read_cmd(reader)
                writer.write(table.get(verb + "+", b"-ERR [AUTH] no\r\n"))
                await writer.drain()
            if verb == "QUIT":
                return
    return behaviour


def pop3_stls_server(context: ssl.SSLContext, *, keep_refusal: bool = False, extra_after_go_ahead: bytes = b"",
                     user_in_clear: bool = False) -> Behaviour:
    """A POP3 server with STLS that refuses USER before TLS (unless ``user_in_clear``); ``keep_refusal`` keeps
    refusing it inside TLS though CAPA offers it (pre-TLS state kept); ``extra_after_go_ahead`` follows the
    STLS go-ahead in the same write (response injection)."""
    refusal = b"-ERR [AUTH] Plaintext authentication disallowed\r\n"

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(POP3_GREETING)
        tls = refused = False
        while line := await read_cmd(reader):
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"STLS":
                writer.write(b"+OK Begin TLS\r\n" + extra_after_go_ahead)
                await writer.drain()
                await writer.start_tls(context)
                tls = True
                continue
            if verb == b"CAPA":
                writer.write(b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n" if tls else b"+OK\r\nSTLS\r\n.\r\n")
            elif verb == b"USER":
                refused = (refused and keep_refusal) or not (tls or user_in_clear)
                writer.write(refusal if refused else b"+OK send PASS\r\n")
            else:
                writer.write(b"+OK bye\r\n" if verb == b"QUIT" else b"-ERR unknown command\r\n")
            await writer.drain()
            if verb == b"QUIT":
                return
    return behaviour
