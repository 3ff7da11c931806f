"""Lockout sequences against the target's dedicated lockout account: typed records of what was sent
and what the server answered, for the lockout checks to judge.

Safety rails (the suite talks to production-like systems):

- only the account handed in (the target's ``lockout`` account) is ever attacked; the one login of
  another account (``collateral``) uses that account's correct password, once;
- wrong passwords are random throwaways (``throwaway_credentials``), never a real password;
- every sequence has an attempt budget derived from the policy's threshold (capped at NIST
  SP 800-63B's 100) and every wait is bounded by the policy's lock duration plus a margin;
- a sequence that locked the account polls, with the correct password, until it is unlocked again
  (or the bound passes), so the next sequence starts from a clean account and the unlock time is
  measured rather than assumed.

Sequences run one at a time: they share one account. Independent logins inside a sequence (the
correct password on every other endpoint, a burst) run concurrently.
"""

from __future__ import annotations

import asyncio
import secrets as _random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from conformance.probes.auth.logins import LoginOutcome, LoginResult, probe_login
from conformance.probes.wire.config import ProbeConfig, scrub, throwaway_credentials
from conformance.probes.wire.connect import HostLimiter
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Account, Endpoint, Policy, Secret

NIST_MAX_FAILURES = 100   # SP 800-63B §5.2.2: no more than 100 consecutive failed attempts per account
BURST_SIZE = 10           # clients reconnecting at once after an outage (issue 7)
PAST_THRESHOLD = 3        # failures a lock episode makes beyond the threshold
# An answer this slow (seconds) is throttling: a server that delays failures (Dovecot's auth_failure_delay
# is 2 s, its per-address penalty grows to 15 s) slows guessing down; a refusal that comes only after
# such a delay (Postfix gives up on a held-back Dovecot answer with 454 4.7.0) is that throttle, not a lock.
THROTTLE_FLOOR = 1.0


@dataclass(frozen=True)
class LockoutPlan:
    """How hard and how long a lockout sequence may push, from the target's policy."""

    threshold: int          # failures after which the account must be locked or throttled
    unlock_bound: float     # how long to wait for a lock to lift: lock duration + margin
    poll_interval: float    # between correct-password polls while waiting for the unlock

    @classmethod
    def from_policy(cls, policy: Policy) -> LockoutPlan:
        duration = max(policy.lockout_duration, policy.lockout_window)
        return cls(threshold=max(1, min(policy.lockout_threshold, NIST_MAX_FAILURES)),
                   unlock_bound=duration + max(2.0, 0.25 * duration),
                   poll_interval=min(max(duration / 10, 0.1), 30.0))

    @property
    def budget(self) -> int:
        """Wrong-password attempts one sequence may make on the lockout account."""
        return self.threshold + 1

    @property
    def episode_budget(self) -> int:
        """Wrong passwords of a lock episode: the threshold, and a few more so that the answers past
        it (where an existing and an unknown account must look alike) are more than one sample."""
        return self.threshold + PAST_THRESHOLD


@dataclass(frozen=True)
class Login:
    """One login of a sequence: which account and password kind, where, when, and the answer."""

    label: str                    # wrong, correct, unknown-user, stale, collateral, poll, burst, outage
    endpoint: str
    at: float                     # seconds since the sequence started
    outcome: LoginOutcome | None  # None: no answer (connection failed, timed out, no TLS)
    code: str                     # "535 5.7.8", "NO [UNAVAILABLE]", or "no answer"
    reply: str                    # the server's words, or why there was no answer (scrubbed)
    elapsed: float                # seconds from sending the credentials to the answer (no answer: time waited)
    transcript: tuple[str, ...] = field(default=(), repr=False, compare=False)
    error: Outcome | None = None  # why there was no answer (LOCAL_ERROR: we refused to send the password)

    @property
    def accepted(self) -> bool:
        return self.outcome is LoginOutcome.ACCEPTED

    @property
    def says_wrong_password(self) -> bool:
        """535 / NO [AUTHENTICATIONFAILED]: a client prompts its user for a new password."""
        return self.outcome is LoginOutcome.REJECTED

    def brief(self) -> str:
        return f"{self.label}@{self.endpoint} {self.code} ({self.elapsed * 1000:.0f} ms)"


@dataclass(frozen=True)
class Unlock:
    """Polling with the correct password until the account lets us in again."""

    unlocked: bool
    seconds: float | None         # from the last failure to the first accepted poll
    bound: float
    polls: tuple[Login, ...]

    def brief(self) -> str:
        if self.unlocked:
            return f"unlocked {self.seconds:.1f} s after the last failure ({len(self.polls)} polls)"
        last = self.polls[-1].code if self.polls else "none"
        return f"still locked after {self.bound:.1f} s ({len(self.polls)} polls, last answer {last})"


@dataclass(frozen=True)
class Episode:
    """One lock: ``budget`` consecutive failures on ``via`` (and the same sequence for a user that
    does not exist), then the correct password on ``via`` and everywhere else, one login of another
    account, and the polls until the lock lifts."""

    via: str
    failures: tuple[Login, ...]
    unknown: tuple[Login, ...]
    locked_correct: Login
    elsewhere: tuple[Login, ...]
    collateral: Login | None
    unlock: Unlock
    threshold: int

    @property
    def locked(self) -> bool:
        """The lock took hold where the failures were made: the correct password was refused, promptly."""
        return not self.locked_correct.accepted and self.locked_correct.elapsed < THROTTLE_FLOOR

    @property
    def throttled(self) -> bool:
        """Every failure from the threshold on was held back at least ``THROTTLE_FLOOR`` seconds."""
        past = self.failures[self.threshold - 1:]
        return bool(past) and min(x.elapsed for x in past) >= THROTTLE_FLOOR

    @property
    def answers_while_locked(self) -> tuple[Login, ...]:
        """Every correct-password answer while the account should be locked (polls included)."""
        polls = tuple(p for p in self.unlock.polls if not p.accepted)
        return (self.locked_correct, *self.elsewhere, *polls)

    @property
    def failure_delays(self) -> tuple[float, ...]:
        return tuple(f.elapsed for f in self.failures)

    @property
    def wrong_accepted(self) -> tuple[Login, ...]:
        """Wrong passwords the server let in: then there were no failures to count at all."""
        return tuple(f for f in (*self.failures, *self.unknown) if f.accepted)


@dataclass(frozen=True)
class LoginRun:
    """A sequence without a planned lock (stale password, reset, burst, outage): its logins in order,
    the final correct-password login(s), and the unlock polls if it locked the account anyway."""

    logins: tuple[Login, ...]
    final: tuple[Login, ...]
    unlock: Unlock | None = None
    notes: tuple[str, ...] = ()

    @property
    def final_accepted(self) -> bool:
        return bool(self.final) and all(f.accepted for f in self.final)

    @property
    def wrong_accepted(self) -> tuple[Login, ...]:
        return tuple(x for x in self.logins if x.accepted and x.label in ("wrong", "stale", "unknown-user"))


class LockoutDriver:
    """Logs the lockout account in and out on chosen endpoints and times everything from one start."""

    def __init__(self, cfg: ProbeConfig, plan: LockoutPlan, account: Account, *, domain: str | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.plan = plan
        self.account = account
        self.domain = domain or account.address.rpartition("@")[2] or "invalid"
        self.started = time.monotonic()
        self.last_failure: float | None = None
        self.progress = progress  # a line for the operator while the run waits minutes for a lock to lift
        self._said_at: float | None = None

    def now(self) -> float:
        return time.monotonic() - self.started

    async def login(self, endpoint: Endpoint, label: str, username: str, password: Secret | str, *,
                    ready: Callable[[], Awaitable[None]] | None = None, cfg: ProbeConfig | None = None) -> Login:
        at = self.now()
        t0 = time.monotonic()
        # IMAP LOGIN is what every client can do; SMTP AUTH PLAIN likewise (RFC 4954, RFC 4616)
        mechanism = "LOGIN" if endpoint.protocol == "imap" else "PLAIN"
        result: Attempt[LoginResult] = await probe_login(endpoint, cfg or self.cfg, username, password,
                                                         mechanism=mechanism, ready=ready)
        if result.ok and result.result is not None:
            r = result.result
            # a hostile server may echo what it was sent: its words are scrubbed like the transcript
            reply = scrub(r.reply, (cfg or self.cfg).secrets)
            login = Login(label, endpoint.id, at, r.outcome, scrub(r.code, (cfg or self.cfg).secrets) or reply[:20],
                          reply, r.elapsed, result.transcript)
        else:
            # no answer: the time waited (a timeout while the server holds a failure back is throttling too)
            waited = time.monotonic() - t0 if result.outcome is Outcome.INCONCLUSIVE else 0.0
            login = Login(label, endpoint.id, at, None, "no answer", result.reason, waited, result.transcript,
                          result.outcome)
        if label in ("wrong", "stale", "unknown-user"):
            self.last_failure = time.monotonic()
        return login

    async def wrong(self, endpoint: Endpoint, *, username: str | None = None, password: str | None = None,
                    label: str = "wrong") -> Login:
        return await self.login(endpoint, label, username or self.account.username,
                                password or throwaway_credentials()[1])

    async def correct(self, endpoint: Endpoint, label: str = "correct") -> Login:
        return await self.login(endpoint, label, self.account.username, self.account.password)

    def unknown_user(self) -> str:
        return f"mailconform-nouser-{_random.token_hex(4)}@{self.domain}"

    def mark_counted(self) -> None:
        """The logins just made may have been counted as failures (a burst, an outage): measure an
        unlock from now."""
        self.last_failure = time.monotonic()

    async def wait_unlocked(self, endpoint: Endpoint, bound: float | None = None) -> Unlock:
        """Poll with the correct password until accepted, at most ``bound`` seconds after the last
        failure (the plan's unlock bound by default). A compliant server never counts these polls."""
        bound = self.plan.unlock_bound if bound is None else bound
        since = self.last_failure or time.monotonic()
        polls: list[Login] = []
        while True:
            poll = await self.correct(endpoint, "poll")
            polls.append(poll)
            waited = time.monotonic() - since
            if poll.accepted:
                return Unlock(True, waited, bound, tuple(polls))
            # no TLS, or a certificate that does not verify: the password is never sent, waiting changes nothing
            if poll.error is Outcome.LOCAL_ERROR or waited + self.plan.poll_interval > bound:
                return Unlock(False, None, bound, tuple(polls))
            self._say_waiting(waited, bound)
            await asyncio.sleep(self.plan.poll_interval)

    def _say_waiting(self, waited: float, bound: float) -> None:
        """At most once a minute: a quiet run must not look hung during a lock of many minutes."""
        now = time.monotonic()
        if self.progress is None or self._said_at is not None and now - self._said_at < PROGRESS_EVERY:
            return
        self._said_at = now
        self.progress(f"lockout: waiting for the lock to lift, {_minutes(bound - waited)} of at most "
                      f"{_minutes(bound)} left")


PROGRESS_EVERY = 60.0  # seconds between two "waiting for the lock to lift" lines


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{max(seconds, 0):.0f} s"


async def ensure_unlocked(driver: LockoutDriver, endpoint: Endpoint, bound: float | None = None,
                          ) -> Attempt[Unlock] | None:
    """None when the lockout account logs in (now or within the bound); else an inconclusive attempt
    saying why no sequence can start."""
    driver.last_failure = None
    unlock = await driver.wait_unlocked(endpoint, bound)
    driver.last_failure = None
    if unlock.unlocked:
        return None
    last = unlock.polls[-1]
    transcript = last.transcript
    if last.outcome is None:
        return Attempt(endpoint.id, Outcome.INCONCLUSIVE, None, f"the lockout account cannot log in: {last.reply}",
                       transcript)
    return Attempt(endpoint.id, Outcome.INCONCLUSIVE, None,
                   f"the lockout account's correct password is not accepted ({last.code}: {last.reply}) "
                   f"within {unlock.bound:.0f} s: still locked by an earlier check, or a wrong password "
                   f"in the target", transcript)


def _done(endpoint: str, result: object, *keep: Login) -> Attempt[object]:
    transcript = tuple(line for login in keep for line in (f"-- {login.label}", *login.transcript))
    return Attempt(endpoint, Outcome.COMPLETED, result, "", transcript)


async def lock_episode(driver: LockoutDriver, via: Endpoint, others: Sequence[Endpoint],
                       collateral: Account | None = None, *, twin: bool = True, start_bound: float | None = None,
                       ) -> Attempt[Episode]:
    """Lock the account with ``episode_budget`` consecutive wrong passwords on ``via``, try the correct
    password on ``via`` and on every endpoint of ``others`` (concurrently), log ``collateral`` in once,
    poll until the lock lifts; then (``twin``) the same failures for a user that does not exist.
    The twin runs after the unlock, not interleaved: a server whose throttling is per client address
    (Dovecot's auth penalty, reset by a success) then puts both sequences through the same ramp."""
    blocked = await ensure_unlocked(driver, via, start_bound)
    if blocked is not None:
        return blocked  # type: ignore[return-value]
    plan = driver.plan
    failures = [await driver.wrong(via) for _ in range(plan.episode_budget)]
    locked_correct = await driver.correct(via)
    elsewhere = tuple(await asyncio.gather(*(driver.correct(e, "elsewhere") for e in others)))
    other = None
    if collateral is not None:
        other = await driver.login(via, "collateral", collateral.username, collateral.password)
    unlock = await driver.wait_unlocked(via)
    unknown: list[Login] = []
    if twin:  # the unknown user's lock (if any) is left to expire: nobody owns that name
        nobody = driver.unknown_user()
        unknown = [await driver.wrong(via, username=nobody, label="unknown-user")
                   for _ in range(plan.episode_budget)]
    episode = Episode(via.id, tuple(failures), tuple(unknown), locked_correct, elsewhere, other, unlock,
                      plan.threshold)
    return _done(via.id, episode, locked_correct, *unknown[-1:])  # type: ignore[return-value]


async def stale_sequence(driver: LockoutDriver, endpoint: Endpoint, *, start_bound: float | None = None,
                         ) -> Attempt[LoginRun]:
    """The same wrong password ``budget`` times (a client holding an old password), then the correct
    one: a server that counts the repeats once lets it in."""
    blocked = await ensure_unlocked(driver, endpoint, start_bound)
    if blocked is not None:
        return blocked  # type: ignore[return-value]
    old = throwaway_credentials()[1]
    logins = [await driver.wrong(endpoint, password=old, label="stale") for _ in range(driver.plan.budget)]
    final = await driver.correct(endpoint)
    unlock = None if final.accepted else await driver.wait_unlocked(endpoint)
    return _done(endpoint.id, LoginRun(tuple(logins), (final,), unlock), final)  # type: ignore[return-value]


async def reset_sequence(driver: LockoutDriver, endpoint: Endpoint, *, start_bound: float | None = None,
                         ) -> Attempt[LoginRun]:
    """threshold-1 failures, the correct password, threshold-1 failures again, the correct password:
    only a server whose success reset the count lets the last login in."""
    blocked = await ensure_unlocked(driver, endpoint, start_bound)
    if blocked is not None:
        return blocked  # type: ignore[return-value]
    below = max(driver.plan.threshold - 1, 1)
    logins: list[Login] = []
    for round_ in range(2):
        logins += [await driver.wrong(endpoint) for _ in range(below)]
        if round_ == 0:
            logins.append(await driver.correct(endpoint, "reset"))
    final = await driver.correct(endpoint)
    unlock = None if final.accepted else await driver.wait_unlocked(endpoint)
    return _done(endpoint.id, LoginRun(tuple(logins), (final,), unlock), final)  # type: ignore[return-value]


async def burst(driver: LockoutDriver, endpoints: Sequence[Endpoint], size: int = BURST_SIZE, *,
                start_bound: float | None = None) -> Attempt[LoginRun]:
    """``size`` concurrent correct-password logins spread over ``endpoints``, released together once
    all have TLS up (a barrier, bounded by the probe timeout), then one more login: all must succeed."""
    first = endpoints[0]
    blocked = await ensure_unlocked(driver, first, start_bound)
    if blocked is not None:
        return blocked  # type: ignore[return-value]
    run = await burst_now(driver, endpoints, size)
    keep = [x for x in run.logins if not x.accepted][:1]
    return _done(first.id, run, run.final[-1], *keep)  # type: ignore[return-value]


async def burst_now(driver: LockoutDriver, endpoints: Sequence[Endpoint], size: int = BURST_SIZE, *,
                    note: str = "") -> LoginRun:
    """The burst itself, on an account assumed usable (after an outage's recovery, or ``burst``)."""
    first = endpoints[0]
    arrived = 0
    everyone = asyncio.Event()

    async def ready() -> None:
        nonlocal arrived
        arrived += 1
        if arrived >= size:
            everyone.set()
        try:  # a client that never got its TLS up must not hold the others forever
            await asyncio.wait_for(everyone.wait(), driver.cfg.timeout)
        except TimeoutError:
            pass

    # the burst is the test: lift the per-host politeness cap to its size (the opt-in allows it)
    limit = max(size, driver.cfg.limiter.max_per_host if driver.cfg.limiter else 1)
    cfg = replace(driver.cfg, limiter=HostLimiter(limit))
    logins = tuple(await asyncio.gather(*(
        driver.login(endpoints[i % len(endpoints)], "burst", driver.account.username, driver.account.password,
                     ready=ready, cfg=cfg) for i in range(size))))
    driver.mark_counted()
    notes = tuple(n for n in (note, f"{arrived} of {size} logins reached the barrier") if n)
    final = await driver.correct(first)
    unlock = None if final.accepted else await driver.wait_unlocked(first)
    return LoginRun(logins, (final,), unlock, notes)


async def during_outage(driver: LockoutDriver, endpoints: Sequence[Endpoint]) -> tuple[Login, ...]:
    """What a user's clients do while the auth backend is out: retry with the correct password,
    ``budget`` times, alternating over ``endpoints``."""
    logins = tuple([await driver.correct(endpoints[i % len(endpoints)], "outage")
                    for i in range(driver.plan.budget)])
    driver.mark_counted()
    return logins


async def after_recovery(driver: LockoutDriver, endpoints: Sequence[Endpoint], bound: float) -> tuple[Login, ...]:
    """The correct password on each endpoint once the backend is back. Only a connection that could
    not be made is retried (the node may still be coming up), within ``bound`` seconds; any answer,
    including a temporary refusal, is final: after recovery the user must get in."""
    results: list[Login] = []
    for endpoint in endpoints:
        deadline = time.monotonic() + bound
        while True:
            login = await driver.correct(endpoint, "after")
            if login.outcome is not None or time.monotonic() + driver.plan.poll_interval > deadline:
                break
            await asyncio.sleep(driver.plan.poll_interval)
        results.append(login)
    return tuple(results)


def summarize(logins: Sequence[Login]) -> str:
    """Answers in order, runs of the same answer folded: '535 5.7.8 x5, 454 4.7.0'."""
    runs: list[list[object]] = []
    for login in logins:
        if runs and runs[-1][0] == login.code:
            runs[-1][1] = int(runs[-1][1]) + 1  # type: ignore[call-overload]
        else:
            runs.append([login.code, 1])
    return ", ".join(f"{code} x{n}" if n != 1 else str(code) for code, n in runs) or "none"


def delays(logins: Sequence[Login]) -> str:
    """Answer delays in milliseconds, in order: where throttling shows."""
    return " ".join(f"{login.elapsed * 1000:.0f}" for login in logins) + " ms"
