"""The test account is checked first: a wrong password in the target file is the operator's typo, so every
check that needs the account's credentials is inconclusive with one reason naming accounts.test, and nothing
fails as if the product had refused a good login."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.reference.gateway import Gateway
from tests.suite_runner import ALL_OPT_INS, run_suite

pytestmark = pytest.mark.reference

# Every check that logs the test account in (AUTH-* through the auth posture probe, spoofing, smuggling on
# submission, the active failover checks, and LOCK-COLLATERAL-01, which logs it in while the lockout
# account is locked).
NEEDS_THE_TEST_ACCOUNT = {"AUTH-MECH-01", "AUTH-WRONG-01", "AUTH-ANON-01", "RELAY-SPOOF-01", "SMUGGLE-01",
                          "FAIL-TEMP-01", "FAIL-AUTHDOWN-01", "FAIL-DIR-01", "FAIL-DATA-01", "FAIL-NOLOSS-01",
                          "FAIL-SHUTDOWN-01", "FAIL-RECOVER-01", "LOCK-COLLATERAL-01"}


def test_wrong_test_password_gives_no_fail_and_one_reason(tmp_path: Path) -> None:
    with Gateway(workdir=tmp_path) as gateway:
        target = gateway.write_target(tmp_path / "target.toml")
        (tmp_path / "test.password").write_text("not-alices-password\n")
        run = run_suite(target, tmp_path, extra=ALL_OPT_INS)
        gateway.check_errors()
    assert not run.with_verdict("fail"), run.describe()
    inconclusive = run.with_verdict("inconclusive")
    assert inconclusive, run.output[-2000:]
    assert all("the test account does not log in (535 " in c.reason and c.reason.endswith("check accounts.test")
               for c in inconclusive), run.describe()
    assert {c.requirement for c in inconclusive} <= NEEDS_THE_TEST_ACCOUNT
    assert {"AUTH-MECH-01", "RELAY-SPOOF-01", "SMUGGLE-01"} <= {c.requirement for c in inconclusive}
    said = [line for line in run.output.splitlines() if "the test account does not log in" in line
            and line.startswith("mailconform: ")]
    assert len(said) == 1, run.output[-3000:]
