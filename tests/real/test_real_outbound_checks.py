"""The shipped outbound family against real Postfix senders (tests/real/sender_suite.py): the good sender
(``dane``, OpenDKIM) passes every outbound check but the bsi profile's OUT-STS-03 (it accepts a wildcard
certificate on the policy host); ``smtp_tls_security_level = may`` fails exactly the DANE
checks; a sender without its MTA-STS policy daemon fails exactly OUT-STS-01 (what Postfix really does: with
no policy, ``dane`` without TLSA records is opportunistic, so the MX host outside the policy gets the mail;
it passes OUT-STS-02, as testing mode asks no more than delivery); a sender without its DKIM milter fails
exactly the DKIM check. At an MX host whose handshake fails after STARTTLS's 220, every sender (no DANE or
MTA-STS policy there) goes on in plaintext, which RFC 7435 allows: OUT-OPPORTUNISTIC-01 records it as evidence.
The suite runs go side by side, each against its own lab, so the module takes about
one outbound window.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conformance.requirements import CATALOGUE
from tests.real.sender_rig import SENDER_CONFIGS, unavailable_reason
from tests.real.sender_suite import plan_labs, sender_stack, write_target
from tests.real.servers import unavailable_reason as servers_unavailable
from tests.suite_runner import SuiteRun, run_suite

pytestmark = pytest.mark.real

OUTBOUND = sorted(rid for rid, r in CATALOGUE.items() if r.family == "outbound")
# The senders this module runs, and the outbound checks each must fail (every other one must pass).
EXPECTED_FAILS: dict[str, set[str]] = {
    "good": set(),
    "dane-off": {"OUT-DANE-01", "OUT-DANE-02"},   # TLSA ignored: mismatch and no-STARTTLS MX hosts get mail
    "no-mta-sts": {"OUT-STS-01"},   # no policy daemon: the MX host outside the enforce policy gets mail
    "no-dkim": {"OUT-DKIM-01"},
    "postfix-defaults": {"OUT-HELLO-01", "OUT-SNI-01"},   # TLS 1.0/1.1 and anonymous suites offered, no SNI
}
# Postfix sends no TLS-RPT reports (no tlsrpt_send hook to give): the check says so and skips
SKIPPED = {"OUT-TLSRPT-01"}
# The good sender also runs in the bsi profile (no extra run): postfix-mta-sts-resolver accepts a policy whose
# host serves a wildcard certificate, as RFC 8461 allows, so the MX host outside that policy gets nothing and
# OUT-STS-03 fails. The other senders run in the baseline profile, where that check is skipped.
BSI_PROFILE = {"good"}
EXPECTED_FAILS["good"] = {"OUT-STS-03"}
BSI_ONLY = {rid for rid in OUTBOUND if CATALOGUE[rid].profiles == ("bsi",)}
CONFIGS = [c for c in SENDER_CONFIGS if c.name in EXPECTED_FAILS]
# The outbound family alone, without anyio's pytest plugin (it probes for trio at every start-up, 1-2 s a run,
# and serves no check).
ONLY_OUTBOUND = ("-k", "test_outbound", "-p", "no:anyio")


@pytest.fixture(scope="module")
def suite_runs() -> Iterator[dict[str, SuiteRun]]:
    reason = servers_unavailable() or unavailable_reason()
    if reason:
        pytest.skip(reason)
    if not OUTBOUND:
        pytest.skip("the catalogue has no outbound requirements yet")
    workdir = Path(tempfile.mkdtemp(prefix="mailconform-sender-suite-"))
    workdir.chmod(0o755)  # Postfix's processes run as postfix and must traverse it
    try:
        labs = plan_labs(workdir, CONFIGS)
        with sender_stack(workdir, CONFIGS, labs) as stack:
            targets = {name: write_target(stack, lab, workdir / f"target-{name}.toml") for name, lab in labs.items()}
            with ThreadPoolExecutor(max_workers=len(targets)) as pool:
                runs = dict(zip(targets, pool.map(
                    lambda name: run_suite(targets[name], workdir, extra=_extra(name), timeout=180),
                    targets), strict=True))
            yield runs
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _extra(config: str) -> tuple[str, ...]:
    return (*ONLY_OUTBOUND, "--mail-profile", "bsi") if config in BSI_PROFILE else ONLY_OUTBOUND


@pytest.mark.parametrize("config", list(EXPECTED_FAILS))
def test_outbound_verdicts(suite_runs: dict[str, SuiteRun], config: str) -> None:
    run = suite_runs[config]
    judged = {c.requirement: c.verdict for c in run.cases if c.requirement in OUTBOUND}
    assert set(judged) == set(OUTBOUND), f"{config}: not run: {sorted(set(OUTBOUND) - set(judged))}\n{run.output[-2000:]}"
    skipped = SKIPPED if config in BSI_PROFILE else SKIPPED | BSI_ONLY
    expected = {rid: "skipped" if rid in skipped else "fail" if rid in EXPECTED_FAILS[config] else "pass"
                for rid in OUTBOUND}
    assert judged == expected, f"{config}:\n{run.describe()}"


# What Postfix does at an MX host that answers STARTTLS with 220 and fails the handshake, with no DANE or MTA-STS
# policy (OUT-OPPORTUNISTIC-01's evidence, no verdict: RFC 7435 allows cleartext or deferral).
AFTER_FAILED_HANDSHAKE = "delivered in plaintext"


@pytest.mark.parametrize("config", list(EXPECTED_FAILS))
def test_what_postfix_does_after_a_failed_handshake(suite_runs: dict[str, SuiteRun], config: str) -> None:
    (case,) = [c for c in suite_runs[config].cases if c.requirement == "OUT-OPPORTUNISTIC-01"]
    evidence = dict(case.evidence)
    assert AFTER_FAILED_HANDSHAKE in evidence.get("after_failed_handshake", ""), f"{config}: {evidence}"
