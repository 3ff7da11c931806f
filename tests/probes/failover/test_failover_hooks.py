"""Operator hooks: argv without a shell, timeouts, scrubbed output, and `up` that always runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conformance.probes.failover.hooks import HookError, outage, run_hook
from conformance.target import Hook, Node
from tests.interrupt import python_script

pytestmark = pytest.mark.unit

PY = sys.executable
SECRET = "hunter2-Very-Secret"


def flag_hook(state: Path, timeout: float = 10.0) -> Hook:
    """down creates the flag file, up removes it: the file's existence is the outage."""
    return Hook(down=(PY, "-c", f"open({str(state)!r}, 'w').write('down')"),
                up=(PY, "-c", f"import os; os.remove({str(state)!r})"), timeout=timeout)


def test_run_hook_captures_output_and_scrubs_secrets() -> None:
    run = run_hook([PY, "-c", f"import sys; print('pw={SECRET}'); print('err', file=sys.stderr)"],
                   timeout=10, secrets=(SECRET,))
    assert run.ok and run.returncode == 0
    assert "pw=<redacted>" in run.output and "err" in run.output and SECRET not in run.output


def test_run_hook_has_no_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    run = run_hook(["echo", f"x; touch {marker}"], timeout=10)
    assert run.ok and not marker.exists() and f"; touch {marker}" in run.output


def test_run_hook_reports_exit_code_and_missing_command() -> None:
    failed = run_hook([PY, "-c", "print('boom'); raise SystemExit(3)"], timeout=10, node="node1", action="down")
    assert not failed.ok and failed.returncode == 3
    assert "exit 3" in failed.describe() and "boom" in failed.describe() and "node1" in failed.describe()
    missing = run_hook(["/nonexistent/hook"], timeout=10)
    assert not missing.ok and missing.returncode is None and "cannot start" in missing.error


def test_run_hook_kills_after_timeout() -> None:
    started = time.monotonic()
    run = run_hook([PY, "-c", "import time; print('started', flush=True); time.sleep(30)"], timeout=0.5)
    assert time.monotonic() - started < 10
    assert not run.ok and "timed out after 0.5 s" in run.error and "started" in run.output


def test_a_hook_that_starts_a_daemon_returns_when_the_hook_does() -> None:
    """The daemon inherits the hook's stdout; a pipe would never reach EOF (dovecot, postfix start)."""
    daemon = "import time; time.sleep(5)"
    started = time.monotonic()
    run = run_hook([PY, "-c", ("import subprocess, sys; "
                    f"subprocess.Popen([sys.executable, '-c', {daemon!r}], start_new_session=True); print('started')")],
                   timeout=4)
    assert run.ok and "started" in run.output and time.monotonic() - started < 3


def test_outage_runs_down_then_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    node = Node("node1", "mx1.example.test", hooks=flag_hook(state))
    with outage(node, "node", max_outage=30) as record:
        assert state.exists() and record.is_down
    assert not state.exists() and not record.is_down and not record.expired
    assert [r.action for r in record.runs] == ["down", "up"]
    assert record.seconds_down is not None and "node on node1 down for" in record.summary()


def test_up_runs_when_the_block_fails(tmp_path: Path) -> None:
    state = tmp_path / "state"
    node = Node("node1", "mx1.example.test", outages=(("delivery", flag_hook(state)),))
    with pytest.raises(AssertionError, match="check failed"), outage(node, "delivery", max_outage=30):
        raise AssertionError("check failed")
    assert not state.exists()


def test_up_runs_on_keyboard_interrupt(tmp_path: Path) -> None:
    state = tmp_path / "state"
    node = Node("node1", "mx1.example.test", hooks=flag_hook(state))
    with pytest.raises(KeyboardInterrupt), outage(node, "node", max_outage=30):
        raise KeyboardInterrupt
    assert not state.exists()


def test_ctrl_c_in_a_real_process_brings_the_node_back(tmp_path: Path) -> None:
    """SIGINT to a process sitting in an outage: `up` still runs before it exits."""
    state, ready = tmp_path / "state", tmp_path / "ready"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from conformance.probes.failover.hooks import outage
        from conformance.target import Hook, Node
        hook = Hook(down=({PY!r}, "-c", "open({str(state)!r}, 'w').write('down')"),
                    up=({PY!r}, "-c", "import os, time; time.sleep(0.3); os.remove({str(state)!r})"))
        with outage(Node("node1", "h", hooks=hook), "node", max_outage=60):
            Path({str(ready)!r}).write_text("in outage")
            time.sleep(60)
    """)
    child = subprocess.Popen(python_script(script), cwd=Path(__file__).resolve().parents[3],  # the checkout root, so -c imports this conformance
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():  # bounded poll: the child signals readiness through a file
            assert child.poll() is None, child.communicate()[0].decode()
            assert time.monotonic() < deadline, "child never entered the outage"
            time.sleep(0.05)
        assert state.exists()
        child.send_signal(signal.SIGINT)
        output = child.communicate(timeout=20)[0].decode()
    finally:
        if child.poll() is None:
            child.kill()
    assert "KeyboardInterrupt" in output
    assert not state.exists(), "up did not run after Ctrl-C"


def test_watchdog_ends_an_outage_after_max_outage(tmp_path: Path) -> None:
    state = tmp_path / "state"
    node = Node("node1", "mx1.example.test", hooks=flag_hook(state))
    with outage(node, "node", max_outage=0.3) as record:
        deadline = time.monotonic() + 10
        while record.is_down and time.monotonic() < deadline:  # is_down ends once `up` has returned
            time.sleep(0.05)
        assert not state.exists(), "the outage outlasted max_outage"
        assert record.expired
    assert [r.action for r in record.runs] == ["down", "up"]  # up ran once, not again at exit
    assert "max_outage watchdog" in record.summary()


def test_failing_down_still_runs_up_and_raises(tmp_path: Path) -> None:
    state = tmp_path / "state"
    hook = Hook(down=(PY, "-c", f"open({str(state)!r}, 'w'); print('disk full'); raise SystemExit(2)"),
                up=flag_hook(state).up)
    entered = False
    with (pytest.raises(HookError, match=r"down hook for node on node1 .*exit 2.*disk full"),
          outage(Node("node1", "h", hooks=hook), "node", max_outage=30)):
        entered = True
    assert not entered and not state.exists()


def test_failing_up_raises_with_exit_code_and_output(tmp_path: Path) -> None:
    hook = Hook(down=(PY, "-c", "pass"), up=(PY, "-c", f"print('cannot start {SECRET}'); raise SystemExit(7)"))
    with (pytest.raises(HookError) as info,
          outage(Node("node1", "h", hooks=hook), "node", max_outage=30, secrets=(SECRET,))):
        pass
    message = str(info.value)
    assert "up hook" in message and "exit 7" in message and "cannot start <redacted>" in message
    assert SECRET not in message


def test_missing_hook_is_a_clear_error() -> None:
    with (pytest.raises(HookError, match="target has no outage hooks for auth on node node1"),
          outage(Node("node1", "h"), "auth", max_outage=30)):
        pass
