"""Every check can fail: the reference gateway with one deliberate flaw on makes exactly the checks
that flaw declares (``FlawInfo.fails``) fail, with a message that names the endpoint, and nothing else.

Passive flaws run the suite without the active opt-ins (lockout and failover checks then skip), so a
flaw test costs seconds; lockout and failover flaws run with their family's opt-in switched on.
The good gateway is run once with every opt-in: everything that runs must pass.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.reference.flaws import FLAWS, FlawInfo
from conformance.reference.gateway import Gateway
from tests.suite_runner import ALL_OPT_INS, SuiteRun, run_suite

pytestmark = pytest.mark.reference

OPT_INS = {"lockout": ("--mail-allow-lockout",), "failover": ("--mail-allow-disruption",)}


def _run_with(flaws: tuple[str, ...], workdir: Path, extra: tuple[str, ...], *, outbound: bool = False) -> SuiteRun:
    """``outbound``: the target gets an [outbound] section (the outbound family runs, about one window)."""
    with Gateway(flaws, workdir=workdir) as gateway:
        target = gateway.write_target(workdir / "target.toml", outbound=outbound)
        run = run_suite(target, workdir, extra=extra)
        gateway.check_errors()
    return run


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuiteRun]:
    yield _run_with((), tmp_path_factory.mktemp("good"), ALL_OPT_INS, outbound=True)


def test_good_gateway_passes_everything(good_run: SuiteRun) -> None:
    assert good_run.cases, good_run.output[-2000:]
    not_passing = [c for c in good_run.cases if c.verdict in ("fail", "inconclusive")]
    assert not not_passing, "the good reference gateway must pass every check:\n" + good_run.describe()
    assert good_run.returncode == 0, good_run.output[-2000:]


def test_good_gateway_runs_every_requirement(good_run: SuiteRun) -> None:
    """With every opt-in on, no check of the catalogue is left without a passing case."""
    from conformance.requirements import CATALOGUE

    passed = {c.requirement for c in good_run.with_verdict("pass")}
    in_baseline = {rid for rid, r in CATALOGUE.items() if r.level_in("baseline")}
    assert in_baseline - passed == set(), good_run.describe(("skipped",))


def test_good_gateway_passes_the_bsi_only_checks(tmp_path: Path) -> None:
    """Requirements of the bsi profile alone are skipped in the baseline run above: run them in their profile."""
    from conformance.requirements import CATALOGUE

    bsi_only = {rid for rid, r in CATALOGUE.items() if r.profiles == ("bsi",)}
    run = _run_with((), tmp_path, ("--mail-profile", "bsi", "-k", "tlsrpt or wildcard"), outbound=True)
    assert bsi_only <= {c.requirement for c in run.with_verdict("pass")}, run.describe()


# Proven failing elsewhere, against a real stack the reference's OpenSSL cannot imitate.
FAILS_OUTSIDE_THE_REFERENCE = {
    "TLS-RENEG-01": "tests/test_checks_tls_legacy.py: a tlslite-ng server that ignores RFC 5746",
    "TLS-COMP-01": "no TLS stack available here compresses (OpenSSL 3 is built without zlib, tlslite-ng has "
                   "no compression); the prober's detection is unit-tested on wire bytes",
}
FAILS_OUTSIDE_THE_REFERENCE["TLS-FALLBACK-01"] = (
    "tests/test_checks_tls_posture.py: OpenSSL always honours TLS_FALLBACK_SCSV; a tlslite-ng server that never sees it")
FAILS_OUTSIDE_THE_REFERENCE["TLS-TRUNC-01"] = (
    "tests/test_checks_tls_posture.py: no stack here implements truncated HMAC; the check on the scan's finding, "
    "the finding on wire bytes")
FAILS_OUTSIDE_THE_REFERENCE["TLS-HEARTBLEED-01"] = (
    "tests/test_checks_tls_posture.py: no installable stack has the bug; a crafted server that leaks")
FAILS_OUTSIDE_THE_REFERENCE["TLS-CCS-01"] = (
    "tests/test_checks_tls_vulns.py: no installable stack has the bug; a crafted server that takes an early CCS")
FAILS_OUTSIDE_THE_REFERENCE["TLS-ROBOT-01"] = (
    "tests/test_checks_tls_vulns.py: OpenSSL has no oracle; tlslite-ng answering bad padding with decrypt_error")
FAILS_OUTSIDE_THE_REFERENCE["TLS-0RTT-01"] = (
    "tests/test_checks_tls_vulns.py: Python's ssl cannot enable early data; openssl s_server -early_data")


def test_every_requirement_has_a_flaw() -> None:
    from conformance.requirements import CATALOGUE

    covered = {rid for info in FLAWS.values() for rid in info.fails} | set(FAILS_OUTSIDE_THE_REFERENCE)
    assert set(CATALOGUE) - covered == set(), "requirements no reference flaw can make fail"
    assert covered - set(CATALOGUE) == set(), "flaws citing unknown requirement IDs"


@pytest.mark.parametrize("info", sorted(FLAWS.values(), key=lambda f: (f.family, f.name)), ids=lambda f: f.name)
def test_flaw_fails_exactly_its_checks(info: FlawInfo, tmp_path: Path) -> None:
    # LOCK-OUTAGE-01 takes the auth backend down: it needs the disruption opt-in too
    opt_ins = ALL_OPT_INS if "LOCK-OUTAGE-01" in info.fails else OPT_INS.get(info.family, ())
    if not all(_in_baseline(rid) for rid in info.fails):  # a bsi-only requirement is judged in its profile
        opt_ins = (*opt_ins, "--mail-profile", "bsi")
    run = _run_with((info.name,), tmp_path, opt_ins, outbound=info.family == "outbound")
    assert run.failing_requirements == set(info.fails), (
        f"flaw {info.name} ({info.breaks}) should fail exactly {sorted(info.fails)}:\n{run.describe()}")
    assert not run.with_verdict("inconclusive"), run.describe()
    failing_services = {c.endpoint_id.partition("@")[0] for c in run.with_verdict("fail")}
    assert FAILS_ON_POP3_TOO.get(info.name, set()) <= failing_services, run.describe()
    for case in run.with_verdict("fail"):
        assert len(case.reason) > 25 and ("@" in case.reason or ".example.test" in case.reason
                                          or "node" in case.reason), (
            f"{case.name}: failure message does not tell an operator where and what: {case.reason!r}")
    assert run.returncode != 0 or all(_is_should(rid) for rid in info.fails), run.output[-2000:]


# Flaws first written for SMTP/IMAP whose checks now also run on POP3: the POP3 endpoints must fail too.
FAILS_ON_POP3_TOO = {"no_state_reset": {"pop3"}, "starttls_response_injection": {"pop3"},
                     "reset_on_shutdown": {"pop3", "pop3s"}, "slow_recovery": {"pop3", "pop3s"},
                     "auth_down_says_wrong_password": {"pop3", "pop3s"}}


def _in_baseline(requirement_id: str) -> bool:
    from conformance.requirements import get

    return get(requirement_id).level_in("baseline") is not None


def _is_should(requirement_id: str) -> bool:
    """A failed SHOULD is reported but does not fail a run (a bsi-only requirement: in the bsi profile)."""
    from conformance.requirements import Level, get

    requirement = get(requirement_id)
    return (requirement.level_in("baseline") or requirement.level_in("bsi")) is Level.SHOULD


def test_xdist_run_gives_the_same_verdicts(good_run: SuiteRun, tmp_path: Path) -> None:
    """Vendors scan fleets under pytest-xdist: the passive checks (no opt-ins, as the README advises for
    -n; the active families run serially) give the serial run's verdicts, carried as plain JUnit values."""
    pytest.importorskip("xdist")
    parallel = _run_with((), tmp_path, ("-n", "2"))
    serial = {(c.name, c.requirement): c.verdict for c in good_run.cases}
    spread = {(c.name, c.requirement): c.verdict for c in parallel.cases}
    assert spread.keys() == serial.keys()
    ran = {key: verdict for key, verdict in spread.items() if verdict != "skipped"}
    assert len(ran) > 200 and all(serial[key] == verdict for key, verdict in ran.items()), parallel.describe()
    opted_out = [c for c in parallel.cases if c.verdict == "skipped"]
    assert all("--mail-allow-" in c.reason or "[outbound]" in c.reason or "not part of the baseline" in c.reason
               for c in opted_out), (
        parallel.describe(("skipped",)))
    assert parallel.returncode == 0, parallel.output[-2000:]


def test_demo_command_matches_plain_pytest(good_run: SuiteRun, tmp_path: Path) -> None:
    """`mailconform demo` (the README's first command) exits 0 on the good reference, writes JUnit XML
    that a real consumer library reads with the properties CI keys on, and its verdicts equal those of
    the same suite run as plain `pytest --pyargs conformance.checks --mail-target FILE`."""
    from junitparser import JUnitXml, Properties, Property

    report = tmp_path / "demo.xml"
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "demo", "--junitxml", str(report)],
                          check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "family" in proc.stdout and "pass" in proc.stdout, proc.stdout[-2000:]
    verdicts = {}
    for suite in JUnitXml.fromfile(str(report)):
        for case in suite:
            props = {p.name: p.value for ps in case.iterchildren(Properties) for p in ps.iterchildren(Property)}
            # every case: requirement, endpoint (or the fleet), a reason (a pass says what it saw)
            assert {"verdict", "requirement", "source", "level", "endpoint", "reason"} <= props.keys(), props
            assert props["reason"].strip() and (props["verdict"] != "inconclusive" or props.get("transcript")), props
            verdicts[case.name] = props["verdict"]
    assert verdicts == {c.name: c.verdict for c in good_run.cases}
