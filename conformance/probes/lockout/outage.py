"""The outage lesson (issue 7): the auth backend goes down through the target's operator hooks, the
user's clients keep retrying with the correct password, the backend comes back, and the user must
get in at once, not find the account locked by retries the server could not even check.

The hooks run through ``probes.hooks.outage``: argv without a shell, a timeout, and ``up`` always
runs (block end, error, Ctrl-C, or the ``max_outage`` watchdog).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from conformance.probes.failover.hooks import HookError, OutageRecord, outage
from conformance.probes.lockout.sequences import (
    BURST_SIZE,
    LockoutDriver,
    LockoutPlan,
    Login,
    LoginRun,
    Unlock,
    after_recovery,
    burst_now,
    during_outage,
    ensure_unlocked,
)
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Account, Endpoint, Node

T = TypeVar("T")
OUTAGE_KIND = "auth"


@dataclass(frozen=True)
class OutageRun:
    during: tuple[Login, ...]      # correct-password logins while the auth backend was down
    after: tuple[Login, ...]       # the first answer per endpoint once it was back
    unlock: Unlock | None          # polls until the account let us in, when ``after`` did not
    hooks: tuple[str, ...]         # what each hook run did
    outages: tuple[str, ...]       # per node: how long auth was down (and whether the watchdog ended it)
    burst: LoginRun | None = None  # every client reconnecting at once after recovery (when ``after`` got in)

    @property
    def after_accepted(self) -> bool:
        return bool(self.after) and all(login.accepted for login in self.after)

    @property
    def outage_seen(self) -> bool:
        """At least one login during the outage was not let in: the hook did take auth down."""
        return any(not login.accepted for login in self.during)


def _run(coro: Coroutine[Any, Any, T], bound: float) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, bound)
    return asyncio.run(bounded())


def outage_sequence(cfg: ProbeConfig, plan: LockoutPlan, account: Account, nodes: Sequence[Node],
                    endpoints: Sequence[Endpoint], *, max_outage: float, recovery_bound: float,
                    secrets: tuple[str, ...] = (), burst_size: int = BURST_SIZE) -> Attempt[OutageRun]:
    """Take auth down on ``nodes``, retry the correct password ``plan.budget`` times over
    ``endpoints``, bring auth back, log in once per endpoint and, if that worked, ``burst_size``
    logins at once (0: none), as every client of the user reconnects. Blocking (hooks are processes)."""
    driver = LockoutDriver(cfg, plan, account)
    first = endpoints[0].id
    # every login is bounded by the session budget; the whole sequence by that times its length
    bound = cfg.session_budget * (plan.budget + len(endpoints) + 2) + plan.unlock_bound
    try:
        blocked = _run(ensure_unlocked(driver, endpoints[0]), bound)
    except TimeoutError:
        return Attempt(first, Outcome.INCONCLUSIVE, None, f"the lockout account did not answer within {bound:.0f} s")
    if blocked is not None:
        return blocked  # type: ignore[return-value]
    records: list[OutageRecord] = []
    during: tuple[Login, ...] = ()
    try:
        with contextlib.ExitStack() as stack:
            for node in nodes:
                records.append(stack.enter_context(outage(node, OUTAGE_KIND, max_outage=max_outage, secrets=secrets)))
            during = _run(during_outage(driver, endpoints), bound)
    except HookError as exc:
        return Attempt(first, Outcome.INCONCLUSIVE, None, f"outage hook failed: {exc}", _hook_lines(records))
    except TimeoutError:
        return Attempt(first, Outcome.INCONCLUSIVE, None, f"logins during the outage took longer than {bound:.0f} s",
                       _hook_lines(records))
    after = _run(after_recovery(driver, endpoints, recovery_bound), bound + recovery_bound)
    unlock = None
    burst = None
    if not all(login.accepted for login in after):  # leave the account usable for the next check
        unlock = _run(driver.wait_unlocked(endpoints[0]), bound)
    elif burst_size:
        burst = _run(burst_now(driver, endpoints, burst_size, note="right after recovery from an auth outage"),
                     bound + burst_size * cfg.session_budget)
    run = OutageRun(during, after, unlock, _hook_lines(records), tuple(r.summary() for r in records), burst)
    transcript = tuple(line for login in after for line in (f"-- {login.label}", *login.transcript))
    return Attempt(first, Outcome.COMPLETED, run, "", transcript)


def _hook_lines(records: Sequence[OutageRecord]) -> tuple[str, ...]:
    return tuple(run.describe() for record in records for run in record.runs)
