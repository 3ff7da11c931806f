"""The mail domain's records, looked up concurrently against loopback responders (real UDP and TCP)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.message
import pytest

from conformance.probes.dns.records import Status, domain_queries, probe_domain_sync
from conformance.probes.wire.outcome import Outcome
from conformance.reference.dns import DnsResponder

pytestmark = pytest.mark.unit

RECORDS = {
    ("example.test", "MX"): ["10 mx1.example.test.", "20 mx2.example.test."],
    ("example.test", "TXT"): ['"v=spf1 mx -all"'],
    ("mx1.example.test", "A"): ["127.0.0.1"],
    ("mx2.example.test", "CNAME"): ["mx1.example.test."],
    ("_dmarc.example.test", "TXT"): ['"v=DMARC1; " "p=reject"'],
}


@pytest.fixture
def responder() -> Iterator[DnsResponder]:
    with DnsResponder(RECORDS) as server:
        yield server
        server.check_errors()


def test_answers_nxdomain_and_nodata_are_told_apart(responder: DnsResponder) -> None:
    found = probe_domain_sync("example.test", responder.address, selectors=("mail",), timeout=2)
    assert found.outcome is Outcome.COMPLETED and found.result is not None
    records = found.result
    assert records.mx_hosts == ("mx1.example.test", "mx2.example.test")
    assert records.get("_dmarc.example.test", "TXT").texts == ("v=DMARC1; p=reject",)  # chunks joined
    assert records.get("mail._domainkey.example.test", "TXT").status is Status.NXDOMAIN
    assert records.get("mx1.example.test", "AAAA").status is Status.NODATA
    assert records.get("example.test", "TXT").texts == ("v=spf1 mx -all",)
    assert any("NXDOMAIN (the name does not exist)" in line for line in found.transcript)


def test_an_alias_is_followed_and_named(responder: DnsResponder) -> None:
    records = probe_domain_sync("example.test", responder.address, timeout=2).result
    assert records is not None
    mx2 = records.get("mx2.example.test", "A")
    assert mx2.status is Status.ANSWER and mx2.cname == "mx1.example.test" and mx2.texts == ("127.0.0.1",)
    assert "alias of mx1.example.test" in mx2.describe()


def test_servfail_is_a_status_in_words(responder: DnsResponder) -> None:
    responder.servfail.add("_dmarc.example.test.")
    records = probe_domain_sync("example.test", responder.address, timeout=2).result
    assert records is not None
    dmarc = records.get("_dmarc.example.test", "TXT")
    assert dmarc.status is Status.SERVFAIL and not dmarc.decisive and "SERVFAIL" in dmarc.reason
    assert "Error" not in dmarc.describe().split(":")[0]


def test_a_silent_resolver_times_out_within_the_budget() -> None:
    with DnsResponder({}) as server:
        address = server.address
    found = probe_domain_sync("example.test", address, timeout=0.5)  # stopped: nobody answers
    assert found.outcome is Outcome.COMPLETED and found.result is not None
    mx = found.result.get("example.test", "MX")
    assert mx.status is Status.TIMEOUT and "seconds" in mx.reason, mx.reason


def test_a_truncated_answer_is_fetched_again_over_tcp() -> None:
    chunks = " ".join(f'"{"k" * 250}"' for _ in range(12))  # 3000 bytes: more than the 1232-byte UDP size
    with DnsResponder({("big.test", "TXT"): [chunks]}) as server:
        records = probe_domain_sync("big.test", server.address, timeout=2).result
        server.check_errors()
    assert records is not None
    big = records.get("big.test", "TXT")
    assert big.status is Status.ANSWER and len(big.texts[0]) == 3000


def test_bad_resolver_spec_is_a_local_error() -> None:
    found = probe_domain_sync("example.test", "dns.example.net")
    assert found.outcome is Outcome.LOCAL_ERROR and "expected an IP address" in found.reason


class _Gathering:
    """Answers nothing until every first-round query has arrived: a probe asking one at a time times out."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        held: list[tuple[bytes, tuple[str, int]]] = []
        while len(held) < self.expected:
            try:
                held.append(self.sock.recvfrom(4096))
            except OSError:
                return
        for data, peer in held:
            self._answer(data, peer)
        self.sock.settimeout(0.3)
        while True:  # the second round (the implicit MX's addresses) is answered at once
            try:
                self._answer(*self.sock.recvfrom(4096))
            except OSError:
                return

    def _answer(self, data: bytes, peer: tuple[str, int]) -> None:
        self.sock.sendto(dns.message.make_response(dns.message.from_wire(data)).to_wire(), peer)


def test_the_first_round_is_issued_concurrently() -> None:
    server = _Gathering(len(domain_queries("example.test", ())))
    server.thread.start()
    try:
        records = probe_domain_sync("example.test", f"127.0.0.1:{server.sock.getsockname()[1]}", timeout=2).result
    finally:
        server.sock.close()
        server.thread.join(5)
    assert records is not None
    assert all(lk.status is Status.NODATA for lk in records.lookups.values()), records.lookups
