"""A small mail server with an account lockout, for testing the lockout probes and checks before (and
independently of) the reference gateway: SMTP submission (STARTTLS) and IMAP (STARTTLS) on two
nodes, one shared lockout engine, and switches for each lockout flaw.

The engine follows the policy the checks expect: failures per user (known or not) within a window;
at ``threshold`` failures the account is locked for ``duration``; while locked every login (the
correct password too) gets a temporary answer and is not counted; a success resets the count; a
repeat of one of the last ten wrong passwords is not counted again; a login while the auth backend
is down (a file the target's hooks create and remove) gets a temporary answer and is not counted.

Runs in its own thread and event loop, so a suite run in this process or another can talk to it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import certgen

LOCKOUT_FLAWS = ("no_lockout", "per_protocol_lockout", "permanent_lockout", "success_no_reset", "lockout_oracle",
                 "locked_says_wrong_password", "outage_counts_failures", "burst_login_limit",
                 "stale_password_counted", "lockout_collateral")
ACCOUNTS = {"alice@example.test": "alice-Correct-Horse-1", "locky@example.test": "locky-Battery-Staple-2"}
IO = 10.0


@dataclass
class Engine:
    threshold: int = 3
    window: float = 1.0
    duration: float = 1.0
    flaws: frozenset[str] = frozenset()
    throttle: float = 0.0       # > 0: no lock, every wrong password is answered this late (like Dovecot)
    down_file: Path | None = None
    failures: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    locked_until: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    log: list[tuple[str, str, str]] = field(default_factory=list)   # (protocol, user, verdict)

    def _key(self, protocol: str, user: str) -> str:
        return f"{protocol}:{user}" if "per_protocol_lockout" in self.flaws else user

    def _locked(self, key: str, now: float) -> bool:
        keys = self.locked_until if "lockout_collateral" in self.flaws else {key: self.locked_until.get(key, 0.0)}
        return any(until > now for until in keys.values())

    def _fail(self, key: str, password: str, now: float) -> None:
        digest = hashlib.sha256(password.encode()).hexdigest()
        recent = [f for f in self.failures.get(key, []) if now - f[0] < self.window]
        if "stale_password_counted" in self.flaws or digest not in [d for _, d in recent[-10:]]:
            recent.append((now, digest))
        self.failures[key] = recent
        if len(recent) >= self.threshold and "no_lockout" not in self.flaws:
            forever = "permanent_lockout" in self.flaws
            self.locked_until[key] = float("inf") if forever else now + self.duration
            self.failures[key] = []

    async def check(self, protocol: str, user: str, password: str) -> str:
        """'ok', 'wrong', 'locked' or 'unavailable'."""
        verdict = await self._check(protocol, user, password)
        self.log.append((protocol, user, verdict))
        return verdict

    async def _check(self, protocol: str, user: str, password: str) -> str:
        key, now = self._key(protocol, user), time.monotonic()
        if self.down_file is not None and self.down_file.exists():
            if "outage_counts_failures" in self.flaws:
                self._fail(key, password + str(now), now)
            return "unavailable"
        if self._locked(key, now):
            if "lock_timing_oracle" in self.flaws and user in ACCOUNTS:  # test-only: a lock that shows in time
                await asyncio.sleep(0.4)
            return "locked"
        self.in_flight[user] = self.in_flight.get(user, 0) + 1
        try:
            await asyncio.sleep(0.02)  # a password hash takes a moment: concurrent logins overlap here
            if "burst_login_limit" in self.flaws and self.in_flight[user] > 3:
                self._fail(key, password + str(now), now)
                return "wrong"
        finally:
            self.in_flight[user] -= 1
        if user not in ACCOUNTS and "lockout_oracle" in self.flaws:
            return "wrong"  # unknown users are never locked: a lock reveals the account exists
        if ACCOUNTS.get(user) == password:
            if "success_no_reset" not in self.flaws:
                self.failures.pop(key, None)
            return "ok"
        if self.throttle:
            await asyncio.sleep(self.throttle)
            return "wrong"
        self._fail(key, password, now)
        return "wrong"

    def answer(self, protocol: str, verdict: str) -> str:
        if verdict == "locked" and "locked_says_wrong_password" in self.flaws:
            verdict = "wrong"
        smtp = {"ok": "235 2.7.0 Authentication successful", "wrong": "535 5.7.8 Authentication credentials invalid",
                "locked": "454 4.7.0 Temporary authentication failure", "unavailable": "454 4.7.0 Try again later"}
        imap = {"ok": "OK [CAPABILITY IMAP4rev1] Logged in", "wrong": "NO [AUTHENTICATIONFAILED] Authentication failed.",
                "locked": "NO [UNAVAILABLE] Temporary authentication failure",
                "unavailable": "NO [UNAVAILABLE] Try again later"}
        return (smtp if protocol == "smtp" else imap)[verdict]


async def _line(reader: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(reader.readline(), IO)).decode().rstrip("\r\n")


def smtp_handler(engine: Engine, context: ssl.SSLContext):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = False
        writer.write(b"220 mx.example.test ESMTP lockout fake\r\n")
        while line := await _line(reader):
            verb, _, args = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                ext = ["AUTH PLAIN"] if tls else ["STARTTLS"]
                lines = ["mx.example.test", *ext]
                writer.write("".join(f"250{'-' if i < len(lines) - 1 else ' '}{t}\r\n"
                                     for i, t in enumerate(lines)).encode())
            elif verb == "STARTTLS" and not tls:
                writer.write(b"220 2.0.0 go ahead\r\n")
                await writer.drain()
                await writer.start_tls(context)
                tls = True
                continue
            elif verb == "AUTH" and tls:
                _, user, password = base64.b64decode(args.partition(" ")[2]).decode().split("\0")
                writer.write(engine.answer("smtp", await engine.check("smtp", user, password)).encode() + b"\r\n")
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 5.5.1 not here\r\n")
            await writer.drain()
    return handle


def imap_handler(engine: Engine, context: ssl.SSLContext):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = False
        writer.write(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] lockout fake\r\n")
        while line := await _line(reader):
            tag, _, rest = line.partition(" ")
            verb, _, args = rest.partition(" ")
            verb = verb.upper()
            if verb == "CAPABILITY":
                caps = "IMAP4rev1 AUTH=PLAIN" if tls else "IMAP4rev1 STARTTLS LOGINDISABLED"
                writer.write(f"* CAPABILITY {caps}\r\n{tag} OK done\r\n".encode())
            elif verb == "STARTTLS" and not tls:
                writer.write(f"{tag} OK begin TLS\r\n".encode())
                await writer.drain()
                await writer.start_tls(context)
                tls = True
                continue
            elif verb == "LOGIN" and tls:
                user, password = (a.strip('"') for a in args.split(" ", 1))
                verdict = await engine.check("imap", user, password)
                writer.write(f"{tag} {engine.answer('imap', verdict)}\r\n".encode())
            elif verb == "LOGOUT":
                writer.write(f"* BYE bye\r\n{tag} OK done\r\n".encode())
                await writer.drain()
                return
            else:
                writer.write(f"{tag} BAD unknown\r\n".encode())
            await writer.drain()
    return handle


@dataclass
class LockoutServer:
    """Two nodes x (submission, imap) on 127.0.0.1, one engine; ``ports[(node, service)]``."""

    engine: Engine
    workdir: Path
    ports: dict[tuple[str, str], int] = field(default_factory=dict)
    anchor: Path | None = None

    def write_target(self, path: Path, *, lockout_account: bool = True, hooks: bool = True) -> Path:
        (self.workdir / "alice.pw").write_text(ACCOUNTS["alice@example.test"] + "\n")
        (self.workdir / "locky.pw").write_text(ACCOUNTS["locky@example.test"] + "\n")
        down = self.workdir / "auth-down"
        nodes = []
        for node in ("node1", "node2"):
            outage = (f'outages = {{ auth = {{ down = ["touch", "{down}"], up = ["rm", "-f", "{down}"], '
                      f'timeout = 10 }} }}\n') if hooks else ""
            nodes.append(f'[[node]]\nname = "{node}"\nhost = "mx{node[-1]}.example.test"\naddress = "127.0.0.1"\n'
                         f'services = {{ submission = {self.ports[(node, "submission")]}, '
                         f'imap = {self.ports[(node, "imap")]} }}\n{outage}')
        lockout = ('[accounts.lockout]\nusername = "locky@example.test"\npassword_file = "locky.pw"\n'
                   if lockout_account else "")
        e = self.engine
        path.write_text(
            f'[target]\nname = "lockout-fake"\ntrust_anchors = ["{self.anchor}"]\ntimeout = 5\n'
            f'max_connections_per_host = 4\n\n' + "\n".join(nodes) +
            '\n[accounts.test]\nusername = "alice@example.test"\npassword_file = "alice.pw"\n' + lockout +
            f'\n[policy]\nlockout_threshold = {e.threshold}\nlockout_window = {e.window}\n'
            f'lockout_duration = {e.duration}\nmax_outage = 30\n')
        return path


@contextlib.contextmanager
def lockout_server(workdir: Path, **engine: object) -> Iterator[LockoutServer]:
    pki = certgen.make_pki()
    context = certgen.server_context(pki, pki.leaf("mx1.example.test", dns=("mx1.example.test", "mx2.example.test")),
                                     workdir)
    anchor = pki.root.write(workdir, "root")[0]
    eng = Engine(down_file=workdir / "auth-down", **engine)  # type: ignore[arg-type]
    server = LockoutServer(eng, workdir, anchor=anchor)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    servers: list[asyncio.base_events.Server] = []

    async def start() -> None:
        for node in ("node1", "node2"):
            for service, handler in (("submission", smtp_handler), ("imap", imap_handler)):
                srv = await asyncio.start_server(handler(eng, context), "127.0.0.1", 0)
                servers.append(srv)
                server.ports[(node, service)] = srv.sockets[0].getsockname()[1]
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    if not started.wait(10):
        raise RuntimeError("the lockout fake did not start within 10 s")
    try:
        yield server
    finally:
        async def stop() -> None:
            for srv in servers:
                srv.close()
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
