"""A fleet scanned serially and under pytest-xdist: wall time, connections per host, the most open at once.

    python benchmarks/fleet.py [--sizes 1 10 50 200] [--rtt-ms 50] [--workers 2 8] [--no-serial]

Starts one reference gateway and puts N copies of it on loopback addresses of their own (127.0.1.1 …
127.0.1.N) behind a proxy adding ``--rtt-ms`` of round-trip time and counting connections per address;
writes one target file per address (one node, five services), then runs the passive families (no opt-ins;
not dns nor login enumeration, see PASSIVE) over the whole fleet, once serially and once with ``-n``.
Prints, per N: wall time, connections per host, the most simultaneous connections to any host, and the
largest resident memory of any pytest process (controller or worker).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance.reference.gateway import Gateway
from tests.fleet_proxy import FleetProxy, proxied_target

# the passive families; not the dns family (one DNS zone behind all copies) nor the timing-based login
# enumeration (tens of paired logins per endpoint: it measures the server's delays, not the scheduling)
PASSIVE = ("-k", "not dns and not enumeration")


def scan(targets: list[Path], workdir: Path, extra: tuple[str, ...]) -> tuple[float, int]:
    command = [sys.executable, "-m", "pytest", "--pyargs", "conformance.checks", "-p", "no:cacheprovider", "-q",
               "-o", "addopts=", "--mail-fail-on", "never", *PASSIVE, *extra,
               *(a for t in targets for a in ("--mail-target", str(t)))]
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(command, check=False, capture_output=True, text=True, cwd=workdir)
    seconds = time.monotonic() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"scan failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 200])
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--workers", nargs="+", default=["2"], help="pytest-xdist worker counts to compare")
    parser.add_argument("--serial", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailconform-fleet-"))
    print(f"{'N':>4} {'mode':>8} {'wall s':>8} {'conn/host':>10} {'max simult.':>12} {'max RSS MB':>11}")
    # one node (five endpoints) per gateway: a fleet member is one host with its services
    with Gateway(["single_node"], workdir=workdir / "gateway") as gateway, FleetProxy(args.rtt_ms / 1000) as proxy:
        for size in args.sizes:
            targets = [proxied_target(gateway, proxy, f"127.0.1.{i + 1}" if i < 254 else f"127.0.2.{i - 253}",
                                      workdir / f"gw{i + 1}.toml", f"gw{i + 1}") for i in range(size)]
            modes = [("serial", ())] if args.serial else []
            for mode, extra in modes + [(f"-n {n}", ("-n", n)) for n in args.workers]:
                proxy.reset()
                seconds, rss_kb = scan(targets, workdir, extra)
                per_host = sorted(set(proxy.opened.values()))
                print(f"{size:>4} {mode:>8} {seconds:>8.1f} {'/'.join(map(str, per_host)):>10} "
                      f"{max(proxy.peak.values(), default=0):>12} {rss_kb / 1024:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
