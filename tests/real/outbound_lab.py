"""The receiving side of the outbound rig: one subdomain of a signed lab zone per scenario, an aiosmtpd MX
for each (its own loopback address, all on one port), and an HTTPS host serving the MTA-STS policies.

No pytest here. Each scenario's records (MX, A, TLSA, the MTA-STS TXT and policy) and its MX's posture
(certificate, STARTTLS or not) are data in ``SCENARIOS``; ``records()`` is the zone ``lab_dns`` signs.
The MX hosts accept mail only for their own scenario's domain and relay nothing; each message they take
is recorded with whether it came over TLS. The policy host listens on port 443 (RFC 8461 §3.3 fixes the
URL) of its own loopback address 127.0.53.20, never on an address the host's services use.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import http.server
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.hazmat.primitives import serialization

from tests.certgen import Issued, issue

ORIGIN = "outbound.test."
POLICY_ADDRESS = "127.0.53.20"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Scenario:
    """A receiving domain ``<label>.outbound.test`` whose one MX is ``mx.<label>.outbound.test``."""

    label: str
    address: str                # the MX's loopback address
    starttls: bool = True
    cert: str = "self-signed"   # self-signed | lab-ca (issued by the lab CA for the MX's name)
    tlsa: str = ""              # "" (none) | match | mismatch: a DANE-EE 3 1 1 record for the MX
    sts_mode: str = ""          # "" (no MTA-STS) | enforce | testing
    sts_mx: str = ""            # the policy's mx pattern if not the MX itself (an MX outside the policy)

    @property
    def domain(self) -> str:
        return f"{self.label}.{ORIGIN.rstrip('.')}"

    @property
    def mx_host(self) -> str:
        return f"mx.{self.domain}"


SCENARIOS = (
    Scenario("dane-match", "127.0.53.11", tlsa="match"),
    Scenario("dane-mismatch", "127.0.53.12", tlsa="mismatch"),
    Scenario("dane-no-starttls", "127.0.53.13", starttls=False, tlsa="match"),
    Scenario("sts-enforce", "127.0.53.14", cert="lab-ca", sts_mode="enforce"),
    Scenario("sts-enforce-badcert", "127.0.53.15", sts_mode="enforce"),
    Scenario("sts-enforce-other-mx", "127.0.53.16", cert="lab-ca", sts_mode="enforce", sts_mx="mx.elsewhere.test"),
    Scenario("sts-testing-badcert", "127.0.53.17", sts_mode="testing"),
    Scenario("opportunistic", "127.0.53.18"),
)


@dataclass(frozen=True)
class Arrival:
    scenario: str
    mail_from: str
    tls_version: str | None     # None: the message came in plaintext
    content: bytes


class LabPki:
    """The lab CA (the sender's smtp_tls_CAfile and the policy daemon's SSL_CERT_FILE) and each MX's leaf."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = issue("mailconform outbound lab CA", ca=True, days=3650, start=NOW - dt.timedelta(days=30))
        self.ca_path = directory / "lab-ca.pem"
        self.ca_path.write_bytes(self.ca.cert.public_bytes(serialization.Encoding.PEM))
        self.leaves = {s.label: (issue(s.mx_host, self.ca, dns=(s.mx_host,)) if s.cert == "lab-ca"
                                 else issue(s.mx_host, dns=(s.mx_host,))) for s in SCENARIOS}
        policy_names = tuple(f"mta-sts.{s.domain}" for s in SCENARIOS if s.sts_mode)
        self.policy_leaf = issue(policy_names[0], self.ca, dns=policy_names)

    def context(self, leaf: Issued, name: str) -> ssl.SSLContext:
        cert, key = leaf.write(self.directory, name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return context


def _spki_sha256(leaf: Issued) -> str:
    spki = leaf.cert.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def records(pki: LabPki, port: int) -> dict[tuple[str, str], list[str]]:
    """The lab zone: every scenario's records."""
    out: dict[tuple[str, str], list[str]] = {
        (ORIGIN, "NS"): [f"ns1.{ORIGIN}"],
        (f"ns1.{ORIGIN}", "A"): ["127.0.0.1"],
    }
    for s in SCENARIOS:
        out[(f"{s.domain}.", "MX")] = [f"10 {s.mx_host}."]
        out[(f"{s.mx_host}.", "A")] = [s.address]
        if s.tlsa:
            digest = _spki_sha256(pki.leaves[s.label]) if s.tlsa == "match" else hashlib.sha256(b"old key").hexdigest()
            out[(f"_{port}._tcp.{s.mx_host}.", "TLSA")] = [f"3 1 1 {digest}"]
        if s.sts_mode:
            out[(f"_mta-sts.{s.domain}.", "TXT")] = ['"v=STSv1; id=20261201T000000"']
            out[(f"mta-sts.{s.domain}.", "A")] = [POLICY_ADDRESS]
    return out


def zone_body(zone: dict[tuple[str, str], list[str]]) -> str:
    """The records as zone-file lines (Knot adds the SOA and signs them)."""
    return "".join(f"{name} 60 IN {rtype} {text}\n" for (name, rtype), texts in zone.items() for text in texts)


def policy_text(scenario: Scenario) -> str:
    return (f"version: STSv1\r\nmode: {scenario.sts_mode}\r\nmx: {scenario.sts_mx or scenario.mx_host}\r\n"
            "max_age: 86400\r\n")


class _Recorder:
    def __init__(self, scenario: Scenario, arrivals: list[Arrival]) -> None:
        self.scenario = scenario
        self.arrivals = arrivals

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if not address.lower().endswith("@" + self.scenario.domain):
            return "550 5.7.1 relaying denied: this MX takes mail for its own lab domain only"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        tls = session.ssl.get("ssl_object") if session.ssl else None
        self.arrivals.append(Arrival(self.scenario.label, str(envelope.mail_from),
                                     tls.version() if tls is not None else None,
                                     envelope.original_content or b""))
        return "250 2.0.0 queued"


class _PolicyHandler(http.server.BaseHTTPRequestHandler):
    policies: ClassVar[dict[str, str]] = {}   # mta-sts.<domain> -> policy, set per lab in a subclass

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        text = self.policies.get(host) if self.path == "/.well-known/mta-sts.txt" else None
        body = (text or "not found\n").encode()
        self.send_response(200 if text else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class OutboundLab:
    """The scenarios' MX hosts (in one asyncio thread) and the policy host; ``start()``/``stop()``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir / "lab"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = LabPki(self.workdir)
        self.port = _common_port([s.address for s in SCENARIOS])
        self.arrivals: list[Arrival] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="outbound-lab", daemon=True)
        self._servers: list[asyncio.Server] = []
        self._https: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start_mx_hosts(), self._loop)
        self._servers = future.result(timeout=10)
        handler = type("PolicyHandler", (_PolicyHandler,),
                       {"policies": {f"mta-sts.{s.domain}": policy_text(s) for s in SCENARIOS if s.sts_mode}})
        self._https = http.server.ThreadingHTTPServer((POLICY_ADDRESS, 443), handler)
        self._https.socket = self.pki.context(self.pki.policy_leaf, "policy").wrap_socket(
            self._https.socket, server_side=True)
        self._https.timeout = 5
        threading.Thread(target=self._https.serve_forever, name="mta-sts-policy-host", daemon=True).start()

    async def _start_mx_hosts(self) -> list[asyncio.Server]:
        servers = []
        for s in SCENARIOS:
            context = self.pki.context(self.pki.leaves[s.label], s.label) if s.starttls else None
            factory = functools.partial(SMTP, _Recorder(s, self.arrivals), hostname=s.mx_host, tls_context=context,
                                        timeout=10)
            servers.append(await self._loop.create_server(factory, s.address, self.port))
        return servers

    def stop(self) -> None:
        if self._https is not None:
            self._https.shutdown()
            self._https.server_close()
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()

    def arrived(self) -> Iterator[Arrival]:
        return iter(list(self.arrivals))


def _common_port(addresses: list[str], attempts: int = 50) -> int:
    """One port free on every address: Postfix's ``smtp_tcp_port`` is one port for all MX hosts."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        if all(_free(address, port) for address in addresses):
            return port
    raise OSError(f"no port free on all of {', '.join(addresses)}")


def _free(address: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True
