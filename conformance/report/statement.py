"""The verdict a run earns under its profile and exit policy, decided from its JUnit record alone
(the same rules the plugin applies to the exit code: conformance/verdict.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from conformance.report.junit import CaseResult, Run
from conformance.verdict import (
    FLEET,
    NOTHING_REACHED,
    FailOn,
    Verdict,
    default_fail_on,
    fails_run,
    nothing_reached,
)

VERDICTS = tuple(str(v) for v in (Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.WAIVED, Verdict.SKIPPED))


@dataclass(frozen=True)
class Statement:
    profile: str
    fail_on: FailOn
    failing: tuple[CaseResult, ...]          # results that fail the run under the policy
    should_failed: tuple[CaseResult, ...]    # failed, reported, not failing the run
    nothing_reached: bool
    counts: Counter[str]

    @property
    def exit_code(self) -> int:
        return NOTHING_REACHED if self.nothing_reached else 1 if self.failing else 0

    @property
    def conformant(self) -> bool:
        return self.exit_code == 0

    @property
    def headline(self) -> str:
        if self.nothing_reached:
            return "NOT PROVEN: no endpoint could be reached"
        if self.failing:
            return f"NOT CONFORMANT: {len(self.failing)} result(s) fail the run"
        return "CONFORMANT"

    @property
    def policy(self) -> str:
        return f"profile {self.profile}, --mail-fail-on {self.fail_on} (exit code {self.exit_code})"


def _verdict(case: CaseResult) -> Verdict:
    try:
        return Verdict(case.verdict)
    except ValueError:  # a JUnit file from another tool: its own words, counted as a plain test
        return Verdict.PASS


def statement(run: Run) -> Statement:
    profile = run.fact("profile", "baseline")
    policy = run.fact("fail_on", "")
    fail_on = FailOn(policy) if policy in {f.value for f in FailOn} else default_fail_on(profile)
    seen: Counter[tuple[Verdict, bool]] = Counter()
    failing, should_failed = [], []
    for case in run.cases:
        verdict = _verdict(case)
        judged = Verdict(case.prop("waived_verdict")) if verdict is Verdict.WAIVED else verdict
        seen[judged, not case.endpoint.startswith(FLEET) and bool(case.endpoint)] += 1
        if verdict is Verdict.WAIVED:
            continue
        level = case.level if case.level != "-" else "MUST"
        if fails_run(fail_on, verdict, level):
            failing.append(case)
        elif verdict is Verdict.FAIL:
            should_failed.append(case)
    return Statement(profile, fail_on, tuple(failing), tuple(should_failed), nothing_reached(seen),
                     Counter(c.verdict for c in run.cases))
