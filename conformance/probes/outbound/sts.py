"""The lab's MTA-STS policy hosts: ``https://mta-sts.<scenario domain>/.well-known/mta-sts.txt`` for every
scenario that publishes a policy, on the lab address, with one lab-CA certificate naming them all.

Hand-written over asyncio (a request line and headers in, one static file out) because it shares the lab's
event loop and serves nothing else; every read has a timeout and a size bound.
"""

from __future__ import annotations

import asyncio
import ssl

WELL_KNOWN = "/.well-known/mta-sts.txt"
READ_TIMEOUT = 5.0
MAX_HEAD = 8192


class PolicyHost:
    def __init__(self, policies: dict[str, str]) -> None:
        self.policies = {host.lower(): body for host, body in policies.items()}   # Host -> policy file
        self.fetched: list[str] = []                                               # hosts asked, in order
        self._server: asyncio.Server | None = None

    async def start(self, address: str, port: int, context: ssl.SSLContext) -> None:
        self._server = await asyncio.start_server(self._serve, address, port, ssl=context,
                                                  ssl_handshake_timeout=READ_TIMEOUT)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            writer.write(self._response(head[:MAX_HEAD].decode("latin-1")))
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that went away or sent no request: nothing to answer
        finally:
            writer.close()

    def _response(self, head: str) -> bytes:
        lines = head.split("\r\n")
        method, path, *_ = (lines[0].split(" ") + ["", ""])[:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        host = headers.get("host", "").split(":")[0].lower()
        body = self.policies.get(host)
        if method != "GET" or path != WELL_KNOWN or body is None:
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        self.fetched.append(host)
        data = body.encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + str(len(data)).encode()
                + b"\r\nConnection: close\r\n\r\n" + data)
