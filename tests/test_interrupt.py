"""The Ctrl-C tests hold when the test run itself was started as a background job or under nohup."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interrupt import python_module, python_script

pytestmark = pytest.mark.unit

WAIT = "import pathlib, sys, time; pathlib.Path(sys.argv[-1]).write_text('ready'); time.sleep(60)"


@pytest.fixture
def started_in_the_background() -> Iterator[None]:
    """SIGINT ignored, as a shell leaves it for `cmd &` or `nohup cmd`; children inherit it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt(argv: list[str], ready: Path) -> str:
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ready.parent)
    try:
        # bounded wait for the child's readiness file, not a sleep: then SIGINT meets a running child
        for _ in range(400):
            if ready.exists() or child.poll() is not None:
                break
            try:
                child.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        child.send_signal(signal.SIGINT)
        return child.communicate(timeout=20)[0]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.usefixtures("started_in_the_background")
def test_a_script_child_takes_ctrl_c_when_the_run_ignores_it(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    output = _interrupt([*python_script(WAIT), str(ready)], ready)
    assert "KeyboardInterrupt" in output, output


@pytest.mark.usefixtures("started_in_the_background")
def test_a_module_child_takes_ctrl_c_when_the_run_ignores_it(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    (tmp_path / "waiter.py").write_text(WAIT)
    output = _interrupt(python_module("waiter", str(ready)), ready)
    assert "KeyboardInterrupt" in output, output
