"""The whole dns family's network work against the reference gateway's signed zone, with added round-trip time.

    python benchmarks/dns_family.py [--rtt-ms 50]

Starts the reference gateway (its signed example.test zone and its MTA-STS policy host), puts a delaying
UDP proxy in front of its resolver and the TCP ``DelayProxy`` of tls_scan.py in front of the policy host
(and of the resolver's TCP side), then gathers everything the dns checks judge once, as the
``domain_policy`` fixture does: every record, the SPF walk, the DNSSEC chain, the MTA-STS fetch.
Prints seconds, DNS queries, TCP connections and the wall time in round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

# the TCP delay proxy of the sibling benchmark tls_scan.py, reused rather than copied
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tls_scan import DelayProxy

from conformance.fixtures.dns import DomainPolicy, gather_policy
from conformance.probes.wire.outcome import Outcome
from conformance.reference.gateway import Gateway
from conformance.target import load_target


class UdpDelayProxy(asyncio.DatagramProtocol):
    """Forwards each datagram to the resolver and each answer back, each after rtt/2; counts queries."""

    def __init__(self, upstream: tuple[str, int], rtt: float, port: int = 0) -> None:
        self.upstream, self.delay, self.wanted_port = upstream, rtt / 2, port
        self.queries = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("UDP delay proxy did not start within 5 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        front, _ = self._loop.run_until_complete(self._loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", self.wanted_port)))
        self._front = front
        self.port = front.get_extra_info("sockname")[1]
        self._ready.set()
        self._loop.run_forever()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries += 1
        self._loop.call_later(self.delay, lambda: asyncio.ensure_future(self._forward(data, addr)))

    async def _forward(self, data: bytes, client: tuple[str, int]) -> None:
        answered = self._loop.create_future()

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, reply: bytes, _: tuple[str, int]) -> None:
                if not answered.done():
                    answered.set_result(reply)

        transport, _ = await self._loop.create_datagram_endpoint(Back, remote_addr=self.upstream)
        transport.sendto(data)
        try:
            reply = await asyncio.wait_for(answered, 5)
        except TimeoutError:
            return
        finally:
            transport.close()
        self._loop.call_later(self.delay, self._front.sendto, reply, client)


@dataclasses.dataclass
class Run:
    seconds: float
    policy: DomainPolicy
    queries: int
    connections: int


def bench(rtt: float, runs: int = 2) -> list[Run]:
    """The family's gathering ``runs`` times in one process: the first pays the lazy imports (httpx, anyio)."""
    done = []
    with tempfile.TemporaryDirectory() as workdir, Gateway(workdir=Path(workdir)) as gateway:
        target = load_target(gateway.write_target(Path(workdir) / "target.toml"))
        assert target.resolver is not None and target.mta_sts_address is not None and target.domain is not None
        resolver_port = int(target.resolver.rpartition(":")[2])
        with DelayProxy(target.mta_sts_address[1], rtt) as https, DelayProxy(resolver_port, rtt) as dns_tcp, \
                UdpDelayProxy(("127.0.0.1", resolver_port), rtt, port=dns_tcp.port) as dns_udp:
            proxied = dataclasses.replace(target, resolver=f"127.0.0.1:{dns_udp.port}",
                                          mta_sts_address=("127.0.0.1", https.port))
            for _ in range(runs):
                queries, connections = dns_udp.queries, https.connections + dns_tcp.connections
                started = time.monotonic()
                policy = asyncio.run(gather_policy(proxied, target.domain, 5.0))
                done.append(Run(time.monotonic() - started, policy, dns_udp.queries - queries,
                                https.connections + dns_tcp.connections - connections))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtt-ms", type=float, default=50.0, help="round-trip time added to resolver and policy host")
    args = parser.parse_args()
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # the proxies' tasks cancelled at exit are not news
    rtt = args.rtt_ms / 1000
    for label, run in zip(("first in the process", "again"), bench(rtt)):
        policy = run.policy
        fetched = policy.mta_sts is not None and policy.mta_sts.outcome is Outcome.COMPLETED
        secure = sum(v.security == "secure" for v in policy.dnssec.values())
        rounds = f" = {run.seconds / rtt:.1f} round trips" if rtt else ""
        print(f"dns family, example.test (2 MX hosts), {args.rtt_ms:g} ms RTT, {label}: {run.seconds:.2f} s{rounds}; "
              f"{run.queries} DNS queries over UDP, {run.connections} TCP connection(s); "
              f"{secure}/{len(policy.dnssec)} RRsets DNSSEC-secure; MTA-STS policy fetched: {fetched}")
        if not fetched or secure != len(policy.dnssec):
            sys.exit("the reference zone did not come through the proxies intact: the figure is not comparable")


if __name__ == "__main__":
    main()
