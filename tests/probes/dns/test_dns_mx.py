"""MX resolution against the reference gateway's loopback DNS responder (real UDP, dnspython)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from conformance.probes.dns.mx import (
    MX_QUERIES_AT_ONCE,
    attempt_from_plain,
    attempt_to_plain,
    expand_target,
    parse_resolver,
    resolve_mx_sync,
    resolve_targets,
    with_mx_endpoints,
)
from conformance.probes.wire.outcome import Outcome
from conformance.reference.dns import DnsResponder
from conformance.target import load_target

pytestmark = pytest.mark.unit

HOSTS = {"mx1.example.test": "127.0.0.1", "mx2.example.test": "127.0.0.1"}


@pytest.fixture
def responder() -> Iterator[DnsResponder]:
    with DnsResponder.for_domain("example.test", HOSTS) as server:
        yield server
        server.check_errors()


def test_mx_set_in_preference_order(responder: DnsResponder) -> None:
    found = resolve_mx_sync("example.test", responder.address, timeout=2)
    assert found.outcome is Outcome.COMPLETED and found.result is not None
    assert found.result.names == ("mx1.example.test", "mx2.example.test")
    assert [h.preference for h in found.result.hosts] == [10, 20]
    assert all(h.addresses == ("127.0.0.1",) for h in found.result.hosts)
    assert ("example.test.", "MX") in responder.queries
    assert any("MX 20 mx2.example.test -> 127.0.0.1" in line for line in found.transcript)


def test_nxdomain_is_a_result_not_an_error(responder: DnsResponder) -> None:
    found = resolve_mx_sync("unknown.test", responder.address, timeout=2)
    assert found.outcome is Outcome.COMPLETED and found.result is not None
    assert found.result.nxdomain and found.result.hosts == ()


def test_no_mx_falls_back_to_the_implicit_mx(responder: DnsResponder) -> None:
    found = resolve_mx_sync("mx1.example.test", responder.address, timeout=2)
    assert found.result is not None and found.result.implicit and found.result.names == ("mx1.example.test",)


def test_null_mx() -> None:
    with DnsResponder({("nomail.test", "MX"): ["0 ."]}) as server:
        found = resolve_mx_sync("nomail.test", server.address, timeout=2)
    assert found.result is not None and found.result.null_mx and found.result.hosts == ()


def test_silent_resolver_is_inconclusive_not_a_traceback() -> None:
    with DnsResponder({}) as server:
        address = server.address
    found = resolve_mx_sync("example.test", address, timeout=0.5)  # stopped: nobody answers
    assert found.outcome is Outcome.INCONCLUSIVE and "example.test" in found.reason


def test_bad_resolver_spec_is_a_local_error() -> None:
    found = resolve_mx_sync("example.test", "dns.example.net:53")
    assert found.outcome is Outcome.LOCAL_ERROR and "expected an IP address" in found.reason


@pytest.mark.parametrize("spec, expected", [
    ("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("::1", ("::1", 53)), ("[::1]:5353", ("::1", 5353)),
])
def test_parse_resolver(spec: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(spec) == expected


def test_responder_answers_garbage_with_silence_and_keeps_serving(responder: DnsResponder) -> None:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"not dns", ("127.0.0.1", responder.port))
    query = dns.message.make_query("example.test", "MX")
    response = dns.message.from_wire(responder.answer(query.to_wire()))
    assert response.rcode() == dns.rcode.NOERROR and response.answer
    assert resolve_mx_sync("example.test", responder.address, timeout=2).ok


def _target(tmp_path: Path, resolver: str, hosts: tuple[str, ...]) -> Path:
    nodes = "".join(f'[[node]]\nname="n{i}"\nhost="{h}"\naddress="127.0.0.1"\nservices={{mx=2525}}\n'
                    for i, h in enumerate(hosts, 1))
    path = tmp_path / "t.toml"
    path.write_text(f'[target]\ndomain="example.test"\nresolver="{resolver}"\ntimeout=2\n{nodes}')
    return path


def test_mx_hosts_that_are_nodes_keep_their_endpoints(responder: DnsResponder, tmp_path: Path) -> None:
    target = load_target(_target(tmp_path, responder.address, ("mx1.example.test", "MX2.example.test")))
    expanded, found = expand_target(target)
    assert found is not None and found.ok
    assert expanded is target


def test_an_mx_host_that_is_not_a_node_becomes_an_endpoint(responder: DnsResponder, tmp_path: Path) -> None:
    target = load_target(_target(tmp_path, responder.address, ("mx1.example.test",)))
    expanded, found = expand_target(target)
    assert [e.id for e in expanded.endpoints] == ["mx@n1", "mx@mx2.example.test"]
    extra = expanded.endpoints[-1]
    assert (extra.host, extra.port, extra.address) == ("mx2.example.test", 25, "127.0.0.1")
    assert expanded.node("mx2.example.test").host == "mx2.example.test"
    assert found is not None and with_mx_endpoints(expanded, found.result) is expanded  # type: ignore[arg-type]


def test_dns_failure_leaves_the_target_unchanged(tmp_path: Path) -> None:
    with DnsResponder({}) as server:
        address = server.address
    target = load_target(_target(tmp_path, address, ("mx1.example.test",)))
    target = type(target)(**{**target.__dict__, "timeout": 0.5})
    expanded, found = expand_target(target)
    assert expanded is target and found is not None and found.outcome is Outcome.INCONCLUSIVE


class _AnswersOnlyWhenAllAsked:
    """A resolver that answers no MX query until it holds one for every domain: sequential resolution
    times out on the first domain; resolution of all of them at once is answered."""

    def __init__(self, domains: set[str]) -> None:
        self.waiting_for = set(domains)
        self.held: list[tuple[dns.message.Message, tuple[str, int]]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            question = query.question[0]
            if question.rdtype == dns.rdatatype.MX and self.waiting_for:
                self.waiting_for.discard(question.name.to_text().rstrip("."))
                self.held.append((query, peer))
                if self.waiting_for:
                    continue
                for held, held_peer in self.held:
                    self._answer(held, held_peer)
                continue
            self._answer(query, peer)

    def _answer(self, query: dns.message.Message, peer: tuple[str, int]) -> None:
        question = query.question[0]
        name = question.name.to_text()
        response = dns.message.make_response(query)
        if question.rdtype == dns.rdatatype.MX:
            response.answer.append(dns.rrset.from_text(name, 60, "IN", "MX", f"10 mx.{name}"))
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "127.0.0.1"))
        self.sock.sendto(response.to_wire(), peer)


def test_a_fleets_domains_are_resolved_at_once(tmp_path: Path) -> None:
    domains = {f"org{i}.test" for i in range(40)}  # more than the queries allowed at once
    with _AnswersOnlyWhenAllAsked(set(sorted(domains)[:MX_QUERIES_AT_ONCE])) as server:
        targets = []
        for domain in sorted(domains):
            path = tmp_path / f"{domain}.toml"
            path.write_text(f'[target]\nname="{domain}"\ndomain="{domain}"\nresolver="{server.address}"\ntimeout=3\n'
                            f'[[node]]\nname="n1"\nhost="mx.{domain}"\naddress="127.0.0.1"\nservices={{mx=2525}}\n')
            targets.append(load_target(path))
        found = resolve_targets(targets, lambda t: t.timeout)
    assert sorted(found) == sorted(domains)
    assert all(f.ok and f.result is not None and f.result.names == (f"mx.{name}",) for name, f in found.items()), \
        {name: f.reason for name, f in found.items() if not f.ok}


def test_an_mx_resolution_survives_the_trip_to_a_worker(responder: DnsResponder) -> None:
    for found in (resolve_mx_sync("example.test", responder.address, timeout=2),
                  resolve_mx_sync("nomail.test", "127.0.0.1:1", timeout=0.5)):
        assert attempt_from_plain(attempt_to_plain(found)) == found
