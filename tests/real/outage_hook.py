"""Operator hooks for the real-server failover test, as a real operator would write them (argv, no shell).

    python tests/real/outage_hook.py dovecot-stop WORKDIR      # Dovecot's own stop, wait until gone
    python tests/real/outage_hook.py dovecot-start WORKDIR     # start, wait for LMTP, flush Postfix's queue
    python tests/real/outage_hook.py directory-stop WORKDIR    # the PostgreSQL user directory: pg_ctl stop -m fast
    python tests/real/outage_hook.py directory-start WORKDIR   # pg_ctl start, wait until it accepts connections
    python tests/real/outage_hook.py lmtp-hide WORKDIR         # only delivery: Dovecot's LMTP socket unreachable
    python tests/real/outage_hook.py lmtp-restore WORKDIR      # reachable again, flush Postfix's queue
    python tests/real/outage_hook.py node-stop WORKDIR         # postfix stop, then Dovecot's stop
    python tests/real/outage_hook.py node-start WORKDIR        # Dovecot, then Postfix (it needs the sockets)
    python tests/real/outage_hook.py dovecot-freeze WORKDIR    # SIGSTOP Dovecot's master and children
    python tests/real/outage_hook.py dovecot-thaw WORKDIR      # SIGCONT them

WORKDIR is a ``tests.real.servers.MailServers`` work directory. Exits non-zero with a reason on failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# Run as a script by the suite's hook runner (argv, any working directory): the project root makes the
# rig's own helpers importable, so the hook finds processes and pg_ctl exactly as MailServers does.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.real.directory_db import DirectoryError, pg_ctl_argv
from tests.real.processes import dovecot_pid_file, postfix_pid_file, process_alive, read_pid

WAIT = 20.0  # seconds: bounded waits for a daemon to go or come


def _lmtp_answers(workdir: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(workdir / "sockets" / "lmtp"))
            return sock.recv(64).startswith(b"220")
        except OSError:
            return False


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"outage_hook: {what} within {WAIT:g} s")
        time.sleep(0.05)  # polling a daemon's state: it gives no event to wait on


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc (Dovecot's service processes are its master's children)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _signal_dovecot(workdir: Path, signum: int) -> None:
    """Signal our own Dovecot's processes, found from its master.pid: never by name."""
    pid = read_pid(dovecot_pid_file(workdir))
    if pid is None:
        raise SystemExit(f"outage_hook: no Dovecot master.pid under {workdir}")
    for member in _tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signum)


def _pg_ctl(workdir: Path, action: str) -> None:
    """Stop or start the PostgreSQL user directory of WORKDIR by its own pg_ctl, as user postgres
    (``-w -t`` in the argv bounds the wait for the server to go or to accept connections)."""
    try:
        argv = pg_ctl_argv(workdir, action)
    except DirectoryError as exc:
        raise SystemExit(f"outage_hook: {exc}") from None
    subprocess.run(argv, check=True, user="postgres", group="postgres", extra_groups=[], cwd=workdir / "pgsql",
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=WAIT + 20)


def _start_dovecot(conf: Path, workdir: Path) -> None:
    subprocess.run(["dovecot", "-c", str(conf)], check=True, stdout=subprocess.DEVNULL)
    _until(lambda: _lmtp_answers(workdir), "Dovecot's LMTP did not answer")


def main(action: str, workdir: Path) -> None:
    conf = workdir / "dovecot" / "dovecot.conf"
    if action == "dovecot-stop":
        pid = read_pid(dovecot_pid_file(workdir))
        subprocess.run(["doveadm", "-c", str(conf), "stop"], check=True)
        if pid is not None:
            _until(lambda: not process_alive(pid), "Dovecot did not stop")
    elif action == "dovecot-start":
        _start_dovecot(conf, workdir)
        # Postfix retries deferred mail after minutes (minimal_backoff_time): an operator flushes.
        subprocess.run(["postqueue", "-c", str(workdir / "postfix"), "-f"], check=True)
    elif action == "lmtp-hide":
        # The listening socket stays open in Dovecot; only its name goes, so Postfix cannot connect
        # while IMAP and SASL keep working: delivery alone is down.
        (workdir / "sockets" / "lmtp").rename(workdir / "sockets" / "lmtp.down")
    elif action == "lmtp-restore":
        (workdir / "sockets" / "lmtp.down").rename(workdir / "sockets" / "lmtp")
        _until(lambda: _lmtp_answers(workdir), "Dovecot's LMTP did not answer")
        subprocess.run(["postqueue", "-c", str(workdir / "postfix"), "-f"], check=True)
    elif action == "node-stop":
        postfix = read_pid(postfix_pid_file(workdir))
        subprocess.run(["postfix", "-c", str(workdir / "postfix"), "stop"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if postfix is not None:
            _until(lambda: not process_alive(postfix), "Postfix did not stop")
        main("dovecot-stop", workdir)
    elif action == "node-start":
        _start_dovecot(conf, workdir)
        subprocess.run(["postfix", "-c", str(workdir / "postfix"), "start"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif action == "dovecot-freeze":
        _signal_dovecot(workdir, signal.SIGSTOP)
    elif action == "dovecot-thaw":
        _signal_dovecot(workdir, signal.SIGCONT)
    elif action == "directory-stop":
        _pg_ctl(workdir, "stop")
    elif action == "directory-start":
        _pg_ctl(workdir, "start")
    else:
        raise SystemExit(f"outage_hook: unknown action {action!r}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], Path(sys.argv[2]))
