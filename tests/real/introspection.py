"""A token introspection endpoint (RFC 7662) on loopback for Dovecot's oauth2 passdb: tokens it knows are
active and name their user; every other token is inactive. Plain http.server in a thread: the endpoint
only needs to answer Dovecot's POST, and the standard library does that without another dependency."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs


class Introspection:
    """``with Introspection({token: user}) as endpoint: endpoint.url`` (POST, form field ``token``)."""

    def __init__(self, tokens: dict[str, str], address: str = "127.0.0.1") -> None:
        self.tokens = dict(tokens)
        self.asked: list[bool] = []   # one entry per request: was the token active (the count is evidence)
        known, asked = self.tokens, self.asked

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0") or 0)
                form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
                user = known.get((form.get("token") or [""])[0])
                asked.append(user is not None)
                body = json.dumps({"active": True, "email": user} if user else {"active": False}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the request line carries no token (POST body), but the tier's output stays quiet

        self._server = ThreadingHTTPServer((address, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/introspect"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
