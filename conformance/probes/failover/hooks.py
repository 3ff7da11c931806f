"""Operator hooks: the commands that take a node (or one of its components) down and bring it back.

Safety rails, because these commands act on a production-like system:

- argv lists only, never a shell (a target file cannot smuggle in ``; rm -rf``);
- every run has a timeout, after which the process is killed;
- output (stdout and stderr together) is captured, secrets scrubbed, kept as evidence;
- ``outage()`` runs ``up`` whatever happens inside the block (a failed check, an exception,
  Ctrl-C), and a watchdog runs it at the latest after ``max_outage`` seconds.

Errors:

    HookError           a hook exited non-zero, timed out or could not be started
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from conformance.probes.wire.config import scrub
from conformance.target import Hook, Node

OUTPUT_TAIL = 2000  # characters of a hook's output kept: enough for an error, not a log dump


class HookError(Exception):
    """A hook failed; the message names it, its exit code and the tail of its output (scrubbed)."""

    def __init__(self, message: str, run: HookRun | None = None) -> None:
        super().__init__(message)
        self.run = run


@dataclass(frozen=True)
class HookRun:
    """One finished hook command."""

    node: str
    kind: str          # outage kind: node, delivery, auth, directory, stall
    action: str        # "down" or "up"
    argv: tuple[str, ...]
    returncode: int | None  # None: killed after the timeout, or could not be started
    output: str        # tail of stdout+stderr, secrets scrubbed
    seconds: float
    error: str = ""    # why it did not run to a zero exit

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.error

    def describe(self) -> str:
        status = self.error or f"exit {self.returncode}"
        tail = self.output.strip().splitlines()[-5:]
        return (f"{self.action} hook for {self.kind} on {self.node} ({' '.join(self.argv)}): {status}"
                + (f"; output: {' | '.join(tail)}" if tail else ""))


def run_hook(argv: Sequence[str], *, timeout: float, node: str = "", kind: str = "node", action: str = "down",
             secrets: tuple[str, ...] = (), shield: bool = False) -> HookRun:
    """Run one hook command without a shell and wait for it (at most ``timeout`` seconds; then it is
    killed). Never raises for the command's own failure: the HookRun says what happened.

    ``shield``: a KeyboardInterrupt while waiting does not abandon the command (used for ``up``, which
    must finish); the interrupt is re-raised once the command is done."""
    env = dict(os.environ, MAILCONFORM_NODE=node, MAILCONFORM_OUTAGE=kind, MAILCONFORM_ACTION=action)
    started = time.monotonic()

    def finished(code: int | None, output: str, error: str = "") -> HookRun:
        return HookRun(node, kind, action, tuple(scrub(a, secrets) for a in argv), code,
                       scrub(output, secrets)[-OUTPUT_TAIL:], time.monotonic() - started, scrub(error, secrets))

    # Output goes to a temporary file, not a pipe: a hook that starts a daemon (``dovecot``,
    # ``postfix start``) leaves it holding the hook's stdout, and a pipe would then never see EOF.
    with tempfile.TemporaryFile() as sink:
        try:
            process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)
        except OSError as exc:
            return finished(None, "", f"cannot start: {exc.strerror or exc}")
        interrupted: KeyboardInterrupt | None = None
        deadline = started + timeout
        timed_out = False
        try:
            while True:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                    break
                except subprocess.TimeoutExpired:
                    _kill(process)
                    timed_out = True
                    break
                except KeyboardInterrupt as exc:
                    if not shield:
                        _kill(process)
                        raise
                    interrupted = exc  # Ctrl-C while bringing a node back: finish bringing it back first
        finally:
            if process.poll() is None:
                _kill(process)
        sink.seek(0)
        output = sink.read()
    if timed_out:
        return finished(None, output.decode("utf-8", "replace"), f"timed out after {timeout:g} s (killed)")
    run = finished(process.returncode, output.decode("utf-8", "replace"),
                   "" if process.returncode == 0 else f"exit {process.returncode}")
    if interrupted is not None:
        raise interrupted
    return run


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the hook and what it started in its own session (a daemon that detached is left alone)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        process.kill()
    process.wait()


@dataclass
class OutageRecord:
    """What happened during one outage: the hook runs, how long the component was out, and whether
    the watchdog had to end it (then measurements taken late in the block saw the component back)."""

    node: str
    kind: str
    max_outage: float
    runs: list[HookRun] = field(default_factory=list)
    down_at: float | None = None
    up_at: float | None = None
    expired: bool = False

    @property
    def seconds_down(self) -> float | None:
        if self.down_at is None or self.up_at is None:
            return None
        return self.up_at - self.down_at

    @property
    def is_down(self) -> bool:
        return self.down_at is not None and self.up_at is None

    def summary(self) -> str:
        took = f"{self.seconds_down:.1f} s" if self.seconds_down is not None else "n/a"
        return (f"{self.kind} on {self.node} down for {took}"
                + (f" (ended by the {self.max_outage:g} s max_outage watchdog)" if self.expired else ""))


@contextlib.contextmanager
def outage(node: Node, kind: str, *, max_outage: float, secrets: tuple[str, ...] = (),
           hook: Hook | None = None) -> Iterator[OutageRecord]:
    """Take ``kind`` ("node", "delivery", "auth", "directory", "stall") of ``node`` down for the block.

    ``up`` runs exactly once: when the block ends (normally, by an exception or by Ctrl-C), or when
    ``max_outage`` seconds have passed, whichever comes first. Raises HookError when there is no hook
    for ``kind``, when ``down`` fails (after running ``up`` anyway: the component may be half down),
    or when ``up`` fails — unless the block raised, whose exception then wins (the HookError is
    chained as its context)."""
    hook = hook or node.outage_hook(kind)
    if hook is None:
        raise HookError(f"target has no outage hooks for {kind} on node {node.name}")
    record = OutageRecord(node.name, kind, max_outage)
    lock = threading.Lock()

    def bring_up(by_watchdog: bool) -> HookRun | None:
        with lock:
            if record.up_at is not None:
                return None
            run = run_hook(hook.up, timeout=hook.timeout, node=node.name, kind=kind, action="up",
                           secrets=secrets, shield=True)
            record.runs.append(run)
            record.up_at = time.monotonic()
            record.expired = by_watchdog
            return run

    # Not a daemon: should the interpreter be exiting while the watchdog runs `up`, it waits for it.
    watchdog = threading.Timer(max_outage, bring_up, args=(True,))
    try:
        record.down_at = time.monotonic()
        watchdog.start()  # before `down` returns: a hanging down hook still counts against max_outage
        with lock:  # a watchdog firing meanwhile waits for `down` to finish, then brings it up
            down = run_hook(hook.down, timeout=hook.timeout, node=node.name, kind=kind, action="down",
                            secrets=secrets)
            record.runs.append(down)
        if not down.ok:
            raise HookError(down.describe(), down)
        yield record
    except BaseException:
        watchdog.cancel()
        _finish(bring_up, record, raising=True)
        raise
    watchdog.cancel()
    _finish(bring_up, record, raising=False)


def _finish(bring_up: Callable[[bool], HookRun | None], record: OutageRecord, *, raising: bool) -> None:
    """Run `up` (if the watchdog has not); report a failed `up` unless another error is on its way
    (then the failure is still in ``record.runs``, and Ctrl-C or the first error wins)."""
    bring_up(False)
    failed = next((r for r in record.runs if r.action == "up" and not r.ok), None)
    if failed is not None and not raising:
        raise HookError(failed.describe(), failed)
