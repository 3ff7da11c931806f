"""A private, validating Unbound from Debian's package: a resolver the suite (or Postfix) can be pointed at.

``Unbound(address, port, stub_zones={zone: (addr, port)}, trust_anchors=[DS or DNSKEY lines])`` renders
its own unbound.conf into a temporary directory, runs ``unbound -c FILE`` (as root, no chroot, no user
switch), waits until it answers a query, and stops with ``unbound-control stop`` over its own Unix control
socket. The host's resolver configuration (/etc/resolv.conf, /etc/unbound, port 53) is never touched.

Lab zones live on loopback, which Unbound refuses to query by default (``do-not-query-localhost``), and
Unbound serves ``test.``, ``invalid.`` and other special-use names from built-in empty local zones: each
stub zone and every name above it get ``local-zone: <name> nodefault``, so its queries go to the stub. Without a trust anchor
covering them, names are looked up unvalidated; nothing leaves loopback unless a name outside the stub
zones is asked for (then Unbound tries the root servers, which this tier never needs).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import dns.exception
import dns.message
import dns.query

from tests.real.daemon import DaemonError, log_tail, missing, run, stop_and_wait, wait_until

BINARIES = ("unbound", "unbound-control")
START_TIMEOUT = 15.0
DEFAULT_ADDRESS = "127.0.0.5"

__all__ = ["BINARIES", "DaemonError", "Unbound", "free_udp_tcp_port"]


def free_udp_tcp_port(address: str) -> int:
    """A port free for both UDP and TCP on ``address`` right now (a DNS server needs both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise DaemonError(f"no port free for both UDP and TCP on {address}")


class Unbound:
    """A validating Unbound on ``address:port`` (a free port if none given) forwarding nothing: it asks the
    stub zones' authoritative servers itself and validates from ``trust_anchors`` (zone-file lines)."""

    def __init__(self, address: str = DEFAULT_ADDRESS, port: int | None = None, *,
                 stub_zones: Mapping[str, tuple[str, int]] | None = None, trust_anchors: Sequence[str] = (),
                 sig_skew: int | None = None, workdir: Path | None = None) -> None:
        """``sig_skew``: seconds of clock skew Unbound forgives around a signature's validity period (its
        default: a tenth of the period, at least an hour); 0 makes a signature that expired a second ago bogus."""
        self.address = address
        self.sig_skew = sig_skew
        self.port = port or free_udp_tcp_port(address)
        self.stub_zones = dict(stub_zones or {})
        self.trust_anchors = list(trust_anchors)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mailconform-unbound-"))
        self.conf = self.workdir / "unbound.conf"
        self.log = self.workdir / "unbound.log"
        self.pid_file = self.workdir / "unbound.pid"
        self._started = False

    @property
    def spec(self) -> str:
        """``address:port``, as a target file's ``resolver`` key takes it."""
        return f"{self.address}:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Write the configuration, start Unbound, wait until it answers. DaemonError with its log's tail."""
        absent = missing(*BINARIES)
        if absent:
            raise DaemonError(f"not installed: {', '.join(absent)} (run ci/install-real-servers.sh)")
        self.conf.write_text(self.config_text(), encoding="utf-8")
        try:
            self._started = True
            run(["unbound", "-c", str(self.conf)], "starting Unbound", self.log, START_TIMEOUT)
            wait_until(self._answers, START_TIMEOUT,
                       lambda: f"Unbound gave no answer on {self.spec} within {START_TIMEOUT:.0f} s\n"
                               + log_tail(self.log))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """``unbound-control stop``, then wait for the process to go. Safe to call twice."""
        if not self._started:
            return
        self._started = False
        stop_and_wait(self.pid_file, "Unbound", lambda: self.control("stop"))
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def control(self, *command: str) -> str:
        """Run ``unbound-control`` against this instance (e.g. ``control("flush_zone", "example.test")``)."""
        return run(["unbound-control", "-c", str(self.conf), *command], f"unbound-control {' '.join(command)}",
                   self.log, START_TIMEOUT)

    def flush(self, zone: str) -> None:
        """Forget everything cached at and below ``zone``, including bogus and negative answers, so the next
        query sees what the authoritative server serves now."""
        self.control("flush_zone", zone)
        self.control("flush_bogus")
        self.control("flush_negative")
        self.control("flush_infra", "all")

    def _answers(self) -> bool:
        query = dns.message.make_query(".", "NS")  # any answer will do, even SERVFAIL: the server is up
        try:
            dns.query.udp(query, self.address, port=self.port, timeout=0.5)
        except (OSError, dns.exception.Timeout):
            return False
        return True

    def config_text(self) -> str:
        stubs = "".join(f'\nstub-zone:\n  name: "{zone}"\n  stub-addr: {addr}@{port}\n'
                        for zone, (addr, port) in self.stub_zones.items())
        no_defaults = "".join(f'  local-zone: "{suffix}" nodefault\n' for suffix in _suffixes(self.stub_zones))
        anchors = "".join(f'  trust-anchor: "{line.strip()}"\n' for line in self.trust_anchors if line.strip())
        skew = ("" if self.sig_skew is None else
                f"  val-sig-skew-min: {self.sig_skew}\n  val-sig-skew-max: {self.sig_skew}\n")
        return f"""# Written by tests/real/unbound.py: a private, validating resolver on loopback.
server:
  interface: {self.address}@{self.port}
  port: {self.port}
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  do-daemonize: yes
  username: ""
  chroot: ""
  directory: "{self.workdir}"
  pidfile: "{self.pid_file}"
  logfile: "{self.log}"
  use-syslog: no
  verbosity: 1
  val-log-level: 2
  num-threads: 1
  so-reuseport: no
  module-config: "validator iterator"
{skew}{no_defaults}{anchors}
remote-control:
  control-enable: yes
  control-interface: "{self.workdir / 'control.sock'}"
  control-use-cert: no
{stubs}"""


def _suffixes(zones: Mapping[str, object]) -> list[str]:
    """Each zone and the names above it, below the root: the built-in zone covering a stub may be any of them."""
    found: list[str] = []
    for zone in zones:
        labels = zone.rstrip(".").split(".")
        found += [".".join(labels[i:]) + "." for i in range(len(labels))]
    return sorted(set(found))
