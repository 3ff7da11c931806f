"""Waivers: a check the operator knowingly fails still runs, is reported as waived with the approval, and
leaves the exit code alone until the waiver expires; a waiver the catalogue cannot place is a target error."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import pytest
from junitparser import JUnitXml, Skipped

from conformance.reference.gateway import Gateway
from conformance.target import TargetError, Waiver, load_target
from tests.suite_runner import SuiteRun, run_suite

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


@pytest.mark.reference
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


@pytest.mark.reference
def test_an_expired_waiver_no_longer_applies_and_says_so(tmp_path: Path) -> None:
    run = _run(tmp_path, "2020-01-31")
    assert run.failing_requirements == {"STARTTLS-AUTH-01"} and not run.with_verdict("waived")
    assert run.returncode == 1, run.output[-2000:]
    assert "STARTTLS-AUTH-01: expired on 2020-01-31: no longer applies" in run.output


@pytest.mark.unit
@pytest.mark.parametrize(("endpoints", "nodes", "covered"), [
    ((), (), {"submission@mx1", "mx@mx2", "fleet"}),
    (("submission@*",), (), {"submission@mx1"}),
    ((), ("mx2",), {"mx@mx2"}),
    (("fleet",), (), {"fleet"}),
])
def test_a_waiver_covers_the_endpoints_and_nodes_its_globs_name(
        endpoints: tuple[str, ...], nodes: tuple[str, ...], covered: set[str]) -> None:
    waiver = Waiver("STARTTLS-AUTH-01", "r", "a", date(2030, 1, 1), endpoints, nodes)
    checks = {"submission@mx1": "mx1", "mx@mx2": "mx2", "fleet": None}
    assert {e for e, node in checks.items() if waiver.covers("STARTTLS-AUTH-01", e, node)} == covered
    assert not waiver.covers("STARTTLS-OFFER-01", "submission@mx1", "mx1")
    assert not waiver.expired(date(2030, 1, 1)) and waiver.expired(date(2030, 1, 2))


TARGET = """[target]
name = "t"
[[node]]
host = "h"
services = { mx = 25 }
[[waiver]]
requirement = "FAIL-REDUNDANT-01"
reason = "one node in staging"
approved_by = "ops"
expires = 2030-01-01
"""


@pytest.mark.unit
@pytest.mark.parametrize(("extra", "error"), [
    ('[[waiver]]\nrequirement = "NOPE-01"\nreason = "r"\napproved_by = "a"\nexpires = 2030-01-01\n',
     ":12: key 'waiver.requirement': unknown requirement 'NOPE-01' (see `mailconform requirements`)"),
    ('[[waiver]]\nrequirement = "TLS-VER-01"\nreason = "r"\napproved_by = "a"\nexpires = "soon"\n',
     ":15: key 'waiver.expires': expected a date such as 2027-06-30, got 'soon'"),
    ('[[waiver]]\nrequirement = "TLS-VER-01"\nexpires = 2030-01-01\nreason = "r"\n',
     ":11: key 'waiver.approved_by': missing (expected a non-empty string)"),
    ('[[waiver]]\nrequirement = "TLS-VER-01"\nnode = ["mx1"]\n',
     (":13: key 'waiver.node': unknown key (expected one of: approved_by, endpoints, expires, nodes, "
     "reason, requirement)")),
])
def test_a_bad_waiver_is_a_target_error_naming_file_line_and_key(tmp_path: Path, extra: str, error: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(TARGET + extra)
    with pytest.raises(TargetError) as raised:
        load_target(path)
    assert str(raised.value) == f"{path}{error}"


@pytest.mark.unit
def test_waivers_load_from_the_target(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(TARGET)
    (waiver,) = load_target(path).waivers
    assert waiver == Waiver("FAIL-REDUNDANT-01", "one node in staging", "ops", date(2030, 1, 1))
