"""A fleet run's progress lines, fed the reports a run sends (a real fleet run: tests/test_fleet.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from conformance.progress import REPORT_ATTRIBUTE, FleetProgress

pytestmark = pytest.mark.unit


class Terminal:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str, **markup: Any) -> None:
        self.lines.append(line)


def _progress(targets: tuple[str, ...] = ("east", "west")) -> tuple[FleetProgress, Terminal]:
    terminal = Terminal()
    manager = SimpleNamespace(get_plugin=lambda name: terminal if name == "terminalreporter" else None)
    return FleetProgress(SimpleNamespace(pluginmanager=manager), targets), terminal  # type: ignore[arg-type]


def _report(when: str, target: str | None, checks: int, verdict: str, nodeid: str = "") -> Any:
    report = SimpleNamespace(when=when, nodeid=nodeid, user_properties=[("verdict", verdict), ("target", target or "")])
    if target is not None:
        setattr(report, REPORT_ATTRIBUTE, (target, checks))
    return report


def test_a_line_when_a_targets_last_check_is_reported_with_its_verdicts() -> None:
    progress, terminal = _progress()
    for verdict in ("pass", "fail", "pass"):
        progress.pytest_runtest_logreport(_report("teardown", "east", 4, verdict))
        progress.pytest_runtest_logreport(_report("call", "east", 4, verdict))  # not a check's last report
    assert terminal.lines == []
    progress.pytest_runtest_logreport(_report("teardown", "east", 4, "inconclusive"))
    assert len(terminal.lines) == 1
    assert terminal.lines[0].startswith("mailconform: target east done (1 of 2 targets, 0m")
    assert terminal.lines[0].endswith("): 2 pass, 1 fail, 1 inconclusive")


def test_untagged_reports_do_not_count() -> None:
    """A teardown report without the tag (a plain test of the user's) does not count, nor a crash report
    whose ID is not led by a target's name."""
    progress, terminal = _progress()
    progress.pytest_runtest_logreport(_report("teardown", "west", 2, "pass"))
    progress.pytest_runtest_logreport(_report("teardown", None, 2, "fail", "tests/test_mine.py::test_x[west:1]"))
    progress.pytest_runtest_logreport(_report("???", None, 2, "fail", "tests/test_mine.py::test_x[elsewhere:1]"))
    assert terminal.lines == []
    progress.pytest_runtest_logreport(_report("teardown", "west", 2, "skipped"))
    assert terminal.lines and terminal.lines[0].endswith("): 1 pass, 1 skipped")


def test_a_check_its_worker_died_in_counts_as_a_failure_of_the_target_its_id_names() -> None:
    """pytest-xdist reports that check itself (phase '???', no tag): without it, the target never got its line."""
    progress, terminal = _progress(("east", "east:2"))
    crashed = "conformance/checks/test_tls.py::test_tls_versions[east:2:smtp@node1]"
    progress.pytest_runtest_logreport(_report("???", None, 0, "", crashed))
    assert terminal.lines == []  # east:2's number of checks is not known yet
    progress.pytest_runtest_logreport(_report("teardown", "east", 2, "pass"))
    progress.pytest_runtest_logreport(_report("teardown", "east:2", 2, "pass"))
    assert terminal.lines and terminal.lines[0].startswith("mailconform: target east:2 done (1 of 2 targets")
    assert terminal.lines[0].endswith("): 1 pass, 1 fail")
