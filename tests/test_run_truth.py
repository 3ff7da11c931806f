"""Run-level truth: a run that reached nothing exits with its own code and says so in one line, under
`mailconform run`, plain pytest and pytest -n 2; and every JUnit case carries what the README promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import JUnitXml, Properties, Property

from conformance.verdict import NOTHING_REACHED
from tests.suite_runner import run_suite

pytestmark = pytest.mark.unit

UNREACHABLE = """
[target]
name = "unreachable"
timeout = 2

[[node]]
name = "node1"
host = "{host}"
{address}
services = {{ mx = 1, submission = 2, submissions = 3, imap = 4, imaps = 5 }}

[accounts.test]
username = "alice@example.test"
password_file = "alice.pw"
"""
TARGETS = {
    "closed-ports": ("mx1.example.test", 'address = "127.0.0.1"'),  # nothing listens on ports 1-5 of loopback
    "unresolvable-host": ("mailconform-no-such-host.invalid", ""),
}
SAID = "mailconform: no endpoint could be reached:"


def write_target(workdir: Path, kind: str) -> Path:
    host, address = TARGETS[kind]
    (workdir / "alice.pw").write_text("alice's password\n")
    target = workdir / f"{kind}.toml"
    target.write_text(UNREACHABLE.format(host=host, address=address))
    return target


def junit_cases(path: Path) -> list[dict[str, str]]:
    return [{p.name: p.value for props in case.iterchildren(Properties) for p in props.iterchildren(Property)}
            for suite in JUnitXml.fromfile(str(path)) for case in suite]


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("extra", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_a_run_that_reached_nothing_exits_nothing_reached(kind: str, extra: tuple[str, ...], tmp_path: Path) -> None:
    if extra:
        pytest.importorskip("xdist")
    run = run_suite(write_target(tmp_path, kind), tmp_path, extra=extra)
    assert run.returncode == NOTHING_REACHED, run.output[-3000:]
    assert [line for line in run.output.splitlines() if line.startswith(SAID)], run.output[-3000:]
    assert run.with_verdict("inconclusive") and not run.with_verdict("pass"), run.describe()


def test_mailconform_run_exits_nothing_reached(tmp_path: Path) -> None:
    target = write_target(tmp_path, "closed-ports")
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", str(target), "--junitxml",
                           str(tmp_path / "report.xml")], check=False, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == NOTHING_REACHED, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert SAID in proc.stdout


def test_every_case_carries_requirement_endpoint_reason_and_inconclusive_a_transcript(tmp_path: Path) -> None:
    run_suite(write_target(tmp_path, "closed-ports"), tmp_path)
    cases = junit_cases(tmp_path / "suite-closed-ports.xml")
    assert cases
    for props in cases:
        assert {"verdict", "requirement", "endpoint", "reason"} <= props.keys(), props
        assert props["reason"].strip(), props
        if props["verdict"] == "inconclusive":
            assert props.get("transcript", "").strip(), props
    fleet = [p for p in cases if p["endpoint"].startswith("fleet")]
    assert fleet and all(p["endpoint"] == "fleet (node1)" for p in fleet)
