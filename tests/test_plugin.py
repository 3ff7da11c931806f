"""The plugin as users run it: pytester runs check modules, then we read the JUnit XML with junitparser."""

from __future__ import annotations

from pathlib import Path

import pytest
from junitparser import JUnitXml, Properties, Property

from conformance import requirements
from conformance.requirements import Level, Requirement
from conformance.verdict import NOTHING_REACHED
from tests.conftest import MINIMAL_TARGET, SECRET

pytestmark = pytest.mark.unit

CHECKS = '''
import pytest
from conformance.verdict import Inconclusive

@pytest.mark.requirement("UNIT-MUST-01")
@pytest.mark.service("mx", "submission")
def test_must(endpoint, evidence):
    evidence.add("seen", ["b", "a"])
    assert endpoint.service != "submission", f"{endpoint}: broken"

@pytest.mark.requirement("UNIT-SHOULD-01")
def test_should(evidence):
    assert False, "nice to have is missing"

@pytest.mark.requirement("UNIT-MUST-02")
def test_unknown(evidence, target):
    raise Inconclusive("421 4.7.0 Try again later")

@pytest.mark.requirement("UNIT-MUST-02")
def test_secret_leak(target):
    assert target.account("test").password.reveal() == "wrong"
'''


@pytest.fixture(autouse=True)
def unit_requirements(monkeypatch: pytest.MonkeyPatch) -> None:
    for req in (Requirement("UNIT-MUST-01", "a must", "RFC 0 §1", Level.MUST, "unit"),
                Requirement("UNIT-SHOULD-01", "a should", "RFC 0 §2", Level.SHOULD, "unit"),
                Requirement("UNIT-MUST-02", "another must", "RFC 0 §3", Level.MUST, "unit")):
        monkeypatch.setitem(requirements.CATALOGUE, req.id, req)


def run(pytester: pytest.Pytester, target: Path, *args: str) -> tuple[pytest.RunResult, dict[str, dict[str, str]]]:
    pytester.makepyfile(test_checks=CHECKS)
    result = pytester.runpytest("--mail-target", str(target), "--junitxml", "out.xml", *args)
    cases = {}
    for suite in JUnitXml.fromfile(str(pytester.path / "out.xml")):
        for case in suite:
            cases[case.name] = {p.name: p.value for props in case.iterchildren(Properties)
                               for p in props.iterchildren(Property)}
    return result, cases


def test_verdicts_levels_and_properties(pytester: pytest.Pytester, minimal_target: Path) -> None:
    result, cases = run(pytester, minimal_target)
    assert set(cases) == {"test_must[mx@node1]", "test_must[submission@node1]", "test_should",
                          "test_unknown", "test_secret_leak"}
    assert cases["test_must[mx@node1]"]["verdict"] == "pass"
    assert cases["test_must[mx@node1]"]["reason"] == "saw seen: a, b"  # a pass says what it saw
    assert cases["test_should"]["endpoint"] == "fleet (node1)"
    failed = cases["test_must[submission@node1]"]
    assert failed["verdict"] == "fail" and failed["level"] == "MUST" and failed["source"] == "RFC 0 §1"
    assert failed["requirement"] == "UNIT-MUST-01" and "broken" in failed["reason"]
    assert failed["endpoint"].startswith("submission mx1.example.test:1")
    assert failed["evidence.seen"] == "a, b"
    assert cases["test_should"]["verdict"] == "fail" and cases["test_should"]["level"] == "SHOULD"
    assert cases["test_unknown"]["verdict"] == "inconclusive"
    assert "421 4.7.0" in cases["test_unknown"]["reason"]
    result.stdout.fnmatch_lines(["*1 inconclusive*"])
    assert result.ret == 1  # failed MUSTs


def test_should_and_inconclusive_do_not_fail_baseline(pytester: pytest.Pytester, minimal_target: Path) -> None:
    result, _ = run(pytester, minimal_target, "test_checks.py::test_should", "test_checks.py::test_unknown")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*1 SHOULD requirement(s) not met*"])


def test_inconclusive_must_fails_sensitive_data(pytester: pytest.Pytester, minimal_target: Path) -> None:
    judged = "test_checks.py::test_must[mx@node1]"  # one judged check: the run reached something
    result, _ = run(pytester, minimal_target, judged, "test_checks.py::test_unknown", "--mail-profile", "sensitive-data")
    assert result.ret == 1
    result, _ = run(pytester, minimal_target, judged, "test_checks.py::test_unknown", "--mail-profile", "sensitive-data",
                    "--mail-fail-on", "must")
    assert result.ret == 0


@pytest.mark.parametrize("policy", ["must", "never"])
def test_nothing_judged_has_its_own_exit_code_whatever_the_policy(pytester: pytest.Pytester, minimal_target: Path,
                                                                   policy: str) -> None:
    result, _ = run(pytester, minimal_target, "test_checks.py::test_unknown", "--mail-fail-on", policy)
    assert result.ret == NOTHING_REACHED
    result.stdout.fnmatch_lines(["mailconform: no endpoint could be reached: 1 check(s) inconclusive*exit code 6*"])


def test_fail_on_should(pytester: pytest.Pytester, minimal_target: Path) -> None:
    result, _ = run(pytester, minimal_target, "test_checks.py::test_should", "--mail-fail-on", "should")
    assert result.ret == 1


def test_skipped_junit_element_for_inconclusive(pytester: pytest.Pytester, minimal_target: Path) -> None:
    run(pytester, minimal_target)
    xml = (pytester.path / "out.xml").read_text()
    assert 'message="INCONCLUSIVE: 421 4.7.0 Try again later"' in xml


def test_password_never_reaches_the_report(pytester: pytest.Pytester, minimal_target: Path) -> None:
    result, cases = run(pytester, minimal_target)
    assert cases["test_secret_leak"]["verdict"] == "fail"
    assert SECRET not in (pytester.path / "out.xml").read_text()
    assert SECRET not in result.stdout.str()


def test_each_targets_password_is_scrubbed_from_its_own_checks(pytester: pytest.Pytester, minimal_target: Path,
                                                               tmp_path: Path) -> None:
    """Several targets, each with its own password: each check is scrubbed of its own target's (worked out
    once per target, not once per report)."""
    other_secret = "0ther-Staple-Correct"
    (tmp_path / "west").mkdir()
    (tmp_path / "west" / "alice.pw").write_text(other_secret + "\n")
    west = tmp_path / "west" / "target.toml"
    west.write_text(MINIMAL_TARGET.format(port=1).replace('name = "unit"', 'name = "west"')
                    .replace("mx1.example.test", "mx2.example.test").replace("127.0.0.1", "127.0.0.2"))
    result, cases = run(pytester, minimal_target, "--mail-target", str(west))
    leaks = [name for name in cases if name.startswith("test_secret_leak")]
    assert len(leaks) == 2 and all(cases[name]["verdict"] == "fail" for name in leaks), cases
    report = (pytester.path / "out.xml").read_text()
    assert SECRET not in report and other_secret not in report
    assert SECRET not in result.stdout.str() and other_secret not in result.stdout.str()


def test_unknown_requirement_is_a_collection_error(pytester: pytest.Pytester, minimal_target: Path) -> None:
    pytester.makepyfile(test_bad='''
import pytest
@pytest.mark.requirement("NO-SUCH-01")
def test_x():
    pass
''')
    # In a subprocess: CPython 3.11.7 can raise "AST constructor recursion depth mismatch" when an
    # in-process run's assertion rewriting meets a collection error this deep in the stack.
    result = pytester.runpytest_subprocess("--mail-target", str(minimal_target))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*test_x: unknown requirement ID 'NO-SUCH-01'*"])


def test_bad_target_is_one_line_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[node]]\nhost="h"\nservices={mx=0}\n')
    result = pytester.runpytest("--mail-target", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad.toml:3: key 'node.services.mx': port out of range*"])
    assert "Traceback" not in result.stderr.str()


def test_without_target_checks_skip_with_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=CHECKS)
    result = pytester.runpytest("-rs", "test_checks.py::test_must", "test_checks.py::test_unknown")
    result.stdout.fnmatch_lines(["*no --mail-target given*"])
    result.assert_outcomes(skipped=2)
    assert result.ret == 0


def test_header_shows_target_and_profile(pytester: pytest.Pytester, minimal_target: Path) -> None:
    result, _ = run(pytester, minimal_target, "--mail-profile", "sensitive-data")
    result.stdout.fnmatch_lines(["mailconform: target 'unit'*", "*profile sensitive-data, fail-on must-proven*"])


def test_header_is_silent_without_a_target(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert not [line for line in result.outlines if line.startswith("mailconform")]
