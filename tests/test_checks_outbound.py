"""The outbound family against the reference gateway, beyond its flaws (tests/test_flaws.py): no evidence is
never a pass, and a gateway that cannot be made to send is inconclusive in its own words. (Without an
[outbound] section the family is skipped and says so: tests/test_flaws.py's xdist run.)"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.reference.gateway import Gateway
from conformance.requirements import CATALOGUE
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
