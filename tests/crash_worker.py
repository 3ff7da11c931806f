"""A pytest plugin for tests/test_fleet.py: one pytest-xdist worker dies in the middle of a fleet run.

``MAILCONFORM_CRASH="<target name>:<n>:<flag file>"``: the worker running the n-th check of that target
exits at once, as an out-of-memory kill would, unless the flag file exists (so its replacement does not).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_checks_seen: dict[str, int] = {}


def pytest_runtest_call(item: pytest.Item) -> None:
    target, _, rest = os.environ.get("MAILCONFORM_CRASH", "").partition(":")
    at, _, flag = rest.partition(":")
    if not target or not os.environ.get("PYTEST_XDIST_WORKER") or f"[{target}:" not in item.nodeid:
        return
    _checks_seen[target] = _checks_seen.get(target, 0) + 1
    if _checks_seen[target] == int(at) and not Path(flag).exists():
        Path(flag).write_text(item.nodeid, encoding="utf-8")
        os._exit(3)
