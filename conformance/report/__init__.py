"""Reports made from the JUnit XML a run wrote (and the catalogue): terminal summary, Markdown, HTML, and the
comparison with a previous run. Each is a pure function of that file, so `mailconform report` on it gives
what `mailconform run` gave."""

from conformance.report.baseline import Comparison, compare
from conformance.report.junit import CaseResult, ReportError, Run, read_junit, read_run
from conformance.report.statement import Statement, statement
from conformance.report.text import summary_markdown, summary_text

__all__ = ["CaseResult", "Comparison", "ReportError", "Run", "Statement", "compare", "read_junit", "read_run",
           "statement", "summary_markdown", "summary_text"]
