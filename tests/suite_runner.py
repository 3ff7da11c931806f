"""Run the shipped suite (``pytest --pyargs conformance.checks``) against a target file, the way a
vendor's CI does, in a subprocess, and read the verdicts back from the JUnit XML it wrote."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conformance.report import CaseResult, read_junit

# Options that let the active families run: the reference's lockout account and outages are its own.
ALL_OPT_INS = ("--mail-allow-lockout", "--mail-allow-disruption")


@dataclass(frozen=True)
class SuiteRun:
    returncode: int
    cases: tuple[CaseResult, ...]
    output: str

    def with_verdict(self, verdict: str) -> list[CaseResult]:
        return [c for c in self.cases if c.verdict == verdict]

    @property
    def failing_requirements(self) -> set[str]:
        return {c.requirement for c in self.with_verdict("fail")}

    def describe(self, verdicts: Sequence[str] = ("fail", "inconclusive")) -> str:
        """The non-passing cases, one per line, for assertion messages."""
        lines = [f"{c.verdict:<12} {c.requirement:<20} {c.name}: {c.reason}" for c in self.cases
                 if c.verdict in verdicts]
        return "\n".join(lines) or "(none)"


def run_suite(target: Path, workdir: Path, *, extra: Sequence[str] = (), timeout: float = 600) -> SuiteRun:
    """Run every shipped check against ``target``; never raises for check failures (they are the data)."""
    junit = workdir / f"suite-{target.stem}.xml"
    command = [sys.executable, "-m", "pytest", "--pyargs", "conformance.checks", "--mail-target", str(target),
               "--junitxml", str(junit), "-p", "no:cacheprovider", "-q", "--tb=line", "-o", "addopts=",
               "-o", "testpaths=",
               # the test extras' plugins serve no check and cost each of the ~100 suite runs a second or two
               "-p", "no:anyio", "-p", "no:hypothesispytest", "-p", "no:benchmark", *extra]
    proc = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    output = proc.stdout + proc.stderr
    if not junit.exists():
        raise AssertionError(f"the suite wrote no JUnit file (exit {proc.returncode}):\n{output[-3000:]}")
    return SuiteRun(proc.returncode, tuple(read_junit(junit)), output)
