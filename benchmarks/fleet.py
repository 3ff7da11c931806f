"""A fleet scanned serially and under pytest-xdist: wall time, connections per host, the most open at once.

    python benchmarks/fleet.py [--sizes 1 10 50 200] [--rtt-ms 50] [--workers 2 8] [--no-serial]
                               [--gateway-processes 2]

Starts ``--gateway-processes`` reference gateways, each in a process of its own, and puts N copies of them
on loopback addresses of their own (127.0.1.1 … 127.0.1.N, dealt round the gateways) behind a proxy adding
``--rtt-ms`` of round-trip time and counting connections per address;
writes one target file per address (one node, seven services), then runs the passive families (no opt-ins;
not dns nor login enumeration, see PASSIVE) over the whole fleet, once serially and once with ``-n``.
Prints, per N: wall time, how many times faster than the serial scan of the same fleet in this run, connections
per host, the most simultaneous connections to any host, the most hosts probed at once, the largest resident
memory of any pytest process (controller or worker), its growth per endpoint over the first size run, the
verdicts (pass/fail/inconclusive) and the load average.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance.cli import PYTEST_OPTIONS, QUIET
from conformance.reference.gateway import Gateway
from conformance.report import read_junit
from tests.fleet_proxy import FleetProxy, proxied_target

# the passive families; not the dns family (one DNS zone behind all copies) nor the timing-based login
# enumeration (tens of paired logins per endpoint: it measures the server's delays, not the scheduling)
PASSIVE = ("-k", "not dns and not enumeration")


# runs the scan and writes the largest resident memory of it or any process it waited for (the xdist workers),
# and their CPU seconds: a fresh parent per scan, because RUSAGE_CHILDREN keeps the maximum over every child
# a process ever had
_PEAK_RSS_AND_CPU = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[2:]).returncode; "
             "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
             "open(sys.argv[1], 'w').write(f'{u.ru_maxrss} {u.ru_utime + u.ru_stime}'); sys.exit(code)")
ENDPOINTS = 7  # of one single_node gateway: mx, submission, submissions, imap, imaps, pop3, pop3s


def scan(targets: list[Path], workdir: Path, extra: tuple[str, ...]) -> tuple[float, int, float, str]:
    junit = workdir / "fleet.xml"
    # the pytest options `mailconform run` passes by default: a fleet is scanned with `mailconform run -n auto`
    command = [sys.executable, "-m", "pytest", "--pyargs", "conformance.checks", *PYTEST_OPTIONS, *QUIET,
               "-o", "addopts=", "--mail-fail-on", "never", "--junitxml", str(junit), *PASSIVE, *extra,
               *(a for t in targets for a in ("--mail-target", str(t)))]
    usage_file = workdir / "usage.txt"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _PEAK_RSS_AND_CPU, str(usage_file), *command], check=False,
                          capture_output=True, text=True, cwd=workdir)
    seconds = time.monotonic() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"scan failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    rss_text, cpu_text = usage_file.read_text(encoding="utf-8").split()
    verdicts = Counter(case.verdict for case in read_junit(junit))
    counts = "/".join(str(verdicts[v]) for v in ("pass", "fail", "inconclusive"))
    return seconds, int(rss_text), float(cpu_text), counts


def _own_cpu() -> float:
    """CPU seconds of this process (the proxy here, a gateway in a gateway process): they share the two
    cores with the scan."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class GatewayProcess:
    """A reference gateway in a process of its own. One process serving the whole fleet caps the fleet at one
    core (one event loop, one GIL): under -n 2 it became the bottleneck of the scan it serves, a limit of this
    simulation that a fleet of separate hosts does not have."""

    def __init__(self, workdir: Path) -> None:
        spawn = multiprocessing.get_context("spawn")
        self._conn, child = spawn.Pipe()
        self._process = spawn.Process(target=_serve_gateway, args=(str(workdir), child), daemon=True)
        self._process.start()
        if not self._conn.poll(120):
            raise SystemExit(f"the gateway in {workdir} did not start within 120 s")
        ports, template = self._conn.recv()
        self.ports: dict[tuple[str, str], int] = ports
        self._template = Path(template)

    def write_target(self, path: Path) -> Path:
        path.write_text(self._template.read_text(encoding="utf-8"), encoding="utf-8")
        return path

    def cpu(self) -> float:
        self._conn.send("cpu")
        return float(self._conn.recv())

    def stop(self) -> None:
        self._conn.send("stop")
        self._process.join(30)


def _serve_gateway(workdir: str, conn: Connection) -> None:
    # no_lockout: the wrong passwords of targets probed at once add up on a gateway's one account base and
    # would lock it (a real fleet member counts its own); no passive check sees it
    with Gateway(["single_node", "no_lockout"], workdir=Path(workdir)) as gateway:
        conn.send((gateway.ports, str(gateway.write_target(Path(workdir) / "template.toml"))))
        while conn.recv() == "cpu":
            conn.send(_own_cpu())


def fleet_cpu(served: list[GatewayProcess]) -> float:
    """CPU seconds of the fleet so far: the proxy in this process and every gateway process."""
    return _own_cpu() + sum(gateway.cpu() for gateway in served)


@contextmanager
def gateways(count: int, workdir: Path) -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    try:
        started.extend(GatewayProcess(workdir / f"gateway{i + 1}") for i in range(count))
        yield started
    finally:
        for process in started:
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 200])
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--workers", nargs="+", default=["2"], help="pytest-xdist worker counts to compare")
    parser.add_argument("--serial", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--gateway-processes", type=int, default=2, metavar="K",
                        help="reference gateways serving the fleet, one process each (default: 2, the cores)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailconform-fleet-"))
    print(f"{'N':>4} {'mode':>8} {'wall s':>8} {'x serial':>8} {'conn/host':>10} {'max simult.':>12} {'hosts at once':>13} "
          f"{'max RSS MB':>11} {'KB/endpoint':>11} {'scanner CPU':>11} {'fleet CPU':>9} {'pass/fail/inc':>14} {'load':>5}")
    first_rss: dict[str, tuple[int, int]] = {}  # mode -> (N, RSS KB) of its first size
    # one node (seven endpoints) per address: a fleet member is one host with its services
    with ExitStack() as stack:
        served = stack.enter_context(gateways(max(1, args.gateway_processes), workdir))
        proxy = stack.enter_context(FleetProxy(args.rtt_ms / 1000))
        for size in args.sizes:
            targets = [proxied_target(served[i % len(served)], proxy,
                                      f"127.0.1.{i + 1}" if i < 254 else f"127.0.2.{i - 253}",
                                      workdir / f"gw{i + 1}.toml", f"gw{i + 1}") for i in range(size)]
            modes = [("serial", ())] if args.serial else []
            serial_seconds = None
            for mode, extra in modes + [(f"-n {n}", ("-n", n)) for n in args.workers]:
                proxy.reset()
                fleet_before = fleet_cpu(served)
                seconds, rss_kb, scanner_cpu, verdicts = scan(targets, workdir, extra)
                serial_seconds = seconds if mode == "serial" else serial_seconds
                speedup = f"{serial_seconds / seconds:.2f}" if serial_seconds else "-"
                fleet_seconds = fleet_cpu(served) - fleet_before
                per_host = sorted(set(proxy.opened.values()))
                base_n, base_rss = first_rss.setdefault(mode, (size, rss_kb))
                growth = (rss_kb - base_rss) / ((size - base_n) * ENDPOINTS) if size > base_n else 0.0
                print(f"{size:>4} {mode:>8} {seconds:>8.1f} {speedup:>8} {'/'.join(map(str, per_host)):>10} "
                      f"{max(proxy.peak.values(), default=0):>12} {proxy.most_hosts:>13} {rss_kb / 1024:>11.0f} "
                      f"{growth:>11.0f} {scanner_cpu:>11.1f} {fleet_seconds:>9.1f} {verdicts:>14} {os.getloadavg()[0]:>5.1f}", flush=True)


if __name__ == "__main__":
    main()
