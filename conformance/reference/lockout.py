"""The password check and lockout engine shared by SMTP and IMAP on both nodes.

Good behaviour (what the lockout checks hold a gateway to): per account, consecutive failures count;
a repeat of a wrong password already seen among the account's last 10 distinct wrong passwords counts
once (a client retrying a stale password is not an attacker guessing); at ``threshold`` the account
is locked for ``duration`` seconds, and while locked every attempt - the right password too - gets a
temporary answer; a success resets the count; unknown users are tracked exactly like real ones (a lock
must not reveal that a user exists); attempts while the password backend is down are not counted;
concurrent successful sessions are not limited. Failures older than ``window`` seconds of quiet are
forgotten (measured from the last failure, so a slow client is not penalised for being slow).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from conformance.reference.flaws import Flaws

STALE_HISTORY = 10
BURST_LIMIT = 3        # burst_login_limit: a 4th concurrent session of one user is refused


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"          # wrong password (or unknown user: same answer)
    LOCKED = "locked"              # temporarily locked: a temporary answer
    UNAVAILABLE = "unavailable"    # the password backend is down: a temporary answer


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    known_user: bool               # only for flaws that leak it; good replies never depend on it
    username: str


@dataclass
class _Account:
    failures: int = 0
    last_failure: float = -math.inf
    locked_until: float = -math.inf
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=STALE_HISTORY))


class AuthEngine:
    """Thread-safe: the servers call it on their loop, tests reset it from another thread."""

    def __init__(self, passwords: dict[str, str], flaws: Flaws, *, threshold: int = 5, window: float = 3.0,
                 duration: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._passwords = {u.lower(): p for u, p in passwords.items()}
        self.flaws = flaws
        self.threshold, self.window, self.duration = threshold, window, duration
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[tuple[str, str], _Account] = {}
        self._active: dict[str, int] = {}
        # burst_login_limit and outage_counts_failures hit only these users (None: everyone). The gateway
        # scopes them to the lockout account: the suite's own parallel probes and the failover family's
        # outage retries use the test account, and would otherwise lock it and cascade into other checks.
        self.flaw_users: frozenset[str] | None = None
        self.tokens: dict[str, str] = {}            # user -> the bearer token the gateway issued at start
        self.oauth_only: frozenset[str] = frozenset()  # users whose basic (password) authentication is retired

    def reset(self) -> None:
        with self._lock:
            self._accounts.clear()

    def login(self, protocol: str, username: str, password: str, *, backend_up: bool = True,
              proof: Callable[[str], bool] | None = None) -> Decision:
        """Check one login attempt (protocol 'smtp', 'imap' or 'pop3') and account for it. Challenge-response
        mechanisms pass ``proof`` (called with the stored password) and, as ``password``, the client's
        response: it then only tells repeats apart."""
        user = username.lower()
        known = user in self._passwords
        if user in self.oauth_only and not self.flaws.basic_auth_still_on:
            return Decision(Verdict.REJECTED, known, user)  # retired, not guessed: nothing to count
        separate = self.flaws.per_protocol_lockout or (protocol == "pop3" and self.flaws.pop3_separate_lockout)
        key = (protocol if separate else "*", user)
        with self._lock:
            now = self._clock()
            if self._locked(key, now):
                return Decision(Verdict.LOCKED, known, user)
            if not backend_up:
                if self.flaws.outage_counts_failures and self._flaw_hits(user):  # retrying clients lock
                    self._fail(key, user, password, known, now, stale_counts=True)
                return Decision(Verdict.UNAVAILABLE, known, user)
            check = proof or (lambda stored: hmac.compare_digest(password.encode(), stored.encode()))
            correct = known and (self.flaws.accept_any_password or check(self._passwords[user]))
            if (correct and self.flaws.burst_login_limit and self._flaw_hits(user)
                    and self._active.get(user, 0) >= BURST_LIMIT):
                self._fail(key, user, password, known, now)
                return Decision(Verdict.REJECTED, known, user)
            if correct:
                if not self.flaws.success_no_reset:
                    self._accounts.pop(key, None)
                return Decision(Verdict.ACCEPTED, known, user)
            self._fail(key, user, password, known, now)
            return Decision(Verdict.REJECTED, known, user)

    def login_token(self, username: str, token: str, *, backend_up: bool = True) -> Decision:
        """A bearer-token login. Refused tokens are not counted: a random token is no password guess, and a
        client retrying an expired token must not lock its user out."""
        user = username.lower()
        known = user in self._passwords
        if not backend_up:
            return Decision(Verdict.UNAVAILABLE, known, user)
        issued = self.tokens.get(user)
        if issued is not None and hmac.compare_digest(token.encode(), issued.encode()):
            return Decision(Verdict.ACCEPTED, known, user)
        return Decision(Verdict.REJECTED, known, user)

    def stored_password(self, username: str) -> str | None:
        """What a challenge-response mechanism's server half needs (a real server keeps SCRAM keys)."""
        return self._passwords.get(username.lower())

    def session_started(self, username: str) -> None:
        with self._lock:
            self._active[username.lower()] = self._active.get(username.lower(), 0) + 1

    def session_ended(self, username: str) -> None:
        with self._lock:
            left = self._active.get(username.lower(), 0) - 1
            if left > 0:
                self._active[username.lower()] = left
            else:
                self._active.pop(username.lower(), None)

    def _flaw_hits(self, user: str) -> bool:
        return self.flaw_users is None or user in self.flaw_users

    def _locked(self, key: tuple[str, str], now: float) -> bool:
        if self.flaws.lockout_collateral and any(a.locked_until > now for a in self._accounts.values()):
            return True
        account = self._accounts.get(key)
        return account is not None and account.locked_until > now

    def _fail(self, key: tuple[str, str], user: str, password: str, known: bool, now: float, *,
              stale_counts: bool = False) -> None:
        if not known and self.flaws.lockout_oracle:
            return  # the flaw: unknown users are never tracked, so they never lock
        account = self._accounts.setdefault(key, _Account())
        if now - account.last_failure > self.window:
            account.failures = 0
            account.recent.clear()
        account.last_failure = now
        # a digest, so no password is kept in memory longer than the attempt
        pair = hashlib.sha256(f"{user}\0{password}".encode()).hexdigest()
        if pair in account.recent and not (self.flaws.stale_password_counted or stale_counts):
            return
        if pair not in account.recent:
            account.recent.append(pair)
        account.failures += 1
        if account.failures >= self.threshold and not self.flaws.no_lockout:
            account.locked_until = math.inf if self.flaws.permanent_lockout else now + self.duration
            account.failures = 0
            account.recent.clear()
