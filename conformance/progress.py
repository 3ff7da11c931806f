"""Progress of a fleet run: one line as each target's checks are all reported, with its verdicts.

A run prints a dot per check; an operator watching two hundred targets wants to know how many are done and
which of them failed, before the summary at the end. The process that runs a target's checks (the run
itself, or a pytest-xdist worker: each collects every check) knows how many checks each target has, and
puts the target's name and that count on each check's last report. pytest-xdist carries a report's own
attributes to the controller, so the process that prints counts the same way in both modes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Generator
from typing import Any

import pytest

from conformance.fleet import item_target
from conformance.verdict import Verdict

REPORT_ATTRIBUTE = "mailconform_target"  # (target name, its checks) on a check's teardown report
CHECKS_KEY = pytest.StashKey[dict[str, int]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    checks = Counter(target.name for target in map(item_target, session.items) if target is not None)
    session.config.stash[CHECKS_KEY] = dict(checks)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "teardown":
        target = item_target(item)
        checks = item.config.stash.get(CHECKS_KEY, {})
        if target is not None and target.name in checks:
            setattr(report, REPORT_ATTRIBUTE, (target.name, checks[target.name]))
    return report


class FleetProgress:
    """In the process that prints (not on a pytest-xdist worker): a line per finished target."""

    def __init__(self, config: pytest.Config, targets: int) -> None:
        self._config = config
        self._targets = targets
        self._verdicts: dict[str, Counter[str]] = {}
        self._done = 0
        self._start = time.monotonic()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        tagged = getattr(report, REPORT_ATTRIBUTE, None)
        if report.when != "teardown" or not tagged:
            return  # a report pytest-xdist made for a crashed worker carries no tag: that target stays open
        name, checks = tagged
        verdicts = self._verdicts.setdefault(name, Counter())
        verdicts[str(dict(report.user_properties).get("verdict", Verdict.PASS))] += 1
        if sum(verdicts.values()) == checks:
            self._done += 1
            self._announce(name, verdicts)

    def _announce(self, name: str, verdicts: Counter[str]) -> None:
        terminal = self._config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            return
        minutes, seconds = divmod(int(time.monotonic() - self._start), 60)
        counts = ", ".join(f"{verdicts[v]} {v}" for v in map(str, Verdict) if verdicts[v])
        terminal.write_line(f"mailconform: target {name} done ({self._done} of {self._targets} targets, "
                            f"{minutes}m{seconds:02d}s): {counts}", bold=self._done == self._targets)
