"""Waivers: a check the operator knowingly fails still runs, is reported as waived with the approval, and
leaves the exit code alone until the waiver expires; a waiver the catalogue cannot place is a target error."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import JUnitXml, Skipped

from conformance.reference.gateway import Gateway
from tests.suite_runner import SuiteRun, run_suite

pytestmark = pytest.mark.reference

WAIVER = """
[[waiver]]
requirement = "STARTTLS-AUTH-01"
nodes = ["node*"]
reason = "staging relay keeps AUTH before TLS until the migration"
approved_by = "J. Doe (security lead)"
expires = {expires}
"""


def _run(tmp_path: Path, expires: str) -> SuiteRun:
    with Gateway(("auth_before_tls",), workdir=tmp_path) as gateway:
        target = gateway.write_target(tmp_path / "target.toml")
        target.write_text(target.read_text() + WAIVER.format(expires=expires))
        run = run_suite(target, tmp_path, extra=("-k", "test_no_auth_before_tls or test_starttls_offered"))
        gateway.check_errors()
    return run


def test_a_waived_failure_is_reported_as_waived_and_keeps_the_run_green(tmp_path: Path) -> None:
    run = _run(tmp_path, "2999-12-31")
    waived = run.with_verdict("waived")
    assert sorted(c.name for c in waived) == [f"test_no_auth_before_tls[submission@node{n}]" for n in (1, 2)]
    assert not run.with_verdict("fail") and run.with_verdict("pass")
    assert run.returncode == 0, run.output[-2000:]
    case = next(c for suite in JUnitXml.fromfile(str(tmp_path / "suite-target.xml")) for c in suite
                if "test_no_auth_before_tls" in c.name)
    skipped = case.result[0]
    assert isinstance(skipped, Skipped) and skipped.message.startswith(
        "WAIVED: waived until 2999-12-31, approved by J. Doe (security lead): staging relay keeps AUTH")
    assert "; fail: " in skipped.message and "AUTH" in skipped.message.split("; fail: ")[1]
    props = {p.get("name"): p.get("value") for p in ET.fromstring(case.tostring()).iter("property")}
    assert props["verdict"] == "waived" and props["waived_verdict"] == "fail"
    assert props["waiver.approved_by"] == "J. Doe (security lead)" and props["waiver.expires"] == "2999-12-31"
    assert "2 check(s) of STARTTLS-AUTH-01: waived until 2999-12-31" in run.output


def test_an_expired_waiver_no_longer_applies_and_says_so(tmp_path: Path) -> None:
    run = _run(tmp_path, "2020-01-31")
    assert run.failing_requirements == {"STARTTLS-AUTH-01"} and not run.with_verdict("waived")
    assert run.returncode == 1, run.output[-2000:]
    assert "STARTTLS-AUTH-01: expired on 2020-01-31: no longer applies" in run.output
