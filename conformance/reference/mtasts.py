"""The reference gateway's MTA-STS policy host: HTTPS on loopback, certificate for mta-sts.<domain> from its PKI.

Built on the standard library's ``http.server`` (a thread per request, TLS wrapped around the listening
socket with the handshake deferred to the request thread, so one slow client never blocks accept).
The policy it serves follows the flaws: an MX left out, ``mode: testing``, or a redirect instead of the policy.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

from conformance.reference.flaws import Flaws

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_AGE = 604800


def policy_text(mx_hosts: tuple[str, ...], flaws: Flaws) -> str:
    """The policy for the current MX hosts and flaws (CRLF lines, RFC 8461 §3.2)."""
    hosts = mx_hosts[:1] if flaws.mta_sts_mx_mismatch else mx_hosts   # the backup MX forgotten
    mode = "testing" if flaws.mta_sts_testing else "enforce"
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {h}" for h in hosts), f"max_age: {MAX_AGE}"]
    return "\r\n".join(lines) + "\r\n"


class PolicyServer:
    """``PolicyServer(chain, key).start()``; ``address`` is "127.0.0.1:port" (the target's mta_sts_address)."""

    def __init__(self, chain: Path, key: Path) -> None:
        self.policy = ""
        self.redirect = False
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(chain, key)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, policy: str, *, redirect: bool = False) -> None:
        self.policy, self.redirect = policy, redirect

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("MTA-STS policy server not started")
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a client that stalls mid-request is dropped

            def do_GET(self) -> None:
                if self.path != POLICY_PATH:
                    self._answer(404, b"not found\n")
                elif owner.redirect:  # mta_sts_redirect: the policy "moved" to the web site
                    self.send_response(301)
                    domain = self.headers.get("Host", "mta-sts.example.test").removeprefix("mta-sts.")
                    self.send_header("Location", f"https://www.{domain}{POLICY_PATH}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._answer(200, owner.policy.encode("ascii"))

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=us-ascii")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # the gateway logs nothing per request

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = self._context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="reference-mta-sts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread = None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
