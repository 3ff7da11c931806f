"""The embedded reference gateway: two nodes of SMTP (mx, submission, submissions), IMAP (imap, imaps) and POP3 (pop3, pop3s)
on 127.0.0.1, one shared mail store and lockout engine, switchable flaws, and a loopback control channel.

A synchronous API over one background thread that runs its own event loop:

    with Gateway(flaws=("no_starttls",), workdir=tmp) as gw:
        gw.ports[("node1", "mx")]; gw.write_target(tmp / "target.toml")
        gw.outage("node1", "delivery", down=True); gw.mailbox("alice@example.test"); gw.check_errors()
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import dns.zone
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance import target_file
from conformance.reference.control import serve_control
from conformance.reference.dns import DnsResponder
from conformance.reference.flaws import Flaws
from conformance.reference.imap import serve_imap
from conformance.reference.lockout import AuthEngine
from conformance.reference.mtasts import PolicyServer, policy_text
from conformance.reference.outage import Component, Outages
from conformance.reference.pki import Pki, variant_for
from conformance.reference.pop3 import serve_pop3
from conformance.reference.runtime import ErrorLog, NodeRuntime, Settings
from conformance.reference.sender import Route, Sender
from conformance.reference.smtp import GatewaySMTP
from conformance.reference.store import MailStore
from conformance.reference.tlsconf import server_context
from conformance.reference.zone import DKIM_SELECTOR, DOMAIN, MailZone, ZoneKey, build_zone

T = TypeVar("T")
NODES = {"node1": "mx1.example.test", "node2": "mx2.example.test"}
SERVICES = ("mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
IMPLICIT_TLS = ("submissions", "imaps", "pop3s")
ACCOUNT_ADDRESSES = {"test": "alice@example.test", "lockout": "locky@example.test", "other": "bob@example.test",
                     "oauth": "carol@example.test"}
TOKEN_ROLES = ("test", "oauth")   # accounts the gateway issues a bearer token for at start
OAUTH_ONLY = ("oauth",)           # accounts whose basic authentication is retired (policy basic_auth = forbidden)
EXTRA_LOCAL = ("postmaster@example.test",)   # a mailbox nobody logs into: RFC 5321 4.5.1
LOCKOUT_THRESHOLD, LOCKOUT_WINDOW, LOCKOUT_DURATION = 5, 3.0, 3.0


class GatewayError(RuntimeError):
    """The gateway could not start or stop, or a server raised: the message says which and why."""


class Gateway:
    """The reference gateway. Not thread-safe itself: drive it from one thread (a test, the CLI)."""

    def __init__(self, flaws: Iterable[str] = (), workdir: Path | None = None, *,
                 settings: Settings | None = None, start_timeout: float = 30.0) -> None:
        self.flaws = Flaws.parse(flaws)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="mailconform-gw-"))
        self.settings = settings or Settings()
        self.start_timeout = start_timeout
        self.accounts: dict[str, tuple[str, str]] = {role: (address, secrets.token_urlsafe(18))
                                                     for role, address in ACCOUNT_ADDRESSES.items()}
        self.store = MailStore(tuple(ACCOUNT_ADDRESSES.values()) + EXTRA_LOCAL)
        self.auth = AuthEngine(dict(self.accounts.values()), self.flaws, threshold=LOCKOUT_THRESHOLD,
                               window=LOCKOUT_WINDOW, duration=LOCKOUT_DURATION)
        self.auth.flaw_users = frozenset({self.accounts["lockout"][0]})
        self.tokens = {role: secrets.token_urlsafe(32) for role in TOKEN_ROLES}
        self.auth.tokens = {self.accounts[role][0]: token for role, token in self.tokens.items()}
        self.auth.oauth_only = frozenset(self.accounts[role][0] for role in OAUTH_ONLY)
        self.outages = Outages(tuple(NODES))
        self.errors = ErrorLog()
        self.ports: dict[tuple[str, str], int] = {}
        self.control_port = 0
        self._token = secrets.token_urlsafe(24)
        self._pki: Pki | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._control: asyncio.AbstractServer | None = None
        self._runtimes: dict[str, NodeRuntime] = {}
        self._dns: DnsResponder | None = None   # the demo domain's signed zone (dns and failover families)
        self._zone_key: ZoneKey | None = None
        self.sender = Sender(self.flaws)        # outbound mail, sent once write_target(outbound=True) set a route
        self.sender.mailbox = self.store        # its delay notices (RFC 3464) go to the local sender
        self._mta_sts: PolicyServer | None = None   # the MTA-STS policy host (HTTPS) of the demo domain

    # --- lifecycle ----------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def nodes(self) -> tuple[str, ...]:
        return ("node1",) if self.flaws.single_node else tuple(NODES)

    @property
    def ca_path(self) -> Path:
        if self._pki is None:
            raise GatewayError("the gateway is not started: no CA yet")
        return self._pki.ca_path

    def start(self) -> None:
        """Generate the PKI, start the server thread and every listener. Raises GatewayError (or the
        bind/TLS error itself) if the gateway is not serving within ``start_timeout`` seconds."""
        if self._loop is not None:
            raise GatewayError("the gateway is already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pki = Pki.create(self.workdir / "pki")
        self._write_secrets()
        contexts = self._contexts()  # built here, so a TLS configuration error raises in the caller
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._loop_exception)
        ready = threading.Event()
        self._loop = loop
        self._thread = threading.Thread(target=self._run_loop, args=(loop, ready), name="mailconform-gateway",
                                        daemon=True)
        self._thread.start()
        if not ready.wait(self.start_timeout):
            raise GatewayError(f"the gateway's event loop did not start within {self.start_timeout} s")
        try:
            self._call(self._listen(contexts, {}), self.start_timeout, "starting the listeners")
            self.control_port = self._call(self._listen_control(), self.start_timeout, "starting the control server")
            self._zone_key = ZoneKey.create()
            self._dns = DnsResponder().start()
            self._dns.load_zone(self._zone())
            self._mta_sts = PolicyServer(*self._pki.named_leaf(f"mta-sts.{DOMAIN}")).start()
            self._serve_policy()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Close every listener and session, stop the thread. Idempotent."""
        if self._dns is not None:
            self._dns.stop()
            self._dns = None
        if self._mta_sts is not None:
            self._mta_sts.stop()
            self._mta_sts = None
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if loop.is_running():
                self._call(self._close_all(), timeout, "stopping the servers")
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()
            self._loop, self._thread = None, None
            self._servers, self._control = [], None
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        if self._loop is None:
            coro.close()
            raise GatewayError(f"{what}: the gateway is not started")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise GatewayError(f"{what} took longer than {timeout} s") from None

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, (OSError, asyncio.CancelledError, asyncio.IncompleteReadError)):
            return  # clients hang up and scanners send garbage: that is their business, not a gateway bug
        self.errors.add(error if isinstance(error, BaseException) else GatewayError(str(context.get("message"))))

    # --- listeners ----------------------------------------------------------------------------------------
    def _contexts(self) -> dict[str, ssl.SSLContext]:
        assert self._pki is not None
        return {node: server_context(self._pki, self.flaws, node) for node in self.nodes}

    def _runtime(self, node: str) -> NodeRuntime:
        return NodeRuntime(node=node, host=NODES[node], flaws=self.flaws, store=self.store, auth=self.auth,
                           outages=self.outages, errors=self.errors, settings=self.settings,
                           preauth_user=self.accounts["test"][0], sender=self.sender)

    async def _listen(self, contexts: dict[str, ssl.SSLContext], ports: dict[tuple[str, str], int]) -> None:
        loop = asyncio.get_running_loop()
        self._runtimes = {node: self._runtime(node) for node in self.nodes}
        new_ports: dict[tuple[str, str], int] = {}
        for node, runtime in self._runtimes.items():
            context = contexts[node]
            for service in SERVICES:
                implicit = service in IMPLICIT_TLS
                listen_tls = context if implicit and not self.flaws.no_implicit_tls else None
                starttls = None if implicit or (service == "mx" and self.flaws.no_starttls) else context
                port = ports.get((node, service), 0)
                server: asyncio.AbstractServer
                if service.startswith(("imap", "pop3")):
                    server = await asyncio.start_server(
                        _stream_callback(runtime, service, starttls, implicit), "127.0.0.1", port, ssl=listen_tls,
                        ssl_handshake_timeout=self.settings.handshake_timeout if listen_tls else None)
                else:
                    server = await loop.create_server(
                        _smtp_factory(runtime, service, starttls, implicit), "127.0.0.1", port, ssl=listen_tls,
                        ssl_handshake_timeout=self.settings.handshake_timeout if listen_tls else None)
                self._servers.append(server)
                new_ports[(node, service)] = server.sockets[0].getsockname()[1]
        self.ports = new_ports

    async def _listen_control(self) -> int:
        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await serve_control(self._apply_outage, self._token, reader, writer, report=self.sender.report)

        self._control = await asyncio.start_server(client, "127.0.0.1", self.control_port)
        return int(self._control.sockets[0].getsockname()[1])

    async def _close_servers(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for runtime in self._runtimes.values():
            for session in list(runtime.sessions):
                session.shutdown(reset=False)
        for server in servers:
            await server.wait_closed()

    async def _close_all(self) -> None:
        await self._close_servers()
        if self._control is not None:
            self._control.close()
            await self._control.wait_closed()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    # --- runtime control ----------------------------------------------------------------------------------
    def set_flaws(self, names: Iterable[str]) -> None:
        """Switch to another flaw set on the running gateway; ports stay the same where they can."""
        flaws = Flaws.parse(names)
        self.flaws = flaws
        self.auth.flaws = flaws
        self.sender.flaws = flaws
        if self._loop is None:
            return
        contexts = self._contexts()
        self._call(self._close_servers(), self.start_timeout, "closing the listeners")
        self._call(self._listen(contexts, dict(self.ports)), self.start_timeout, "restarting the listeners")
        if self._dns is not None:  # single_node publishes one MX host; the ports may have moved
            self._dns.load_zone(self._zone())
        if self._mta_sts is not None:
            self._serve_policy()

    def reset(self) -> None:
        """Forget lockout state, delivered mail and outages (between tests on one gateway)."""
        self.auth.reset()
        self.store.clear()
        self.outages.clear()
        for runtime in self._runtimes.values():
            runtime.held.clear()

    def outage(self, node: str, component: str, down: bool) -> None:
        """Take a node's component down or bring it back. Raises ValueError on an unknown name."""
        self.outages.check(node, component)
        if self._loop is None:
            self._apply_outage(node, component, down)
            return

        async def apply() -> None:
            self._apply_outage(node, component, down)

        self._call(apply(), self.start_timeout, f"setting {component} of {node} {'down' if down else 'up'}")

    def _apply_outage(self, node: str, component: str, down: bool) -> None:
        """On the server thread (or before start): change the state and act on it."""
        comp = self.outages.check(node, component)
        if comp is Component.NODE and not down and self.flaws.slow_recovery and self._loop is not None:
            # slow_recovery: `up` succeeds, but the node answers again only after the delay
            self._loop.call_later(self.settings.slow_recovery_delay, self.outages.set, node, comp, False)
            return
        self.outages.set(node, comp, down)
        runtime = self._runtimes.get(node)
        if runtime is None:
            return
        if comp is Component.NODE and down:
            for session in list(runtime.sessions):
                session.shutdown(reset=self.flaws.reset_on_shutdown)
        if comp is Component.DELIVERY and not down and runtime.held:
            held, runtime.held = runtime.held, []
            for recipients, message in held:  # duplicate_after_recovery: queued copy plus a retried copy
                self.store.deliver(recipients, message)
                self.store.deliver(recipients, message)

    def mailbox(self, username: str) -> list[bytes]:
        return self.store.messages(username)

    def check_errors(self) -> None:
        """Re-raise the first error raised inside the servers (the others are attached as notes)."""
        errors = self.errors.take()
        if errors:
            first = errors[0]
            for other in errors[1:]:
                first.add_note(f"also raised in the gateway: {type(other).__name__}: {other}")
            raise first

    # --- target file --------------------------------------------------------------------------------------
    def _write_secrets(self) -> None:
        files = {f"{role}.password": password for role, (_, password) in self.accounts.items()}
        files |= {f"{role}.token": token for role, token in self.tokens.items()}
        for name, value in files.items():
            path = self.workdir / name
            path.touch(mode=0o600)
            path.chmod(0o600)
            path.write_text(value + "\n", encoding="utf-8")
        token = self.workdir / "control.token"
        token.touch(mode=0o600)
        token.chmod(0o600)
        token.write_text(self._token + "\n", encoding="utf-8")

    def hook_argv(self, node: str, action: str) -> list[str]:
        """The command a target hook runs to take ``node`` down or up (argv, no shell)."""
        return [sys.executable, "-m", "conformance.reference.control", "--port", str(self.control_port),
                "--token-file", str(self.workdir / "control.token"), action, node]

    def _zone(self) -> dns.zone.Zone:
        """The demo domain's zone for the current flaws and ports, signed with the gateway's key."""
        assert self._pki is not None and self._zone_key is not None
        chain, _ = self._pki.leaf(variant_for(self.flaws))
        leaf, *above = (c.public_bytes(serialization.Encoding.DER)
                        for c in x509.load_pem_x509_certificates(chain.read_bytes()))
        ports = {(NODES[node], service): port for (node, service), port in self.ports.items()}
        mail = MailZone(tuple(NODES[n] for n in self.nodes), ports, leaf, above[-1] if above else None)
        return build_zone(mail, self.flaws, self._zone_key)

    def _serve_policy(self) -> None:
        assert self._mta_sts is not None
        self._mta_sts.serve(policy_text(tuple(NODES[n] for n in self.nodes), self.flaws),
                            redirect=self.flaws.mta_sts_redirect)

    @property
    def dns_queries(self) -> list[tuple[str, str]]:
        """(name, type) of every query its DNS responder was asked, in order (empty before start)."""
        return list(self._dns.queries) if self._dns is not None else []

    @property
    def dnssec_anchor_path(self) -> Path:
        return self.workdir / "dnssec-anchor.txt"

    def enable_outbound(self) -> Route:
        """Point the sender at a lab for the outbound family: a random 127.77.x.0 (the lab DNS; its MX hosts
        on the next addresses), free ports, the lab's keys under the workdir. Idempotent."""
        if self.sender.route is None:
            address = f"127.77.{secrets.randbelow(250) + 1}.0"
            dns_port, mx_port = _free_port(address), _free_port(_next_address(address))
            https_port = next(p for p in iter(lambda: _free_port(address), None) if p != dns_port)
            self.sender.route = Route(resolver=f"{address}:{dns_port}", lab_dir=self.workdir / "outbound-lab",
                                      mx_port=mx_port, https_port=https_port)
        return self.sender.route

    def _outbound_section(self) -> list[str]:
        route = self.enable_outbound()
        address, _, dns_port = route.resolver.rpartition(":")
        return ["[outbound]", 'domain = "outbound.test"', f'address = "{address}"', f"dns_port = {dns_port}",
                f"mx_port = {route.mx_port}", f"https_port = {route.https_port}", f"lab_dir = {json.dumps(str(route.lab_dir))}",
                f"tlsrpt_send = {json.dumps(self.hook_argv('-', 'tlsrpt'))}", ""]

    def write_target(self, path: Path | str, *, outbound: bool = False) -> Path:
        """Write a target.toml describing the running gateway; returns its path. ``outbound``: with an
        [outbound] section (and the sender pointed at its lab), so the outbound family runs."""
        if self._loop is None:
            raise GatewayError("write_target needs a started gateway (the ports are not known before)")
        path = Path(path)
        q = json.dumps  # a JSON string is a valid TOML basic string
        lines = ["# The reference gateway `mailconform serve` runs: its ports and files hold while it runs.",
                 "[target]", 'name = "reference"', 'domain = "example.test"',
                 'ehlo_name = "client.mailconform.invalid"', f"trust_anchors = [{q(str(self.ca_path))}]",
                 "timeout = 5", "max_connections_per_host = 8"]
        if self._dns is not None and self._zone_key is not None:
            self.dnssec_anchor_path.write_text(self._zone_key.trust_anchor(), encoding="ascii")
            lines += [f'resolver = "{self._dns.address}"', f"dkim_selectors = [{q(DKIM_SELECTOR)}]",
                      f"dnssec_trust_anchors = [{q(str(self.dnssec_anchor_path))}]"]
        if self._mta_sts is not None:
            lines += [f'mta_sts_address = "{self._mta_sts.address}"']
        lines += [""]
        for node in self.nodes:
            services = ", ".join(f"{s} = {self.ports[(node, s)]}" for s in SERVICES)
            down = ", ".join(q(a) for a in self.hook_argv(node, "down"))
            up = ", ".join(q(a) for a in self.hook_argv(node, "up"))
            lines += ["[[node]]", f"name = {q(node)}", f"host = {q(NODES[node])}", 'address = "127.0.0.1"',
                      f"services = {{ {services} }}", f"hooks = {{ down = [{down}], up = [{up}], timeout = 10 }}"]
            for component in ("delivery", "auth", "directory", "stall"):  # per-component outages (failover)
                c_down = ", ".join(q(a) for a in self.hook_argv(node, "down") + [component])
                c_up = ", ".join(q(a) for a in self.hook_argv(node, "up") + [component])
                lines += [f"[node.outages.{component}]", f"down = [{c_down}]", f"up = [{c_up}]", "timeout = 10"]
            lines += [""]
        for role, (address, _) in self.accounts.items():
            token = [f"token_file = {q(str(self.workdir / f'{role}.token'))}"] if role in self.tokens else []
            lines += [f"[accounts.{role}]", f"username = {q(address)}",
                      f"password_file = {q(str(self.workdir / f'{role}.password'))}", *token,
                      f"address = {q(address)}", ""]
        lines += ["[policy]", f"lockout_threshold = {LOCKOUT_THRESHOLD}", f"lockout_window = {LOCKOUT_WINDOW:g}",
                  f"lockout_duration = {LOCKOUT_DURATION:g}", "cert_expiry_warning_days = 30",
                  "recovery_time_objective = 10", "max_outage = 10", "data_reply_budget = 5",
                  'basic_auth = "forbidden"   # AUTH-BASIC-01 logs in as accounts.oauth (token and password)']
        lines += ["outbound_window = 3", "", *self._outbound_section()] if outbound else [""]
        return target_file.write(path, "\n".join(lines))


def _free_port(address: str) -> int:
    """A port free on ``address`` now (the lab binds it moments later; another taker is unlikely)."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def _next_address(address: str) -> str:
    return str(ipaddress.IPv4Address(address) + 1)


def _smtp_factory(runtime: NodeRuntime, service: str, starttls: ssl.SSLContext | None,
                  implicit: bool) -> Callable[[], GatewaySMTP]:
    return lambda: GatewaySMTP(runtime, service, starttls=starttls, implicit_tls=implicit)


def _stream_callback(runtime: NodeRuntime, service: str, starttls: ssl.SSLContext | None,
                     implicit: bool) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]:
    serve = serve_pop3 if service.startswith("pop3") else serve_imap

    async def callback(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve(runtime, service, reader, writer, starttls, implicit)
    return callback
