"""A private Knot DNS from Debian's package: the authoritative server of the rig's lab zones, signing them
automatically (``dnssec-signing: on`` with an automatic ECDSA P-256 policy: Knot makes the keys itself).

``Knot(address, port)`` renders its own knot.conf into a temporary directory, runs ``knotd -d -c FILE``,
and stops with ``knotc stop`` over its own control socket; ``serve(zone, text, signing=...)`` writes a zone
file and (re)loads it, and waits until Knot answers with that zone's new serial (and, when signed, with
signatures). Zones are loaded whole from their files each time (no journal, nothing written back), so a
reload publishes exactly the new text, signed afresh with the zone's keys, which stay the same.

Signing modes: ``"on"`` (14-day signatures, Knot's default), ``"off"`` (served unsigned) and ``"expired"``:
Knot signs with a policy whose signatures live ``SHORT_RRSIG_LIFETIME`` seconds, the zone is frozen at once
(``knotc zone-freeze``: no re-signing), and ``serve`` returns once those signatures have expired — Knot
itself publishes an expired zone, no clock is faked.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tests.real.daemon import DaemonError, log_tail, missing, run, stop_and_wait, wait_until
from tests.real.unbound import free_udp_tcp_port

BINARIES = ("knotd", "knotc")
START_TIMEOUT = 20.0
DEFAULT_ADDRESS = "127.0.0.4"
SHORT_RRSIG_LIFETIME = 2   # seconds; "expired" zones wait this out once (Knot accepts no past expiry)
SIGNING_MODES = ("on", "off", "expired")

__all__ = ["BINARIES", "DaemonError", "Knot"]


class Knot:
    """Knot DNS on ``address:port`` (a free port if none given) serving the zones given to ``serve``."""

    def __init__(self, address: str = DEFAULT_ADDRESS, port: int | None = None, *,
                 workdir: Path | None = None) -> None:
        self.address = address
        self.port = port or free_udp_tcp_port(address)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mailconform-knot-"))
        self.conf = self.workdir / "knot.conf"
        self.log = self.workdir / "knot.log"
        self.pid_file = self.workdir / "run" / "knot.pid"
        self.zones: dict[str, str] = {}      # zone -> signing mode
        self._serials: dict[str, int] = {}
        self._started = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Start knotd (no zones yet) and wait until its control socket answers."""
        absent = missing(*BINARIES)
        if absent:
            raise DaemonError(f"not installed: {', '.join(absent)} (run ci/install-real-servers.sh)")
        for sub in ("run", "db", "zones"):
            (self.workdir / sub).mkdir(exist_ok=True)
        self.conf.write_text(self.config_text(), encoding="utf-8")
        try:
            self._started = True
            run(["knotd", "-d", "-c", str(self.conf)], "starting Knot", self.log, START_TIMEOUT)
            wait_until(self._controllable, START_TIMEOUT,
                       lambda: f"Knot's control socket did not answer within {START_TIMEOUT:.0f} s\n"
                               + log_tail(self.log))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """``knotc stop``, then wait for knotd to go. Safe to call twice."""
        if not self._started:
            return
        self._started = False
        stop_and_wait(self.pid_file, "Knot", lambda: self.control("stop"))
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def control(self, *command: str) -> str:
        return run(["knotc", "-c", str(self.conf), "-t", "10", *command], f"knotc {' '.join(command)}",
                   self.log, START_TIMEOUT)

    def _controllable(self) -> bool:
        try:
            self.control("status")
        except DaemonError:
            return False
        return True

    # -- zones -------------------------------------------------------------------------------------

    def serve(self, zone: str, body: str, *, signing: str = "on") -> None:
        """Publish ``body`` (zone-file records, relative to ``zone``; the SOA is added) as ``zone``, signed as
        ``signing`` says, and return once Knot answers with it (DaemonError with the log's tail if not)."""
        if signing not in SIGNING_MODES:
            raise ValueError(f"signing must be one of {SIGNING_MODES}, not {signing!r}")
        zone = zone.rstrip(".").lower()
        serial = self._serials.get(zone, 0) + 1
        self._serials[zone] = serial
        (self.workdir / "zones" / f"{zone}.zone").write_text(
            f"$ORIGIN {zone}.\n$TTL 60\n@ SOA ns1.{zone}. hostmaster.{zone}. {serial} 3600 600 86400 60\n{body}",
            encoding="utf-8")
        known = zone in self.zones
        if known and self.zones[zone] == "expired":
            self.control("zone-thaw", zone)
        changed = self.zones.get(zone) != signing
        self.zones[zone] = signing
        if changed:  # a new zone or another policy: Knot re-reads its configuration (and loads new zones)
            self.conf.write_text(self.config_text(), encoding="utf-8")
            self.control("reload")
        elif known:
            self.control("zone-reload", zone)
        self._wait_served(zone, serial, signed=signing != "off")
        if signing == "expired":
            self.control("-b", "zone-freeze", zone)   # blocking: a signing already under way finishes first
            self._wait_expired(zone)

    def dnskeys(self, zone: str) -> dns.rrset.RRset:
        """The zone's DNSKEY set as Knot serves it (empty if the zone is unsigned)."""
        answer = self._query(zone, "DNSKEY")
        found = answer.get_rrset(answer.answer, dns.name.from_text(zone), dns.rdataclass.IN,
                                 dns.rdatatype.DNSKEY) if answer else None
        return found or dns.rrset.RRset(dns.name.from_text(zone), dns.rdataclass.IN, dns.rdatatype.DNSKEY)

    def trust_anchor(self, zone: str) -> str:
        """The zone's DS (SHA-256 of its key-signing key) as a zone-file line: the lab's trust anchor."""
        keys = [k for k in self.dnskeys(zone) if k.flags & 0x0001]  # SEP: the key-signing key
        if not keys:
            raise DaemonError(f"Knot serves no key-signing DNSKEY for {zone}\n{log_tail(self.log)}")
        return "".join(f"{zone}. 60 IN DS {dns.dnssec.make_ds(zone + '.', key, 'SHA256').to_text()}\n"
                       for key in keys)

    def _query(self, name: str, rtype: str) -> dns.message.Message | None:
        query = dns.message.make_query(name, rtype, want_dnssec=True)
        try:
            return dns.query.tcp(query, self.address, port=self.port, timeout=1.0)
        except (OSError, dns.exception.DNSException):
            return None

    def _soa(self, zone: str) -> tuple[int, list[int]]:
        """(serial, expiration times of its RRSIGs) as served now; serial 0 if the zone is not served."""
        answer = self._query(zone, "SOA")
        if answer is None:
            return 0, []
        serial, expirations = 0, []
        for rrset in answer.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                serial = rrset[0].serial
            elif rrset.rdtype == dns.rdatatype.RRSIG:
                expirations += [sig.expiration for sig in rrset]
        return serial, expirations

    def _wait_served(self, zone: str, serial: int, *, signed: bool) -> None:
        # Knot's signing bumps the serial it serves (serial-policy: increment) past the file's
        def ready() -> bool:
            served, sigs = self._soa(zone)
            return served >= serial and bool(sigs) == signed
        wait_until(ready, START_TIMEOUT, lambda: f"Knot did not serve {zone} (serial {serial}, "
                   f"{'signed' if signed else 'unsigned'}) within {START_TIMEOUT:.0f} s\n" + log_tail(self.log))

    def _wait_expired(self, zone: str) -> None:
        """Until the newest signature served has expired: every re-signing replaces the SOA's RRSIG too, so
        the SOA's is asked for again on each poll."""
        wait_until(lambda: time.time() > max(self._soa(zone)[1], default=0) + 1, SHORT_RRSIG_LIFETIME + START_TIMEOUT,
                   lambda: f"the signatures of {zone} did not expire\n" + log_tail(self.log))

    def config_text(self) -> str:
        zones = "".join(self._zone_entry(zone, signing) for zone, signing in self.zones.items())
        return f"""# Written by tests/real/knot.py: a private authoritative server on loopback.
server:
    rundir: "{self.workdir / 'run'}"
    pidfile: "{self.pid_file}"
    listen: {self.address}@{self.port}

log:
  - target: "{self.log}"
    any: info

database:
    storage: "{self.workdir / 'db'}"

control:
    listen: "{self.workdir / 'run' / 'knot.sock'}"

policy:
  - id: automatic
    algorithm: ecdsap256sha256
  - id: expiring
    algorithm: ecdsap256sha256
    rrsig-lifetime: {SHORT_RRSIG_LIFETIME}
    rrsig-refresh: 1
    rrsig-pre-refresh: 0
    propagation-delay: 0
    zone-max-ttl: 1

template:
  - id: default
    storage: "{self.workdir / 'zones'}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    serial-policy: increment
{"zone:" + zones if zones else ""}
"""

    @staticmethod
    def _zone_entry(zone: str, signing: str) -> str:
        entry = f"\n  - domain: {zone}\n    file: {zone}.zone\n"
        if signing == "off":
            return entry + "    dnssec-signing: off\n"
        return entry + f"    dnssec-signing: on\n    dnssec-policy: {'expiring' if signing == 'expired' else 'automatic'}\n"
