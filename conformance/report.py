"""Readable summaries from the JUnit XML a run wrote.

Reading the JUnit file (not in-process state) means the summary is the same for plain, CLI
and pytest-xdist runs: the file is the one record of what was proven.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from xml.parsers.expat import ErrorString

VERDICT_ORDER = ("pass", "fail", "inconclusive", "waived", "skipped")
JUNIT_ROOTS = ("testsuites", "testsuite")
SKIP_REASONS_SHOWN = 5


class ReportError(ValueError):
    """A file that cannot be summarized; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class CaseResult:
    name: str
    verdict: str
    requirement: str
    level: str
    family: str
    endpoint: str
    reason: str


def read_junit(path: str | Path) -> list[CaseResult]:
    """The test cases of a JUnit XML file; ReportError when it is unreadable, not XML or not JUnit."""
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise ReportError(f"{path}: {exc.strerror or exc}") from None
    except ET.ParseError as exc:
        line, column = exc.position
        raise ReportError(f"{path}:{line}: not XML: {ErrorString(exc.code)} at column {column + 1}") from None
    if root.tag not in JUNIT_ROOTS:
        raise ReportError(f"{path}: not a JUnit XML file: the root element is <{root.tag}>, "
                          f"not <testsuites> or <testsuite>")
    return [_case(case) for case in root.iter("testcase")]


def _case(case: ET.Element) -> CaseResult:
    props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
    verdict = props.get("verdict") or _verdict_from_elements(case)
    reason = props.get("reason") or _first_message(case)
    return CaseResult(
        name=case.get("name", ""),
        verdict=verdict,
        requirement=props.get("requirement", "-"),
        level=props.get("level", "-"),
        family=props.get("family", "other"),
        endpoint=props.get("endpoint", ""),
        reason=" ".join(reason.split()),
    )


def _verdict_from_elements(case: ET.Element) -> str:
    if case.find("failure") is not None or case.find("error") is not None:
        return "fail"
    if case.find("skipped") is not None:
        return "skipped"
    return "pass"


def _first_message(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        element = case.find(tag)
        if element is not None:
            return element.get("message", "")
    return ""


def summary_text(results: list[CaseResult]) -> str:
    by_family: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        by_family[result.family][result.verdict] += 1
    width = max([len(f) for f in by_family] + [6])
    lines = [f"{'family'.ljust(width)}  " + "  ".join(f"{v:>12}" for v in VERDICT_ORDER)]
    for family in sorted(by_family):
        counts = by_family[family]
        lines.append(f"{family.ljust(width)}  " + "  ".join(f"{counts[v]:>12}" for v in VERDICT_ORDER))
    problems = [r for r in results if r.verdict in ("fail", "inconclusive")]
    if problems:
        lines.append("")
    for result in sorted(problems, key=lambda r: (r.verdict, r.level != "MUST", r.requirement)):
        tag = "FAIL" if result.verdict == "fail" else "INCONCLUSIVE"
        lines.append(f"{tag:<12} {result.requirement} [{result.level}] {result.name}: {_short(result.reason)}")
    lines.extend(_skip_lines(Counter(r.reason for r in results if r.verdict == "skipped")))
    return "\n".join(lines)


def _skip_lines(reasons: Counter[str]) -> list[str]:
    """The most common skip reasons, and how many checks the left-out reasons cover."""
    shown = reasons.most_common(SKIP_REASONS_SHOWN)
    lines = [f"{'skipped':<12} {count} check(s): {reason}" for reason, count in shown]
    left_out = len(reasons) - len(shown)
    if left_out:
        checks = sum(reasons.values()) - sum(count for _, count in shown)
        lines.append(f"{'skipped':<12} {checks} more check(s) for {left_out} other reason(s), in the JUnit file")
    return lines


def summary_markdown(results: list[CaseResult]) -> str:
    lines = ["| requirement | level | check | verdict | reason |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.requirement} | {r.level} | `{r.name}` | {r.verdict} | {_short(r.reason).replace('|', '/')} |")
    return "\n".join(lines)


def _short(reason: str, limit: int = 240) -> str:
    """Summaries stay one line per check; the JUnit file keeps the whole reason."""
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"
