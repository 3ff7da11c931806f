"""What every private daemon of the real tier's DNS rig shares: finding its binary, running its own control
command with a timeout, waiting (bounded) for it to answer, and the tail of its log for error messages.
No pytest here."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.real.processes import process_alive, read_pid

STOP_TIMEOUT = 15.0


class DaemonError(RuntimeError):
    """A daemon did not start, answer or stop; the message carries its command's output and its log's tail."""


def which(name: str) -> str | None:
    """The program's path, also where a non-root PATH lacks /usr/sbin."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def missing(*names: str) -> list[str]:
    return [name for name in names if which(name) is None]


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        text = ["(no log yet)"]
    return f"--- {path.name} ---\n" + "\n".join(text)


def run(argv: list[str], what: str, log: Path, timeout: float) -> str:
    """Run a control command; its output is appended to ``log`` (a file, not a pipe: a daemon it starts
    inherits the descriptors and would keep a pipe open for its whole life). DaemonError on failure."""
    binary = which(argv[0])
    if binary is None:
        raise DaemonError(f"{what}: {argv[0]} is not installed (run ci/install-real-servers.sh)")
    with (log.parent / "commands.log").open("a+", encoding="utf-8") as sink:
        start = sink.tell()
        try:
            result = subprocess.run([binary, *argv[1:]], stdin=subprocess.DEVNULL, stdout=sink,
                                    stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DaemonError(f"{what}: {' '.join(argv)} did not return within {timeout:.0f} s\n"
                              + log_tail(log)) from None
        sink.seek(start)
        output = sink.read().strip()
    if result.returncode != 0:
        raise DaemonError(f"{what}: {' '.join(argv)} exited {result.returncode}: {output}\n{log_tail(log)}")
    return output


def wait_until(ready: Callable[[], bool], timeout: float, failure: Callable[[], str]) -> None:
    """Poll ``ready`` until it holds, within one deadline; DaemonError(failure()) after it."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise DaemonError(failure())
        time.sleep(0.05)  # between polls of a daemon that is not there yet; bounded by the deadline


def wait_gone(pid: int | None, what: str) -> str | None:
    """After a stop command: wait for the daemon's process (``pid``, read before the stop: daemons remove
    their PID files) to exit; kill it, by that PID, if it does not."""
    deadline = time.monotonic() + STOP_TIMEOUT
    while pid is not None and process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # a process on its way out; bounded by the deadline
    if pid is not None and process_alive(pid):
        os.kill(pid, 9)  # our own daemon, by its PID: never by name
        return f"{what} did not stop within {STOP_TIMEOUT:.0f} s; killed PID {pid}"
    return None


def stop_and_wait(pid_file: Path, what: str, stop: Callable[[], object]) -> None:
    """The daemon's own stop command, then wait for its process to go (the PID is read first: daemons
    remove their PID files); DaemonError when the command failed with no process left to wait for, or
    when the process had to be killed."""
    pid = read_pid(pid_file)
    error: str | None = None
    try:
        stop()
    except DaemonError as exc:
        error = str(exc)
    error = wait_gone(pid, what) or (error if pid is None else None)
    if error:
        raise DaemonError(error)
