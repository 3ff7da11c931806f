"""The terminal summary and the Markdown for CI job pages."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from conformance.report.baseline import Comparison, change_lines
from conformance.report.junit import CaseResult, Run
from conformance.report.statement import VERDICTS, statement

SKIP_REASONS_SHOWN = 5
MARKDOWN_ROWS = 30  # a job page shows the first failures; the JUnit file and the HTML report keep them all
PROBLEMS = ("fail", "inconclusive")


def _baseline_lines(comparison: Comparison | None) -> list[str]:
    if comparison is None:
        return []
    return [comparison.headline, *(f"{label:<12} {_short(text)}" for label, text in change_lines(comparison)), ""]


def summary_text(results: Sequence[CaseResult], comparison: Comparison | None = None) -> str:
    lines = _baseline_lines(comparison)
    counts = _by_family(results)
    width = max([len(f) for f in counts] + [6])
    lines.append(f"{'family'.ljust(width)}  " + "  ".join(f"{v:>12}" for v in VERDICTS))
    for family in sorted(counts):
        lines.append(f"{family.ljust(width)}  " + "  ".join(f"{counts[family][v]:>12}" for v in VERDICTS))
    problems = [r for r in results if r.verdict in PROBLEMS]
    if problems:
        lines.append("")
    for result in sorted(problems, key=lambda r: (r.verdict, r.level != "MUST", r.requirement)):
        tag = "FAIL" if result.verdict == "fail" else "INCONCLUSIVE"
        lines.append(f"{tag:<12} {result.requirement} [{result.level}] {result.name}: {_short(result.reason)}")
    lines.extend(_skip_lines(Counter(r.reason for r in results if r.verdict == "skipped")))
    return "\n".join(lines)


def _by_family(results: Sequence[CaseResult]) -> dict[str, Counter[str]]:
    by_family: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        by_family[result.family][result.verdict] += 1
    return by_family


def _skip_lines(reasons: Counter[str]) -> list[str]:
    """The most common skip reasons, and how many checks the left-out reasons cover."""
    shown = reasons.most_common(SKIP_REASONS_SHOWN)
    lines = [f"{'skipped':<12} {count} check(s): {reason}" for reason, count in shown]
    left_out = len(reasons) - len(shown)
    if left_out:
        checks = sum(reasons.values()) - sum(count for _, count in shown)
        lines.append(f"{'skipped':<12} {checks} more check(s) for {left_out} other reason(s), in the JUnit file")
    return lines


def summary_markdown(results: Sequence[CaseResult], comparison: Comparison | None = None,
                     run: Run | None = None) -> str:
    """Short enough for a CI job page: the verdict, the changes, counts per family, the failing checks."""
    lines = []
    if run is not None:
        said = statement(run)
        lines += [f"### mailconform: {said.headline}", "",
                  (f"target {run.fact('target')} · {said.policy} · suite {run.fact('version')} · "
                  f"{run.when} · {run.duration}"), ""]
    if comparison is not None:
        lines += [f"**{comparison.headline}**", ""]
        lines += [f"- {label}: {_cell(text)}" for label, text in change_lines(comparison)[:MARKDOWN_ROWS]] + [""]
    counts = _by_family(results)
    lines += ["| family | " + " | ".join(VERDICTS) + " |", "|---" * (len(VERDICTS) + 1) + "|"]
    lines += [f"| {family} | " + " | ".join(str(counts[family][v]) for v in VERDICTS) + " |"
              for family in sorted(counts)]
    problems = sorted((r for r in results if r.verdict in PROBLEMS), key=lambda r: (r.verdict, r.level != "MUST"))
    if problems:
        lines += ["", "| requirement | level | check | verdict | reason |", "|---|---|---|---|---|"]
        lines += [f"| {r.requirement} | {r.level} | `{r.name}` | {r.verdict} | {_cell(r.reason)} |"
                  for r in problems[:MARKDOWN_ROWS]]
        if len(problems) > MARKDOWN_ROWS:
            lines.append(f"\n{len(problems) - MARKDOWN_ROWS} more in the JUnit file and the HTML report")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return _short(text, 200).replace("|", "/")


def _short(reason: str, limit: int = 240) -> str:
    """Summaries stay one line per check; the JUnit file keeps the whole reason."""
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"
