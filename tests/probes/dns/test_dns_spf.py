"""SPF parsing and the recursive lookup count, against a loopback responder."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from conformance.probes.dns.records import lookup, policy_resolver
from conformance.probes.dns.spf import SpfReport, SpfSyntaxError, Term, evaluate_spf, is_spf, parse_spf
from conformance.reference.dns import DnsResponder

pytestmark = pytest.mark.unit


def test_parse_terms_and_qualifiers() -> None:
    terms = parse_spf("v=spf1 ip4:192.0.2.0/24 -include:_spf.example.test mx/24 redirect=other.test ~all")
    assert terms[0] == Term("+", "ip4", "192.0.2.0/24")
    assert terms[1] == Term("-", "include", "_spf.example.test")
    assert terms[2] == Term("+", "mx", "/24")
    assert [t.queries_dns for t in terms] == [False, True, True, True, False]


@pytest.mark.parametrize("text, error", [("v=spf10 -all", "v=spf1"), ("v=spf1 foo:bar -all", "unknown term"),
                                         ("v=spf1 redirect=a.test redirect=b.test", "more than once")])
def test_parse_errors_say_what(text: str, error: str) -> None:
    with pytest.raises(SpfSyntaxError, match=error):
        parse_spf(text)


def test_is_spf_needs_the_exact_version() -> None:
    assert is_spf("v=spf1") and is_spf("V=SPF1 -all") and not is_spf("v=spf1-all") and not is_spf("spf2.0/pra")


ZONE = {
    ("good.test", "TXT"): ['"v=spf1 mx include:inc.test -all"'],
    ("good.test", "MX"): ["10 mx.good.test."],
    ("inc.test", "TXT"): ['"v=spf1 a:mx.good.test ip4:192.0.2.1 ~all"'],
    ("mx.good.test", "A"): ["192.0.2.1"],
    ("void.test", "TXT"): ['"v=spf1 a:nx1.test a:nx2.test exists:nx3.test -all"'],
    ("redir.test", "TXT"): ['"v=spf1 redirect=good.test"'],
    ("noinc.test", "TXT"): ['"v=spf1 include:gone.test -all"'],
    ("macro.test", "TXT"): ['"v=spf1 exists:%{i}.rbl.test -all"'],
    ("loop.test", "TXT"): ['"v=spf1 include:loop.test -all"'],
    ("broken.test", "TXT"): ['"v=spf1 a:x.test"'],
}


@pytest.fixture(scope="module")
def responder() -> Iterator[DnsResponder]:
    with DnsResponder(ZONE) as server:
        server.servfail.add("x.test.")
        yield server
        server.check_errors()


def spf(responder: DnsResponder, domain: str) -> SpfReport:
    async def run() -> SpfReport:
        resolver = policy_resolver(responder.address, 2)
        return await evaluate_spf(resolver, domain, await lookup(resolver, domain, "TXT"))
    return asyncio.run(run())


def test_counts_through_includes_and_keeps_the_final_qualifier(responder: DnsResponder) -> None:
    report = spf(responder, "good.test")
    assert (report.lookups, report.voids, report.all_qualifier, report.problems) == (3, 0, "-", ())


def test_more_than_two_void_lookups_is_a_permerror(responder: DnsResponder) -> None:
    report = spf(responder, "void.test")
    assert report.voids == 3 and "3 void lookups" in report.problems[0]


def test_redirect_counts_and_the_target_decides_the_qualifier(responder: DnsResponder) -> None:
    report = spf(responder, "redir.test")
    assert report.lookups == 4 and report.all_qualifier == "-" and not report.problems


def test_an_include_without_spf_is_named(responder: DnsResponder) -> None:
    assert "gone.test has 0 SPF records" in spf(responder, "noinc.test").problems[0]


def test_macros_are_counted_not_resolved(responder: DnsResponder) -> None:
    report = spf(responder, "macro.test")
    assert report.lookups == 1 and report.voids == 0 and any("macro" in n for n in report.notes)


def test_an_include_loop_stops_at_the_limit(responder: DnsResponder) -> None:
    report = spf(responder, "loop.test")
    assert report.lookups == 11 and "more than 10" in report.problems[0]


def test_servfail_inside_the_walk_is_unresolved_not_a_finding(responder: DnsResponder) -> None:
    report = spf(responder, "broken.test")
    assert report.unresolved is not None and "SERVFAIL" in report.unresolved and not report.problems
