"""The lockout checks as a vendor's CI runs them (suite in a subprocess, verdicts from JUnit), against
the fake lockout server of tests/lockout_server.py: all pass when it is good, each lockout flaw makes
exactly its requirement fail, and the opt-in gates skip with a reason."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lockout_server import ACCOUNTS, LOCKOUT_FLAWS, LockoutServer, lockout_server
from suite_runner import ALL_OPT_INS, SuiteRun, run_suite

from conformance.reference.flaws import FLAWS

pytestmark = pytest.mark.unit

LOCKOUT_IDS = {"LOCK-THRESHOLD-01", "LOCK-CROSS-01", "LOCK-RECOVER-01", "LOCK-RESET-01", "LOCK-ORACLE-01",
               "LOCK-TEMPFAIL-01", "LOCK-OUTAGE-01", "LOCK-BURST-01", "LOCK-STALE-01", "LOCK-COLLATERAL-01"}
ONLY_LOCKOUT = ("-k", "test_lockout")


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LockoutServer]:
    flaws = getattr(request, "param", ())
    with lockout_server(tmp_path, flaws=frozenset(flaws)) as srv:
        yield srv


@pytest.fixture
def throttling_server(tmp_path: Path) -> Iterator[LockoutServer]:
    """No lock, but every wrong password answered 1.1 s late (Dovecot's way: auth_failure_delay)."""
    with lockout_server(tmp_path, threshold=2, throttle=1.1) as srv:
        yield srv


def suite(server: LockoutServer, tmp_path: Path, *opt_ins: str, **target: bool) -> SuiteRun:
    path = server.write_target(tmp_path / "target.toml", **target)
    return run_suite(path, tmp_path, extra=(*ONLY_LOCKOUT, *opt_ins), timeout=240)


def test_good_server_passes_every_lockout_check(server: LockoutServer, tmp_path: Path) -> None:
    result = suite(server, tmp_path, *ALL_OPT_INS)
    assert {c.requirement for c in result.with_verdict("pass")} == LOCKOUT_IDS, result.describe()
    xml = (tmp_path / "suite-target.xml").read_text()
    for password in ACCOUNTS.values():  # evidence and transcripts carry no password
        assert password not in xml and password not in result.output
    assert "evidence.unlock_seconds" in xml and "evidence.failure_answers" in xml
    assert "right after recovery from an auth outage" in xml  # the burst is the outage's aftermath
    # the lockout account is left unlocked, the auth backend up
    assert not (tmp_path / "auth-down").exists()
    assert all(until <= time.monotonic() for until in server.engine.locked_until.values())


@pytest.mark.parametrize("server", [(flaw,) for flaw in LOCKOUT_FLAWS], indirect=True,
                         ids=list(LOCKOUT_FLAWS))
def test_each_flaw_fails_exactly_its_check(server: LockoutServer, tmp_path: Path) -> None:
    (flaw,) = server.engine.flaws
    result = suite(server, tmp_path, *ALL_OPT_INS)
    assert result.failing_requirements == set(FLAWS[flaw].fails), result.describe()
    assert not result.with_verdict("inconclusive"), result.describe()  # what cannot be judged is skipped
    failing = result.with_verdict("fail")
    assert all(c.reason for c in failing)  # the message alone tells the operator what is wrong


def test_without_opt_in_every_check_is_skipped_with_the_reason(server: LockoutServer, tmp_path: Path) -> None:
    result = suite(server, tmp_path)
    assert {c.verdict for c in result.cases} == {"skipped"}, result.describe()
    assert all("--mail-allow-lockout" in c.reason for c in result.cases)
    assert server.engine.log == []  # not one login was made


def test_without_lockout_account_nothing_is_attacked(server: LockoutServer, tmp_path: Path) -> None:
    result = suite(server, tmp_path, *ALL_OPT_INS, lockout_account=False)
    assert {c.verdict for c in result.cases} == {"skipped"}, result.describe()
    assert all("accounts.lockout" in c.reason for c in result.cases)
    assert server.engine.log == []


def test_outage_check_needs_disruption_opt_in_and_hooks(server: LockoutServer, tmp_path: Path) -> None:
    result = suite(server, tmp_path, "--mail-allow-lockout", hooks=False)
    outage = next(c for c in result.cases if c.requirement == "LOCK-OUTAGE-01")
    assert outage.verdict == "skipped" and "--mail-allow-disruption" in outage.reason
    assert result.failing_requirements == set()
    result = suite(server, tmp_path, *ALL_OPT_INS, hooks=False)
    outage = next(c for c in result.cases if c.requirement == "LOCK-OUTAGE-01")
    assert outage.verdict == "skipped" and "outage hooks" in outage.reason


def test_throttling_meets_the_threshold_and_leaves_lock_checks_inconclusive(throttling_server: LockoutServer,
                                                                          tmp_path: Path) -> None:
    result = suite(throttling_server, tmp_path, "--mail-allow-lockout")
    verdicts = {c.requirement: c.verdict for c in result.cases}
    assert verdicts == {
        "LOCK-THRESHOLD-01": "pass", "LOCK-RESET-01": "pass", "LOCK-ORACLE-01": "pass", "LOCK-BURST-01": "pass",
        "LOCK-STALE-01": "pass", "LOCK-OUTAGE-01": "skipped",
        "LOCK-CROSS-01": "skipped", "LOCK-RECOVER-01": "skipped", "LOCK-TEMPFAIL-01": "skipped",
        "LOCK-COLLATERAL-01": "skipped"}, result.describe(("fail", "inconclusive", "skipped"))
    recover = next(c for c in result.cases if c.requirement == "LOCK-RECOVER-01")
    assert "throttles failures instead" in recover.reason


def test_a_lock_that_shows_in_the_answer_time_fails_the_oracle(tmp_path: Path) -> None:
    # locked answers for a real account come 0.4 s late: a 3 s lock outlasts the three of them
    with lockout_server(tmp_path, flaws=frozenset({"lock_timing_oracle"}), duration=3.0) as server:
        result = suite(server, tmp_path, "--mail-allow-lockout")
    assert result.failing_requirements == {"LOCK-ORACLE-01"}, result.describe()
    oracle = next(c for c in result.cases if c.requirement == "LOCK-ORACLE-01")
    assert "timing of the lock" in oracle.reason
