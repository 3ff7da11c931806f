"""Progress of a fleet run: one line as each target's checks are all reported, with its verdicts.

A run prints a dot per check; an operator watching two hundred targets wants to know how many are done and
which of them failed, before the summary at the end. The process that runs a target's checks (the run
itself, or a pytest-xdist worker: each collects every check) knows how many checks each target has, and
puts the target's name and that count on each check's last report. pytest-xdist carries a report's own
attributes to the controller, so the process that prints counts the same way in both modes.

A check whose worker crashed is reported by pytest-xdist itself, untagged; its target is read from the check's
ID (led by the target's name) and the crash counts as a failure, so that target gets its line too.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Generator, Sequence
from typing import Any

import pytest

from conformance.fleet import item_target
from conformance.verdict import Verdict

REPORT_ATTRIBUTE = "mailconform_target"  # (target name, its checks) on a check's teardown report
CHECKS_KEY = pytest.StashKey[dict[str, int]]()
CRASH_PHASE = "???"  # the phase of the report pytest-xdist makes for a check its worker died in


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

    def __init__(self, config: pytest.Config, targets: Sequence[str]) -> None:
        self._config = config
        self._targets = tuple(targets)
        self._checks: dict[str, int] = {}  # target -> its checks, learnt from its first tagged report
        self._verdicts: dict[str, Counter[str]] = {}
        self._done = 0
        self._start = time.monotonic()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        tagged = getattr(report, REPORT_ATTRIBUTE, None)
        if tagged and report.when == "teardown":
            name, checks = tagged
            self._checks[name] = checks
            verdict = str(dict(report.user_properties).get("verdict", Verdict.PASS))
        elif report.when == CRASH_PHASE and (crashed := self._target_of(report.nodeid)):
            name, verdict = crashed, str(Verdict.FAIL)
        else:
            return  # a check's setup or call report, or a test that is not a conformance check
        verdicts = self._verdicts.setdefault(name, Counter())
        verdicts[verdict] += 1
        if sum(verdicts.values()) == self._checks.get(name):
            self._done += 1
            self._announce(name, verdicts)

    def _target_of(self, nodeid: str) -> str | None:
        """The target a check ID names: its parameter ID is led by the target's name (``[east:mx@node1]``)."""
        parameters = nodeid.rpartition("::")[2].partition("[")[2].removesuffix("]")
        named = [t for t in self._targets if parameters == t or parameters.startswith(f"{t}:")]
        return max(named, key=len, default=None)  # "east" and "east:2" are both names a file can give

    def _announce(self, name: str, verdicts: Counter[str]) -> None:
        terminal = self._config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            return
        minutes, seconds = divmod(int(time.monotonic() - self._start), 60)
        counts = ", ".join(f"{verdicts[v]} {v}" for v in map(str, Verdict) if verdicts[v])
        terminal.write_line(f"mailconform: target {name} done ({self._done} of {len(self._targets)} targets, "
                            f"{minutes}m{seconds:02d}s): {counts}", bold=self._done == len(self._targets))
