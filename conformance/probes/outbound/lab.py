"""One run of the outbound lab: publish the zone, start the MX hosts, make the gateway send one tagged
message per scenario, watch for one window, and report what arrived where.

The messages go only to the suite's own test domain (``mc-<tag>@<scenario>.<domain>``); the tag is new
per run, so a message an earlier run left in the gateway's queue is counted as stale, never as this
run's. Every scenario runs at once: the run takes about one window.
"""

from __future__ import annotations

import asyncio
import email.utils
import secrets
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from conformance.probes.outbound.dns import LabDns
from conformance.probes.outbound.dsn import DsnRead, read_dsns
from conformance.probes.outbound.mx import Arrival, MxLog, start_mx
from conformance.probes.outbound.pki import LabPki
from conformance.probes.outbound.scenarios import (
    SCENARIOS,
    Posture,
    Scenario,
    Sts,
    Tlsa,
    mx_addresses,
    report_address,
    sts_policy,
)
from conformance.probes.outbound.sts import PolicyHost
from conformance.probes.outbound.tlsrpt import parse_report
from conformance.probes.outbound.zone import build_zone
from conformance.probes.smtp.session import SmtpReply, SmtpSession
from conformance.probes.tls.handshake import judge
from conformance.probes.wire.config import ProbeConfig, scrub
from conformance.probes.wire.outcome import LocalError, ProbeError
from conformance.target import Account, Endpoint, Outbound

Sender = Callable[[str, bytes], Awaitable[str]]
POLL = 0.1   # seconds between looks at the arrivals while the window runs


@dataclass(frozen=True)
class Sent:
    """How the gateway took the scenario's message: ``accepted`` or why not, in the gateway's words."""

    scenario: str
    recipient: str
    accepted: bool
    reason: str


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    sent: Sent
    arrivals: tuple[Arrival, ...]        # this run's copies only
    connections: int                     # sessions the sender opened to this scenario's MX hosts
    waited: float

    @property
    def delivered(self) -> bool:
        return bool(self.arrivals)


@dataclass(frozen=True)
class TlsRptRun:
    """What came of the operator's ``tlsrpt_send`` hook: its words, and the report mail that arrived at the
    lab's report address within the window after it ran."""

    address: str
    hook_ok: bool
    hook_reason: str
    reports: tuple[bytes, ...]
    waited: float


@dataclass(frozen=True)
class LabReport:
    tag: str
    window: float
    results: dict[str, ScenarioResult]
    stale: int = 0                                       # messages of earlier runs that arrived now
    refused: tuple[str, ...] = ()                        # recipients the MX hosts refused (not ours)
    dns_queries: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    tlsrpt: TlsRptRun | None = None                      # None: the target has no tlsrpt_send hook
    dsns: DsnRead | None = None                          # what the gateway reported back (None: not looked)


def recipient(scenario: Scenario, domain: str, tag: str) -> str:
    return f"mc-{tag}@{scenario.domain(domain)}"


def make_message(account: Account, to: str, scenario: Scenario, tag: str) -> bytes:
    return (f"From: <{account.address}>\r\nTo: <{to}>\r\n"
            f"Subject: mailconform outbound {scenario.name} {tag}\r\n"
            f"Message-ID: <mc-{tag}-{scenario.name}@mailconform.invalid>\r\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
            f"X-Mailconform-Token: mc-{tag}-{scenario.name}\r\n\r\n"
            f"Sent by mailconform to see how the gateway delivers to: {', '.join(p.value for p in scenario.mx)}.\r\n"
            ).encode()


async def submit(endpoint: Endpoint, cfg: ProbeConfig, account: Account, to: str, message: bytes) -> str:
    """Submit one message as the test account (TLS verified before AUTH). Returns the DATA reply;
    raises ProbeError (LocalError for a refusal, with the gateway's reply) otherwise."""
    async with SmtpSession(endpoint, cfg, cfg.transcript(endpoint)) as smtp:
        await smtp.connect()
        _expect("EHLO", (await smtp.ehlo()).reply, (250,))
        if not endpoint.implicit_tls:
            _expect("STARTTLS", await smtp.starttls(), (220,))
        if smtp.tls is None or not judge(smtp.tls, endpoint, cfg).verified:
            raise LocalError(f"not logging in to {endpoint}: its certificate does not verify")
        _expect("AUTH", await smtp.auth_plain(account.username, account.password), (235,))
        _expect("MAIL", await smtp.mail(account.address), (250,))
        _expect("RCPT", await smtp.rcpt(to), (250, 251))
        reply = await smtp.data(message)
        _expect("DATA", reply, (250,))
        await smtp.quit()
        return f"DATA {reply}"


def _expect(stage: str, reply: SmtpReply, ok: tuple[int, ...]) -> None:
    if reply.code not in ok:
        raise LocalError(f"the gateway answered {stage} with {reply}")


async def _send_hook(argv: Sequence[str], to: str, message: bytes, timeout: float) -> str:
    """The operator's send hook: ``argv + [recipient, message file]``; exit 0 means the gateway took it."""
    with tempfile.TemporaryDirectory(prefix="mailconform-out-") as tmp:
        path = Path(tmp) / "message.eml"
        path.write_bytes(message)
        return await run_hook("send", [*argv, to, str(path)], timeout)


async def run_hook(name: str, argv: Sequence[str], timeout: float) -> str:
    """An operator hook (argv, no shell); its output in words, or LocalError saying how it failed."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        raise LocalError(f"the {name} hook did not finish within {timeout:g} s") from None
    words = output.decode(errors="replace").strip()[-300:]
    if proc.returncode != 0:
        raise LocalError(f"the {name} hook exited {proc.returncode}: {words or 'no output'}")
    return words or f"the {name} hook exited 0"


class Lab:
    """The lab's servers for one run (use ``async with``)."""

    def __init__(self, outbound: Outbound, scenarios: tuple[Scenario, ...] = SCENARIOS) -> None:
        self.outbound, self.scenarios = outbound, scenarios
        self.log = MxLog()
        self.pki = LabPki.load_or_create(outbound.lab_dir, outbound.domain)
        self._servers: list[asyncio.Server] = []
        self._dns: LabDns | None = None
        self.policy_host: PolicyHost | None = None

    async def __aenter__(self) -> Self:
        out = self.outbound
        addresses = mx_addresses(out.address, self.scenarios)
        leaves: dict[str, bytes] = {}
        try:
            for scenario in self.scenarios:
                for index, (host, posture) in enumerate(zip(scenario.hosts(out.domain), scenario.mx, strict=True)):
                    context, leaves[host] = self._context(host, posture)
                    self._servers.append(await start_mx(
                        addresses[(scenario.name, index)], out.mx_port, scenario=scenario.name, host=host,
                        domain=scenario.domain(out.domain), posture=posture, context=context, log=self.log))
            self._dns = LabDns(build_zone(out.domain, out.address, self.pki, leaves, self.scenarios,
                                          policy_id=secrets.token_hex(6), port=out.mx_port))
            await self._dns.start(out.address, out.dns_port)
            await self._start_policy_host()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start_policy_host(self) -> None:
        domain = self.outbound.domain
        policies = {f"mta-sts.{s.domain(domain)}": policy for s in self.scenarios
                    if (policy := sts_policy(s, domain)) is not None}
        if not policies:
            return
        wildcards = {f"mta-sts.{s.domain(domain)}": f"*.{s.domain(domain)}" for s in self.scenarios
                     if s.policy_wildcard and f"mta-sts.{s.domain(domain)}" in policies}
        first, *rest = [host for host in policies if host not in wildcards] or [f"mta-sts.{domain}"]
        issued = self.pki.issue(first, also=tuple(rest))
        context = _server_context(issued.chain_pem, issued.key_pem)
        _serve_by_name(context, {host: self._wildcard_context(pattern) for host, pattern in wildcards.items()})
        self.policy_host = PolicyHost(policies)
        await self.policy_host.start(self.outbound.address, self.outbound.https_port, context)

    def _wildcard_context(self, pattern: str) -> ssl.SSLContext:
        issued = self.pki.issue(pattern)
        return _server_context(issued.chain_pem, issued.key_pem)

    async def __aexit__(self, *_: object) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
        if self._dns is not None:
            await self._dns.close()
        if self.policy_host is not None:
            await self.policy_host.close()

    def _context(self, host: str, posture: Posture) -> tuple[ssl.SSLContext | None, bytes]:
        name = f"elsewhere.{host.partition('.')[2]}" if posture is Posture.WRONG_NAME else host
        issued = self.pki.issue(name, self_signed=posture is Posture.SELF_SIGNED,
                                expired=posture is Posture.EXPIRED)
        if posture in (Posture.NO_STARTTLS, Posture.DOWN):
            return None, issued.leaf_der
        return _server_context(issued.chain_pem, issued.key_pem), issued.leaf_der

    async def run(self, tag: str, send: Sequence[tuple[Scenario, str, bytes]], sender: Sender,
                  window: float, dsns: Callable[[], Awaitable[DsnRead]] | None = None) -> LabReport:
        """``sender(to, message)`` is awaited per scenario at once; then the window runs out (from the last
        submission on). ``dsns`` reads what the gateway reported back, beside the TLS-RPT hook."""
        sent = await asyncio.gather(*(self._send(sender, scenario, to, message) for scenario, to, message in send))
        # the window runs from the moment the gateway holds every message: a slow submission costs no window
        started = time.monotonic()
        deadline = started + window
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL)
        waited = time.monotonic() - started
        results = {}
        for (scenario, to, _), how in zip(send, sent, strict=True):
            mine = tuple(a for a in self.log.arrivals if to in a.recipients)
            hosts = scenario.hosts(self.outbound.domain)
            results[scenario.name] = ScenarioResult(scenario, how, mine,
                                                    sum(self.log.connections.get(h, 0) for h in hosts), waited)
        tlsrpt, dsn_read = await asyncio.gather(self._tlsrpt_if_hooked(window, results.values()),
                                                _none() if dsns is None else dsns())
        reports = report_address(self.outbound.domain)
        stale = sum(1 for a in self.log.arrivals
                    if not any(r.startswith(f"mc-{tag}@") or r == reports for r in a.recipients))
        return LabReport(tag, window, results, stale, tuple(self.log.refused),
                         tuple(self._dns.queries) if self._dns else (), tlsrpt, dsn_read)

    async def _tlsrpt_if_hooked(self, window: float, results: Iterable[ScenarioResult]) -> TlsRptRun | None:
        if not self.outbound.tlsrpt_send:
            return None
        return await self._tlsrpt(self.outbound.tlsrpt_send, window, _refused_domains(results))

    async def _tlsrpt(self, argv: Sequence[str], window: float, expected: set[str]) -> TlsRptRun:
        """Run the hook once every scenario had its window, then wait (at most one more window) until reports
        name every ``expected`` domain; the reference gateway's come within a second."""
        address = report_address(self.outbound.domain)
        try:
            words = await run_hook("tlsrpt_send", argv, max(window, 5.0))
        except ProbeError as exc:
            return TlsRptRun(address, False, str(exc), (), 0.0)
        started = time.monotonic()
        while not expected <= _reported(self._reports(address)) and time.monotonic() < started + window:
            await asyncio.sleep(POLL)
        return TlsRptRun(address, True, words, self._reports(address), time.monotonic() - started)

    def _reports(self, address: str) -> tuple[bytes, ...]:
        return tuple(a.message for a in self.log.arrivals if address in a.recipients)

    async def _send(self, sender: Sender, scenario: Scenario, to: str, message: bytes) -> Sent:
        try:
            words = await sender(to, message)
        except ProbeError as exc:
            return Sent(scenario.name, to, False, str(exc))
        return Sent(scenario.name, to, True, str(words))


async def _none() -> None:
    return None


def _refused_domains(results: Iterable[ScenarioResult]) -> set[str]:
    """Scenario domains with a TLSA or MTA-STS policy whose MX hosts the sender connected to and left:
    the sessions a TLS-RPT report counts as failed."""
    return {r.sent.recipient.rpartition("@")[2] for r in results if r.connections and not r.delivered
            and not r.scenario.deliver and (r.scenario.tlsa is not Tlsa.NONE or r.scenario.sts is not Sts.NONE)}


def _reported(messages: Iterable[bytes]) -> set[str]:
    return {p.domain.rstrip(".").lower() for m in messages for p in parse_report(m).policies}


def _serve_by_name(context: ssl.SSLContext, by_name: dict[str, ssl.SSLContext]) -> None:
    """The policy host answers a client naming one of ``by_name`` (SNI) with that context's certificate."""
    if not by_name:
        return

    def pick(connection: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        chosen = by_name.get((name or "").lower())
        if chosen is not None:
            connection.context = chosen

    context.sni_callback = pick  # type: ignore[assignment]


def _server_context(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="mailconform-lab-") as tmp:  # ssl loads keys from files only
        chain, key = Path(tmp) / "chain.pem", Path(tmp) / "key.pem"
        chain.write_bytes(chain_pem)
        key.write_bytes(key_pem)
        context.load_cert_chain(chain, key)
    return context


async def run_lab(outbound: Outbound, cfg: ProbeConfig, account: Account, endpoint: Endpoint | None,
                  window: float, scenarios: tuple[Scenario, ...] = SCENARIOS, *,
                  mailbox: Endpoint | None = None) -> LabReport:
    """The whole run: lab up, one message per scenario (through the send hook or by submission); after the
    window, the DSNs in the test account's ``mailbox`` (IMAP)."""
    tag = secrets.token_hex(4)
    messages = [(s, to, make_message(account, to, s, tag))
                for s, to in ((s, recipient(s, outbound.domain, tag)) for s in scenarios)]

    async def sender(to: str, message: bytes) -> str:
        try:
            if outbound.send is not None:
                return await _send_hook(outbound.send, to, message, cfg.session_budget)
            if endpoint is None:
                raise LocalError("the target has no submission endpoint to send through")
            return await asyncio.wait_for(submit(endpoint, cfg, account, to, message), cfg.session_budget)
        except TimeoutError:
            raise LocalError(f"submitting took longer than {cfg.session_budget:g} s") from None
        except ProbeError as exc:
            raise type(exc)(scrub(str(exc), cfg.secrets)) from None

    async def dsns() -> DsnRead:
        if mailbox is None:
            return DsnRead("", reason="the target has no IMAP endpoint: the test account's mailbox (and any "
                                      "DSN the gateway sent it) was not read")
        return await asyncio.to_thread(read_dsns, mailbox, cfg, account, tag)

    async with Lab(outbound, scenarios) as lab:
        return await lab.run(tag, messages, sender, window, dsns)
