"""The HTML report: one self-contained file (no network, no external assets) an assessor can file.

Jinja2 renders it because every reason, evidence value and transcript is text a server under test chose:
autoescaping makes a hostile reply harmless, which string formatting by hand would not guarantee.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from importlib.resources import files

import jinja2

from conformance import requirements
from conformance.report.baseline import Comparison, change_lines
from conformance.report.junit import CaseResult, Run
from conformance.report.statement import VERDICTS, statement
from conformance.verdict import FLEET

SYMBOLS = {"pass": "✓", "fail": "✗", "inconclusive": "?", "waived": "⊘", "skipped": "–"}
ORDER = {"fail": 0, "inconclusive": 1, "waived": 2, "pass": 3, "skipped": 4}


@dataclass(frozen=True)
class Row:
    requirement: str
    title: str
    source: str
    level: str
    cells: tuple[tuple[tuple[int, CaseResult], ...], ...]  # per endpoint column: (case number, case)
    worst: str


def _order(case: CaseResult) -> int:
    return ORDER.get(case.verdict, len(ORDER))


def _catalogue_text(case: CaseResult) -> tuple[str, str]:
    entry = requirements.CATALOGUE.get(case.requirement)
    return (case.prop("title") or (entry.title if entry else ""), case.prop("source") or (entry.source if entry else ""))


def _matrix(numbered: list[tuple[int, CaseResult]]) -> tuple[list[str], list[Row]]:
    columns = sorted({c.endpoint_id or FLEET for _, c in numbered}, key=lambda e: (e != FLEET, e))
    by_requirement: dict[str, list[tuple[int, CaseResult]]] = defaultdict(list)
    for number, case in numbered:
        by_requirement[case.requirement].append((number, case))
    rows = []
    for requirement, cases in by_requirement.items():
        cells = tuple(tuple((n, c) for n, c in cases if (c.endpoint_id or FLEET) == column) for column in columns)
        worst = min(cases, key=lambda nc: _order(nc[1]))[1]
        title, source = _catalogue_text(worst)
        rows.append(Row(requirement, title, source, worst.level, cells, worst.verdict))
    rows.sort(key=lambda row: (ORDER.get(row.worst, len(ORDER)), row.requirement))
    return columns, rows


def render_html(run: Run, comparison: Comparison | None = None) -> str:
    numbered = list(enumerate(sorted(run.cases, key=lambda c: (_order(c), c.requirement, c.name)), 1))
    columns, rows = _matrix(numbered)
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(files("conformance.report").joinpath("report.html.j2").read_text("utf-8"))
    return template.render(
        run=run, said=statement(run), comparison=comparison,
        changes=change_lines(comparison) if comparison else [], verdicts=VERDICTS, symbols=SYMBOLS,
        columns=columns, rows=rows, cases=numbered, catalogue_text=_catalogue_text,
    )
