"""The dns family's verdicts against a real DNS: Knot DNS signing the rig's mail domain, Unbound validating
it from the lab trust anchor, nginx serving its MTA-STS policy, the MX being the real Postfix of the good
configuration.

One Knot and one Unbound for the module; each zone variant is a reload of the zone (not a restart), then
the shipped dns checks run as a vendor's CI runs them. The good zone passes every dns check; each variant
fails exactly the checks in ``EXPECTED``. Unbound is asked to agree: it answers the good zone with AD and
refuses the unsigned and expired ones (SERVFAIL), so the variants are what a real validator sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.real.daemon import missing
from tests.real.dns_rig import VARIANTS, DnsRig
from tests.real.knot import BINARIES as KNOT
from tests.real.nginx import BINARIES as NGINX
from tests.real.servers import RealTarget
from tests.real.unbound import BINARIES as UNBOUND
from tests.suite_runner import SuiteRun, run_suite

pytestmark = [pytest.mark.real,
              pytest.mark.skipif(bool(missing(*KNOT, *UNBOUND, *NGINX)),
                                 reason="Knot, Unbound or nginx not installed: run ci/install-real-servers.sh")]

DNSSEC = ("DNS-DNSSEC-01", "DNS-DNSSEC-02", "DNS-DANE-01")   # an unproven zone leaves its TLSA unproven too
EXPECTED: dict[str, tuple[str, ...]] = {
    "good": (),
    "unsigned": DNSSEC,
    "expired-signatures": DNSSEC,
    "tlsa-old-key": ("DNS-DANE-02",),
    "spf-over-limit": ("DNS-SPF-01",),
    "dmarc-none": ("DNS-DMARC-02",),
    "mta-sts-omits-mx": ("DNS-MTASTS-02",),
}
# The dns family alone (the other families' verdicts are test_real_verdicts.py's), without anyio's pytest
# plugin, which probes for trio at every start-up (1-2 s a run) and serves no check.
# The bsi profile: the one every dns check belongs to (TLS-RPT mailto-only is BSI TR-03108's alone).
ONLY_DNS = ("-k", "test_dns", "-p", "no:anyio", "--mail-profile", "bsi")


@pytest.fixture(scope="module")
def dns_rig(good_target: RealTarget) -> Iterator[DnsRig]:
    with DnsRig(good_target.servers) as rig:
        yield rig


@dataclass(frozen=True)
class VariantRun:
    suite: SuiteRun
    resolver_says: tuple[str, bool]   # (rcode, AD) of Unbound's own answer to the domain's MX


@pytest.fixture(scope="module")
def variant_runs(dns_rig: DnsRig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, VariantRun]:
    """The dns family's run against every variant, one after another (they share the one zone)."""
    target = dns_rig.write_target()
    runs = {}
    for name, variant in VARIANTS.items():
        dns_rig.serve(variant)
        says = _unbound_mx(dns_rig)
        runs[name] = VariantRun(run_suite(target, Path(tmp_path_factory.mktemp(f"dns-{name}")), extra=ONLY_DNS),
                                says)
    dns_rig.serve(VARIANTS["good"])
    return runs


def _unbound_mx(rig: DnsRig) -> tuple[str, bool]:
    assert rig.unbound is not None
    answer = dns.query.udp(dns.message.make_query(rig.domain, "MX", want_dnssec=True), rig.unbound.address,
                           port=rig.unbound.port, timeout=5)
    return dns.rcode.to_text(answer.rcode()), bool(answer.flags & dns.flags.AD)


def test_table_names_every_variant() -> None:
    assert set(EXPECTED) == set(VARIANTS)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_fails_exactly_its_checks(variant_runs: dict[str, VariantRun], name: str) -> None:
    run = variant_runs[name].suite
    judged = [c for c in run.cases if c.requirement.startswith("DNS-")]
    assert judged, run.output[-3000:]
    wrong = [f"{c.name}: expected {'fail' if c.requirement in EXPECTED[name] else 'pass'}, got {c.verdict}: "
             f"{c.reason}" for c in judged if c.verdict != ("fail" if c.requirement in EXPECTED[name] else "pass")]
    missing_ids = set(EXPECTED[name]) - {c.requirement for c in judged}
    assert not wrong and not missing_ids, (f"{name} ({VARIANTS[name].weakness or 'the good zone'}):\n"
                                           + "\n".join(wrong) + f"\nnever ran: {sorted(missing_ids)}")


def test_failures_name_the_domain_and_what_is_wrong(variant_runs: dict[str, VariantRun]) -> None:
    for name, run in variant_runs.items():
        for case in run.suite.with_verdict("fail"):
            assert "example.test" in case.reason, (name, case.reason)
    assert "every RRSIG has expired" in _reason(variant_runs["expired-signatures"], "DNS-DNSSEC-01")
    assert "leaf SPKI SHA-256" in _reason(variant_runs["tlsa-old-key"], "DNS-DANE-02")


def _reason(run: VariantRun, requirement: str) -> str:
    return next(c.reason for c in run.suite.cases if c.requirement == requirement)


@pytest.mark.parametrize(("name", "rcode", "authenticated"), [
    ("good", "NOERROR", True), ("unsigned", "SERVFAIL", False), ("expired-signatures", "SERVFAIL", False)])
def test_unbound_agrees_with_the_verdict(variant_runs: dict[str, VariantRun], name: str, rcode: str,
                                         authenticated: bool) -> None:
    """A real validator's opinion of each DNSSEC variant matches the suite's own validation."""
    assert variant_runs[name].resolver_says == (rcode, authenticated)
