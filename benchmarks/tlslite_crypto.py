"""The 0-RTT ticket probe's CPU with tlslite-ng's pure-Python AES-GCM and X25519, and with OpenSSL's.

    python benchmarks/tlslite_crypto.py [--probes 30]

Starts the reference gateway and runs the probe (``early_data.session_tickets``, one TLS 1.3 handshake and
the ticket after it) ``--probes`` times on its imaps endpoint, one after another, in two fresh processes: one
as the suite runs it (``tlslite_stack.load_tlslite``: AEADs and X25519 on OpenSSL), one with tlslite-ng as
it comes. Prints the probe's CPU milliseconds in each (the gateway runs in this process, not in theirs) and
their ratio, and checks that both read the same tickets.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance.reference.gateway import Gateway

_PROBES = """
import asyncio, sys, time
from conformance.probes.tls import early_data, tlslite_stack
from conformance.target import load_target

if sys.argv[2] == "pure":  # tlslite-ng as installed: imported without handing it OpenSSL's primitives
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import tlslite.api
    tlslite_stack._load = lambda: True
target = load_target(sys.argv[1])
endpoint = next(e for e in target.endpoints if e.service.value == "imaps")

async def probe():
    reader, writer = await asyncio.open_connection(endpoint.address, endpoint.port)
    try:
        return await early_data.session_tickets(reader, writer, endpoint, 10.0)
    finally:
        writer.close()

asyncio.run(probe())  # imports and first-use costs out of the measurement
start = time.process_time()
found = [asyncio.run(probe()) for _ in range(int(sys.argv[3]))]
print((time.process_time() - start) * 1000 / len(found), found[-1])
"""


def measure(target: Path, mode: str, probes: int) -> tuple[float, str]:
    done = subprocess.run([sys.executable, "-c", _PROBES, str(target), mode, str(probes)], capture_output=True,
                          text=True, check=True, timeout=600)
    milliseconds, tickets = done.stdout.strip().split(" ", 1)
    return float(milliseconds), tickets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=30)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailconform-tlslite-"))
    with Gateway(["single_node"], workdir=workdir) as gateway:
        target = gateway.write_target(workdir / "target.toml")
        pure, pure_tickets = measure(target, "pure", args.probes)
        native, native_tickets = measure(target, "native", args.probes)
    if pure_tickets != native_tickets:
        raise SystemExit(f"the two read different tickets: {pure_tickets!r} / {native_tickets!r}")
    print(f"0-RTT ticket probe, {args.probes} probes each: pure-Python tlslite-ng {pure:.1f} ms CPU per probe, "
          f"on OpenSSL {native:.1f} ms ({pure / native:.1f}x less); both: {native_tickets}")


if __name__ == "__main__":
    main()
