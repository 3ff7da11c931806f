"""The outbound family against the reference gateway, beyond its flaws (tests/test_flaws.py): no evidence is
never a pass, and a gateway that cannot be made to send is inconclusive in its own words. (Without an
[outbound] section the family is skipped and says so: tests/test_flaws.py's xdist run.)"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import conformance.checks.test_outbound as outbound_checks
from conformance.evidence import Evidence
from conformance.probes.outbound.dsn import Dsn, DsnRead, read_dsns
from conformance.probes.outbound.lab import LabReport, ScenarioResult, Sent
from conformance.probes.outbound.mx import Arrival
from conformance.probes.outbound.scenarios import BY_NAME
from conformance.probes.wire.config import ProbeConfig
from conformance.reference.gateway import Gateway
from conformance.requirements import CATALOGUE
from conformance.target import Account, Secret, load_target
from tests.suite_runner import SuiteRun, run_suite

pytestmark = pytest.mark.reference

ONLY_OUTBOUND = ("-k", "test_outbound")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(workdir=tmp_path_factory.mktemp("gw")) as gw:
        yield gw


def _run(gateway: Gateway, workdir: Path, send_hook: list[str]) -> SuiteRun:
    target = gateway.write_target(workdir / "target.toml", outbound=True)
    target.write_text(target.read_text() + f"send = {json.dumps(send_hook)}\n")
    return run_suite(target, workdir, extra=ONLY_OUTBOUND)


def test_a_gateway_that_never_delivers_passes_nothing(gateway: Gateway, tmp_path: Path) -> None:
    """The send hook 'succeeds' and nothing is ever sent: DANE and MTA-STS fail on their positive controls,
    everything else is inconclusive (no arrival is no evidence), nothing passes."""
    run = _run(gateway, tmp_path, [sys.executable, "-c", "pass"])
    verdicts = {c.requirement: c.verdict for c in run.cases}
    outbound = {rid for rid, r in CATALOGUE.items() if r.family == "outbound"}
    assert verdicts.keys() == outbound and not run.with_verdict("pass"), run.describe()
    assert run.failing_requirements == {"OUT-DANE-01", "OUT-STS-01"}, run.describe()
    for case, control in zip(run.with_verdict("fail"), ("dane-match", "sts-enforce"), strict=True):
        assert "delivered nothing" in case.reason and f"@{control}.outbound.test" in case.reason
    assert all("within" in c.reason or "arrived" in c.reason for c in run.with_verdict("inconclusive")), run.describe()


def test_a_send_hook_that_fails_is_inconclusive_in_its_own_words(gateway: Gateway, tmp_path: Path) -> None:
    run = _run(gateway, tmp_path, [sys.executable, "-c", "import sys; print('queue is full'); sys.exit(3)"])
    assert not run.with_verdict("pass") and not run.with_verdict("fail"), run.describe()
    reasons = {c.reason for c in run.with_verdict("inconclusive")}
    assert any("the send hook exited 3: queue is full" in r for r in reasons), run.describe()



def test_the_wildcard_check_is_inconclusive_for_a_sender_without_mta_sts(tmp_path: Path) -> None:
    """OUT-STS-03 (bsi): a sender that ignores MTA-STS delivers under the wildcard-served policy too, which
    proves nothing: inconclusive, naming the control that showed it."""
    with Gateway(("mta_sts_ignored",), workdir=tmp_path) as flawed:
        target = flawed.write_target(tmp_path / "target.toml", outbound=True)
        run = run_suite(target, tmp_path, extra=("--mail-profile", "bsi", "-k", "wildcard"))
    (case,) = [c for c in run.cases if c.requirement == "OUT-STS-03"]
    assert case.verdict == "inconclusive" and "does not apply MTA-STS" in case.reason, run.describe()


def _dsn_evidence(run: SuiteRun, requirement: str) -> dict[str, str]:
    (case,) = [c for c in run.cases if c.requirement == requirement]
    return {key: value for key, value in case.evidence if key.startswith("dsn")}


def test_the_gateways_delay_notices_are_evidence_and_change_no_verdict(gateway: Gateway, tmp_path: Path) -> None:
    """The reference sends the submitting account a delay DSN for every message DANE, DNSSEC or MTA-STS kept
    from an MX host; the refusing checks carry it. Without DSNs every verdict is the same, and says so."""
    target = gateway.write_target(tmp_path / "target.toml", outbound=True)
    with_dsns = run_suite(target, tmp_path, extra=ONLY_OUTBOUND)
    gateway.sender.mailbox = None    # the same gateway, silent about what it keeps
    try:
        without = run_suite(target, tmp_path, extra=ONLY_OUTBOUND)
    finally:
        gateway.sender.mailbox = gateway.store
    verdicts = {c.requirement: c.verdict for c in with_dsns.cases}
    assert {c.requirement: c.verdict for c in without.cases} == verdicts, without.describe()
    assert not with_dsns.with_verdict("fail") and not with_dsns.with_verdict("inconclusive"), with_dsns.describe()
    dane = _dsn_evidence(with_dsns, "OUT-DANE-01")
    assert dane.keys() == {"dsn.dane-mismatch"}, dane   # the delivered dane-match gets no line
    assert dane["dsn.dane-mismatch"].startswith("the gateway reported: Action: delayed; Status: 4.7.5; "
                                                "Diagnostic-Code: X-Mailconform-Reference; mx1.dane-mismatch"), dane
    assert "matches none of its DNSSEC-valid TLSA records" in dane["dsn.dane-mismatch"]
    sts = _dsn_evidence(with_dsns, "OUT-STS-01")
    assert "named by its MTA-STS policy" in sts["dsn.sts-outside"], sts
    assert "bogus" in _dsn_evidence(with_dsns, "OUT-DNSSEC-01")["dsn.dnssec-bogus"]
    silent = _dsn_evidence(without, "OUT-DANE-01")
    assert silent["dsn.dane-mismatch"].startswith("no DSN for it in the test account's mailbox"), silent


def _result(name: str, tls: bool) -> ScenarioResult:
    to = f"mc-0000beef@{name}.outbound.test"
    arrivals = (Arrival(name, f"mx1.{name}.outbound.test", "TLSv1.3", "TLS_AES_128_GCM_SHA256", None, None,
                        "alice@example.test", (to,), b""),) if tls else ()
    return ScenarioResult(BY_NAME[name], Sent(name, to, True, "DATA 250"), arrivals, 1, 3.0)


def test_a_dsn_saying_delivered_fails_a_must_not_deliver_scenario() -> None:
    """Nothing arrived at the mismatching MX host, yet the gateway reports the message relayed: it went
    elsewhere. A DSN saying "delayed" changes nothing."""
    results = {"dane-match": _result("dane-match", True), "dane-mismatch": _result("dane-mismatch", False),
               "dane-expired": _result("dane-expired", True)}
    relayed = Dsn("mc-0000beef@dane-mismatch.outbound.test", "relayed", "2.0.0", "smtp; 250 ok")
    report = LabReport("0000beef", 3.0, results, dsns=DsnRead("imaps@node1", (relayed,)))
    with pytest.raises(AssertionError, match="reported mc-0000beef@dane-mismatch.outbound.test as relayed"):
        outbound_checks.test_dane_enforced(report, Evidence())
    delayed = replace(relayed, action="delayed", status="4.7.5")
    evidence = Evidence()
    outbound_checks.test_dane_enforced(replace(report, dsns=DsnRead("imaps@node1", (delayed,))), evidence)
    assert evidence.items["dsn.dane-mismatch"].startswith("the gateway reported: Action: delayed; Status: 4.7.5")


def test_no_mailbox_login_is_said_in_the_evidence_not_raised(gateway: Gateway, tmp_path: Path) -> None:
    target = load_target(gateway.write_target(tmp_path / "target.toml"))
    (imaps,) = [e for e in target.endpoints_for("imaps") if e.node == "node1"]
    wrong = Account("test", "alice@example.test", Secret("not-her-password", "test"), "alice@example.test")
    read = read_dsns(imaps, ProbeConfig(timeout=5, trust_anchors=target.trust_anchors,
                                        secrets=("not-her-password",)), wrong, "0000beef")
    assert read.notices == () and "could not log in" in read.reason and "not-her-password" not in read.reason
