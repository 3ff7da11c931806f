"""The outbound rig's DNS: Knot serving a zone signed with dnspython, and a validating Unbound that trusts
only that zone's key and asks Knot for it (a stub zone).

No pytest here. Knot (not the reference responder) because a validating resolver needs authenticated
denial: Postfix at ``dane`` level asks for TLSA records that a scenario does not publish, and only a real
authoritative server sends the NSEC proofs that make such an answer "secure, no record" instead of bogus.
Unbound listens on port 53 of a loopback address nothing else uses (127.0.53.1), because a glibc
``resolv.conf`` cannot name a port; the host's own resolver and its /etc/resolv.conf are never touched
(the processes that resolve through Unbound see a private copy in their own mount namespace: see
``sender_rig.namespaced``). Every wait is bounded; both daemons are stopped by their own PIDs.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec
from dns.rdtypes.dnskeybase import Flag

RESOLVER_ADDRESS = "127.0.53.1"   # port 53: resolv.conf has no port syntax
TTL = 60
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class LabDnsError(RuntimeError):
    """Knot or Unbound did not start; the message carries its log's tail."""


def signed_zone(origin: str, records: Mapping[tuple[str, str], Sequence[str]]) -> tuple[dns.zone.Zone, str]:
    """The zone (NSEC-signed with a fresh ECDSA P-256 key) and its DS record as Unbound's trust anchor."""
    lines = [f"{name} {TTL} IN {rtype} {text}" for (name, rtype), texts in records.items() for text in texts]
    zone = dns.zone.from_text("\n".join(lines) + "\n", origin=origin, relativize=False)
    private = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(private.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256,
                                    flags=Flag.ZONE | Flag.SEP)
    dns.dnssec.sign_zone(zone, keys=[(private, dnskey)], lifetime=7 * 24 * 3600, dnskey_ttl=TTL)
    ds = dns.dnssec.make_ds(origin, dnskey, "SHA256")
    return zone, f"{origin} DS {ds.to_text()}"


def _free_port(address: str) -> int:
    """A port free for both UDP and TCP on ``address`` (Knot and Unbound take both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            try:
                tcp.bind((address, port))
            except OSError:
                continue
            return port
    raise LabDnsError(f"no port free for UDP and TCP on {address}")


class LabDns:
    """Knot on 127.0.0.1 (a free port) and Unbound on 127.0.53.1:53; ``start()``/``stop()``."""

    def __init__(self, workdir: Path, zone: dns.zone.Zone, trust_anchor: str) -> None:
        self.workdir = workdir / "dns"
        self.zone = zone
        self.trust_anchor = trust_anchor
        self.knot_port = 0
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    @property
    def origin(self) -> str:
        return str(self.zone.origin)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.knot_port = _free_port("127.0.0.1")
        try:
            self._start_knot()
            self._start_unbound()
        except BaseException:
            self.stop()
            raise

    def _start_knot(self) -> None:
        zonefile = self.workdir / "lab.zone"
        self.zone.to_file(str(zonefile), relativize=False)
        conf = self.workdir / "knot.conf"
        conf.write_text(f"""server:
    rundir: "{self.workdir}"
    listen: 127.0.0.1@{self.knot_port}
log:
  - target: "{self.workdir / 'knot.log'}"
    any: info
database:
    storage: "{self.workdir / 'knot-db'}"
template:
  - id: default
    storage: "{self.workdir}"
    zonefile-load: whole
    journal-content: none
zone:
  - domain: {self.origin}
    file: "{zonefile}"
""")
        self._spawn("knot", ["knotd", "-c", str(conf)])
        self._wait(lambda: self._answers("127.0.0.1", self.knot_port), "Knot", self.workdir / "knot.log")

    def _start_unbound(self) -> None:
        conf = self.workdir / "unbound.conf"
        log = self.workdir / "unbound.log"
        conf.write_text(f"""server:
    interface: {RESOLVER_ADDRESS}
    port: 53
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "{self.workdir}"
    pidfile: "{self.workdir / 'unbound.pid'}"
    use-syslog: no
    logfile: "{log}"
    val-log-level: 2
    do-not-query-localhost: no
    module-config: "validator iterator"
    trust-anchor: "{self.trust_anchor}"
    # answers only the lab zone: everything else is refused, nothing goes to the internet
    local-zone: "." refuse
    local-zone: "{self.origin}" transparent
stub-zone:
    name: "{self.origin}"
    stub-addr: 127.0.0.1@{self.knot_port}
remote-control:
    control-enable: no
""")
        self._spawn("unbound", ["unbound", "-d", "-c", str(conf)])
        self._wait(lambda: self._answers(RESOLVER_ADDRESS, 53, validated=True), "Unbound", log)

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = (self.workdir / f"{name}.out").open("wb")
        self._processes.append((name, subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                                       stderr=subprocess.STDOUT)))
        out.close()

    def _answers(self, address: str, port: int, *, validated: bool = False) -> bool:
        query = dns.message.make_query(self.origin, dns.rdatatype.SOA, want_dnssec=True)
        try:
            reply = dns.query.udp(query, address, port=port, timeout=0.5)
        except (OSError, dns.exception.DNSException):
            return False
        return bool(reply.answer) and (not validated or bool(reply.flags & dns.flags.AD))

    def _wait(self, ready: object, what: str, log: Path) -> None:
        assert callable(ready)
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            dead = [name for name, proc in self._processes if proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise LabDnsError(f"{what} did not answer {'(exited)' if dead else f'within {START_TIMEOUT:.0f} s'}"
                                  f"\n{self.log_tail(log)}")
            time.sleep(0.05)  # between polls of a daemon that is still loading; bounded by the deadline

    def log_tail(self, log: Path, lines: int = 20) -> str:
        texts = []
        for path in (log, *self.workdir.glob("*.out")):
            try:
                texts.append(f"--- {path.name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
            except OSError:
                continue
        return "\n".join(texts)

    def stop(self) -> None:
        for _, proc in reversed(self._processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self._processes:
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child, by its handle
                proc.wait(timeout=STOP_TIMEOUT)
        self._processes = []
