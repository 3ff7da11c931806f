"""This run against the previous one: what a CI reviewer looks for first."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.report.junit import CaseResult, Run


@dataclass(frozen=True)
class Comparison:
    previous: str                                # the previous JUnit file
    new_failures: tuple[CaseResult, ...]         # fail now, not before (or not run before)
    fixed: tuple[CaseResult, ...]                # failed before, pass now
    newly_inconclusive: tuple[CaseResult, ...]   # inconclusive now, not before
    appeared: tuple[str, ...]                    # endpoints (service@node) checked now, not before
    vanished: tuple[str, ...]

    @property
    def unchanged(self) -> bool:
        return not (self.new_failures or self.fixed or self.newly_inconclusive or self.appeared or self.vanished)

    @property
    def headline(self) -> str:
        parts = [f"{len(self.new_failures)} new failure(s)", f"{len(self.fixed)} fixed",
                 f"{len(self.newly_inconclusive)} newly inconclusive",
                 f"{len(self.appeared)} endpoint(s) appeared", f"{len(self.vanished)} vanished"]
        return f"compared with {self.previous}: " + ", ".join(parts)


def compare(previous: Run, current: Run) -> Comparison:
    before = {case.key: case.verdict for case in previous.cases}

    def became(verdict: str) -> tuple[CaseResult, ...]:
        return tuple(c for c in current.cases if c.verdict == verdict and before.get(c.key) != verdict)

    fixed = tuple(c for c in current.cases if c.verdict == "pass" and before.get(c.key) == "fail")
    endpoints_before = {c.endpoint_id for c in previous.cases} - {""}
    endpoints_now = {c.endpoint_id for c in current.cases} - {""}
    return Comparison(previous.source, became("fail"), fixed, became("inconclusive"),
                      tuple(sorted(endpoints_now - endpoints_before)), tuple(sorted(endpoints_before - endpoints_now)))


def change_lines(comparison: Comparison) -> list[tuple[str, str]]:
    """(label, text) per change, in the order a reviewer reads them."""
    rows = [("NEW FAIL", f"{c.requirement} [{c.level}] {c.name}: {c.reason}") for c in comparison.new_failures]
    rows += [("FIXED", f"{c.requirement} [{c.level}] {c.name}") for c in comparison.fixed]
    rows += [("NEW INCONCL", f"{c.requirement} [{c.level}] {c.name}: {c.reason}")
             for c in comparison.newly_inconclusive]
    rows += [("APPEARED", endpoint) for endpoint in comparison.appeared]
    rows += [("VANISHED", endpoint) for endpoint in comparison.vanished]
    return rows
