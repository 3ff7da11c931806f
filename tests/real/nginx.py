"""A private nginx from Debian's ``nginx-light``: a static HTTPS server on loopback, e.g. the MTA-STS policy host.

``Nginx(address, port, server_name=..., cert=..., key=..., files={url_path: text})`` renders its own
nginx.conf under a private prefix (``-p``, ``-c``, ``-e``: /etc/nginx and /var/log/nginx are never read or
written), runs ``nginx``, waits until its port accepts connections, and stops with ``nginx -s quit``.
``publish(url_path, text)`` replaces a file in place: nginx serves the new content at once. ``.txt`` goes out
as ``text/plain`` (RFC 8461 §3.2 wants that media type for the policy); no redirects, no directory listings.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.real.daemon import DaemonError, log_tail, missing, run, stop_and_wait, wait_until
from tests.real.servers import free_port

BINARIES = ("nginx",)
START_TIMEOUT = 15.0
DEFAULT_ADDRESS = "127.0.0.6"

__all__ = ["BINARIES", "DaemonError", "Nginx"]


class Nginx:
    """nginx serving ``files`` over HTTPS as ``server_name`` on ``address:port`` (a free port if none given)."""

    def __init__(self, address: str = DEFAULT_ADDRESS, port: int | None = None, *, server_name: str,
                 cert: Path, key: Path, files: Mapping[str, str] | None = None,
                 workdir: Path | None = None) -> None:
        self.address = address
        self.port = port or free_port(address)
        self.server_name = server_name
        self.cert, self.key = cert, key
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mailconform-nginx-"))
        self.workdir.chmod(0o755)  # nginx's workers (www-data) read the document root below it
        self.root = self.workdir / "www"
        self.conf = self.workdir / "nginx.conf"
        self.log = self.workdir / "error.log"
        self.pid_file = self.workdir / "nginx.pid"
        self._files = dict(files or {})
        self._started = False

    @property
    def spec(self) -> str:
        return f"{self.address}:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        absent = missing(*BINARIES)
        if absent:
            raise DaemonError(f"not installed: {', '.join(absent)} (run ci/install-real-servers.sh)")
        (self.workdir / "tmp").mkdir(exist_ok=True)
        for url_path, text in self._files.items():
            self.publish(url_path, text)
        self.conf.write_text(self.config_text(), encoding="utf-8")
        try:
            self._started = True
            run(self._argv(), "starting nginx", self.log, START_TIMEOUT)
            wait_until(self._accepts, START_TIMEOUT,
                       lambda: f"nginx did not accept on {self.spec} within {START_TIMEOUT:.0f} s\n"
                               + log_tail(self.log))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """``nginx -s quit`` (graceful), then wait for the master to go. Safe to call twice."""
        if not self._started:
            return
        self._started = False
        stop_and_wait(self.pid_file, "nginx",
                      lambda: run([*self._argv(), "-s", "quit"], "stopping nginx", self.log, START_TIMEOUT))
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def publish(self, url_path: str, text: str) -> None:
        """Serve ``text`` at ``url_path`` from now on (written beside, then renamed: never half a file)."""
        target = self.root / url_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        for directory in (self.root, *target.parents):
            if directory.is_relative_to(self.root):
                directory.chmod(0o755)
        partial = target.with_name(target.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.chmod(0o644)
        partial.replace(target)

    def _argv(self) -> list[str]:
        return ["nginx", "-p", f"{self.workdir}/", "-c", str(self.conf), "-e", str(self.log)]

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.address, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def config_text(self) -> str:
        tmp = self.workdir / "tmp"
        temp_paths = "".join(f"    {kind}_temp_path {tmp / kind};\n"
                             for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""# Written by tests/real/nginx.py: a private static HTTPS server on loopback.
worker_processes 1;
pid {self.pid_file};
error_log {self.log} info;
events {{
    worker_connections 64;
}}
http {{
    access_log {self.workdir / 'access.log'};
{temp_paths}    types {{
        text/plain txt;
    }}
    default_type application/octet-stream;
    server_tokens off;
    server {{
        listen {self.address}:{self.port} ssl;
        server_name {self.server_name};
        ssl_certificate {self.cert};
        ssl_certificate_key {self.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {self.root};
        autoindex off;
    }}
}}
"""
