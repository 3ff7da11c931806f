"""The shipped suite's verdicts against real Postfix and Dovecot, configuration by configuration.

The good configuration passes every check that runs; each weak configuration fails exactly the checks
that catch its one weakness, on exactly the endpoints that carry it, and nothing else. The table below
is the whole specification: a new check adds a row (an ID that no shipped check carries yet is ignored,
so a row may be written before its check lands). Lockout and active failover checks skip without their
opt-ins: Dovecot and Postfix have no account lockout of their own to prove, and there are no failover
hooks here, so the suite runs as a vendor's CI would by default.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.real.servers import CONFIGS, RealTarget
from tests.suite_runner import SuiteRun, run_suite

pytestmark = pytest.mark.real

ALL = ("mx", "submission", "submissions", "imap", "imaps")  # "every endpoint the check runs on"

# configuration -> {requirement ID -> services whose endpoints must fail it}; everything else must pass.
EXPECTED_FAILURES: dict[str, dict[str, tuple[str, ...]]] = {
    "good": {},
    "weak-tls": {"TLS-VER-01": ALL, "TLS-SUITE-02": ALL},
    "auth-before-tls": {"STARTTLS-AUTH-01": ("submission",)},
    "imap-cleartext": {"STARTTLS-IMAP-01": ("imap",)},
    # Postfix relays the plain foreign address but rejects the disguised forms as unknown virtual users
    # (550 5.1.1); its source route is the plain address (RFC 5321 4.1.1.3), so RELAY-FORMS-01 passes.
    "open-relay": {"RELAY-OPEN-01": ("mx",)},
    "expired-cert": {"CERT-EXPIRY-01": ALL},
    "wrong-name-cert": {"CERT-NAME-01": ALL},
}

# Every configuration is one node: FAIL-REDUNDANT-01 (a SHOULD in baseline, not a test of one endpoint) fails.
for _row in EXPECTED_FAILURES.values():
    _row.setdefault("FAIL-REDUNDANT-01", ("",))

# Families whose checks need an opt-in this tier does not give (see the module docstring).
OPT_IN_FAMILIES = {"lockout", "failover"}


@pytest.fixture(scope="session")
def suite_run(real_target: Callable[[str], RealTarget],
              tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], SuiteRun]:
    """Factory: the suite's run against a configuration, once per session."""
    runs: dict[str, SuiteRun] = {}

    def get(name: str) -> SuiteRun:
        if name not in runs:
            real = real_target(name)
            runs[name] = run_suite(real.path, Path(tmp_path_factory.mktemp(f"suite-{name}")))
        return runs[name]

    return get


def _service(case_name: str) -> str:
    """'test_x[submission@node1]' -> 'submission'."""
    return case_name.rsplit("[", 1)[-1].split("@", 1)[0] if "[" in case_name else ""


def test_table_names_every_configuration() -> None:
    assert set(EXPECTED_FAILURES) == set(CONFIGS)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_verdicts_match_the_configuration(suite_run: Callable[[str], SuiteRun], name: str) -> None:
    run = suite_run(name)
    assert run.cases, run.output[-3000:]
    shipped = {c.requirement for c in run.cases}
    expected = {rid: services for rid, services in EXPECTED_FAILURES[name].items() if rid in shipped}
    wrong = []
    for case in run.cases:
        if case.verdict == "skipped" and case.family in OPT_IN_FAMILIES:
            continue
        should_fail = _service(case.name) in expected.get(case.requirement, ())
        want = "fail" if should_fail else "pass"
        if case.verdict != want:
            wrong.append(f"{case.name}: expected {want}, got {case.verdict}: {case.reason}")
    assert not wrong, f"{name} ({CONFIGS[name].weakness or 'the good configuration'}):\n" + "\n".join(wrong)
    # every expected failure really happened on every endpoint it names
    for rid, services in expected.items():
        failing = {_service(c.name) for c in run.cases if c.requirement == rid and c.verdict == "fail"}
        ran = {_service(c.name) for c in run.cases if c.requirement == rid}
        assert failing == set(services) & ran, f"{name}: {rid} failed on {sorted(failing)}"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_exit_code_follows_the_verdicts(suite_run: Callable[[str], SuiteRun], name: str) -> None:
    """Under the default policy (fail on a failed MUST) only the good configuration exits 0."""
    run = suite_run(name)
    failed_musts = [c for c in run.with_verdict("fail") if c.level == "MUST"]
    assert (run.returncode != 0) == bool(failed_musts), run.output[-2000:]


def test_failure_messages_name_the_endpoint(suite_run: Callable[[str], SuiteRun]) -> None:
    for name in CONFIGS:
        for case in suite_run(name).with_verdict("fail"):
            assert "mx1.example.test" in case.reason or "@node1" in case.reason, (name, case.reason)


def test_no_secret_in_any_report(suite_run: Callable[[str], SuiteRun],
                                 real_target: Callable[[str], RealTarget],
                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    """Neither the console output nor the JUnit XML of any run carries a password (the suite logs in
    over real SASL and IMAP with them)."""
    runs = {name: suite_run(name) for name in CONFIGS}
    junit_files = list(tmp_path_factory.getbasetemp().glob("suite-*/suite-*.xml"))
    assert len(junit_files) >= len(CONFIGS)
    for name, run in runs.items():
        for account in real_target(name).servers.accounts.values():
            assert account.password not in run.output
            for path in junit_files:
                assert account.password not in path.read_text(encoding="utf-8"), path
