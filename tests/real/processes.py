"""Our own daemons' processes, found from the PID files in a ``MailServers`` work directory (never by
name). Standard library only: the operator hook script (``outage_hook.py``) imports it too."""

from __future__ import annotations

import os
from pathlib import Path


def postfix_pid_file(workdir: Path) -> Path:
    return workdir / "spool" / "pid" / "master.pid"


def dovecot_pid_file(workdir: Path) -> Path:
    return workdir / "run" / "master.pid"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); a stopped master is reaped by init, so look at its state too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
