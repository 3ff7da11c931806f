"""User enumeration: VRFY/EXPN, login answers and timing for unknown vs known users, RCPT harvesting.

Safety rails: no valid password is ever sent here; the known user is only tried with a wrong
password, the *same* one throughout a run, so a server that ignores repeats of one wrong password
(LOCK-STALE-01) counts it once. Nothing reaches DATA (RSET, QUIT).
"""

from __future__ import annotations

import asyncio
import math
import secrets as _random
import statistics
from dataclasses import dataclass, field

from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.auth.sasl import (
    SaslReply,
    advertised_mechanisms,
    end_session,
    is_preauth,
    login_once,
    tls_session,
)
from conformance.probes.smtp.session import SmtpSession
from conformance.probes.smtp.wire import SmtpReply
from conformance.probes.wire.config import ProbeConfig, scrubbed
from conformance.probes.wire.outcome import Attempt, LocalError, ProbeError, ServerUnavailable, attempt
from conformance.target import Endpoint


def unknown_address(domain: str, prefix: str = "mailconform-nouser") -> str:
    """An address that no real mailbox has: a random local part in the target's own domain."""
    return f"{prefix}-{_random.token_hex(5)}@{domain}"


# --- VRFY / EXPN ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VrfyResult:
    known: str
    unknown: str
    vrfy_known: str
    vrfy_unknown: str
    expn_known: str
    vrfy_known_code: int
    vrfy_unknown_code: int
    expn_known_code: int

    @property
    def vrfy_confirms(self) -> bool:
        """RFC 5321 3.5.3: 250/251 mean the address was verified."""
        return self.vrfy_known_code in (250, 251)

    @property
    def expn_expands(self) -> bool:
        return self.expn_known_code in (250, 251)

    @property
    def vrfy_tells_apart(self) -> bool:
        """Different codes for a known and an unknown user reveal who exists, whatever the codes."""
        return self.vrfy_known_code != self.vrfy_unknown_code


async def probe_vrfy(endpoint: Endpoint, cfg: ProbeConfig, *, known: str, unknown: str) -> Attempt[VrfyResult]:
    """VRFY a known and an unknown address and EXPN the known one (inside TLS when STARTTLS is offered)."""
    transcript = cfg.transcript(endpoint)

    async def run() -> VrfyResult:
        async with SmtpSession(endpoint, cfg, transcript) as smtp:
            await smtp.open_secured()
            vk = await smtp.vrfy(known)
            vu = await smtp.vrfy(unknown)
            ek = await smtp.command(f"EXPN {known}")
            await smtp.quit()
        return VrfyResult(known, unknown, str(vk), str(vu), str(ek), vk.code, vu.code, ek.code)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


# --- login answers and timing -----------------------------------------------------------------------------

# The timing test (ENUM-TIMING-01). A leak is declared when the medians of PAIRS interleaved samples per
# user kind differ by at least TIMING_THRESHOLD *and* a two-sided Mann-Whitney U test gives p < ALPHA.
# The median floor carries the false-alarm rate: with equal timing, 8 of 15 samples of one group would
# have to be hit by load spikes its interleaved partners escaped. Simulated on a loaded 2-core profile
# (exponential jitter, 20 % spikes of 20-300 ms; tests/probes/auth/test_auth_enumeration.py): false alarms
# <= 0.2 % per endpoint, a 150 ms difference caught >= 98 % (100 % with jitter alone). The U test keeps
# a median gap from a couple of outliers in a small group from counting.
PAIRS = 15                 # interleaved samples per user kind
TIMING_THRESHOLD = 0.050   # seconds between the medians that count as a difference an attacker can use
ALPHA = 0.05               # two-sided Mann-Whitney U level


@dataclass(frozen=True)
class LoginSample:
    known: bool
    outcome: LoginOutcome
    code: str
    text: str         # the reply's words without code or tag: what an attacker compares
    reply: str
    seconds: float


@dataclass(frozen=True)
class TimingVerdict:
    known_median: float
    unknown_median: float
    u: float
    p_value: float
    n_known: int
    n_unknown: int

    @property
    def difference(self) -> float:
        return self.known_median - self.unknown_median

    @property
    def leaks(self) -> bool:
        return abs(self.difference) >= TIMING_THRESHOLD and self.p_value < ALPHA


@dataclass(frozen=True)
class EnumerationResult:
    mechanism: str
    known_user: str
    unknown_user: str
    samples: tuple[LoginSample, ...] = field(repr=False)
    known_accepted: bool   # the wrong password was accepted: AUTH-WRONG-01's finding, nothing to compare
    preauth: bool = False  # IMAP greeted with PREAUTH: no login to compare (STARTTLS-PREAUTH-01's finding)
    throttled: str | None = None  # a temporary answer (lock, throttle) ended the sampling early

    def rejected(self, known: bool) -> list[LoginSample]:
        """Samples the server answered as a plain rejection (not throttled or locked)."""
        return [s for s in self.samples if s.known is known and s.outcome is LoginOutcome.REJECTED]

    def answers(self, known: bool) -> frozenset[tuple[str, str]]:
        """Distinct (code, text) answers for one kind, throttling and locks left out."""
        return frozenset((s.code, s.text) for s in self.rejected(known))

    def timing(self) -> TimingVerdict | None:
        known = [s.seconds for s in self.rejected(True)]
        unknown = [s.seconds for s in self.rejected(False)]
        if len(known) < PAIRS // 2 or len(unknown) < PAIRS // 2:
            return None
        u, p = mann_whitney(known, unknown)
        return TimingVerdict(statistics.median(known), statistics.median(unknown), u, p, len(known), len(unknown))


def mann_whitney(a: list[float], b: list[float]) -> tuple[float, float]:
    """U of ``a`` against ``b`` and its two-sided p-value (normal approximation with tie correction;
    accurate enough at n >= 8 per group, and conservative in the tails we use)."""
    n1, n2 = len(a), len(b)
    ranked = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(ranked)
    ties = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    r1 = sum(r for r, (_, group) in zip(ranks, ranked) if group == 0)
    u = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return u, 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return u, math.erfc(max(z, 0.0) / math.sqrt(2))


async def probe_login_enumeration(endpoint: Endpoint, cfg: ProbeConfig, *, known_user: str, unknown_user: str,
                                  wrong_password: str, pairs: int = PAIRS,
                                  require_verified_tls: bool = True) -> Attempt[EnumerationResult]:
    """``pairs`` sessions, each with one wrong-password login for the unknown and for the known user,
    in alternating order (interleaving spreads load spikes over both groups). Only the login exchange
    is timed (the reply to AUTH / LOGIN), not the TCP and TLS setup. Two failures per session stay
    below the three after which RFC 4954 4 lets a server hang up."""
    transcript = cfg.transcript(endpoint)
    loop = asyncio.get_running_loop()

    async def run() -> EnumerationResult:
        samples: list[LoginSample] = []
        mechanism = ""
        kept_lines = 0
        for index in range(pairs):
            async with tls_session(endpoint, cfg, transcript, require_verified_tls=require_verified_tls) as session:
                if is_preauth(session):
                    return EnumerationResult("", known_user, unknown_user, (), False, preauth=True)
                mechanism = mechanism or _mechanism(advertised_mechanisms(session), endpoint.protocol)
                order = (False, True) if index % 2 == 0 else (True, False)
                for known in order:
                    user = known_user if known else unknown_user
                    started = loop.time()
                    answer: SaslReply = await login_once(session, mechanism, user, wrong_password)
                    elapsed = loop.time() - started
                    samples.append(LoginSample(known, answer.outcome, answer.code, answer.text, answer.reply, elapsed))
                    if answer.outcome is LoginOutcome.ACCEPTED:
                        await end_session(session)
                        return EnumerationResult(mechanism, known_user, unknown_user, tuple(samples), known)
                    if answer.outcome is LoginOutcome.TEMPORARY:
                        # locked or throttled: more failures would only keep it so (and count against it)
                        transcript.note(f"temporary answer ({answer.reply}): sampling stopped")
                        await end_session(session)
                        return EnumerationResult(mechanism, known_user, unknown_user, tuple(samples), False,
                                                 throttled=answer.reply)
                await end_session(session)
            # the evidence keeps the first session in full; the others repeat it and would only bury it
            if index == 0:
                transcript.note(f"further sessions repeat this exchange ({pairs} in all); their lines are omitted")
                kept_lines = len(transcript.lines)
            else:
                del transcript.lines[kept_lines:]
        return EnumerationResult(mechanism, known_user, unknown_user, tuple(samples), False)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


def _mechanism(advertised: frozenset[str], protocol: str) -> str:
    choices = ("PLAIN", "LOGIN") if protocol == "smtp" else ("LOGIN-COMMAND", "PLAIN")
    for mechanism in choices:
        if mechanism in advertised:
            return mechanism
    raise LocalError(f"no password mechanism offered inside TLS (advertised: {', '.join(sorted(advertised))})")


# --- RCPT harvesting ------------------------------------------------------------------------------------

RCPT_LIMIT = 30            # unknown recipients one session may try before we call it unlimited
SLOW_REPLY = 1.5           # seconds: a reply this slow (and 10x the first ones) is a deliberate slowdown


@dataclass(frozen=True)
class RcptLimitResult:
    tried: int                        # RCPT commands sent
    answered: tuple[str, ...]         # each reply, in order (one line each)
    cut_off_after: int | None         # unknown recipients answered before a 421 / hang-up
    slowed_after: int | None          # unknown recipients answered before a reply took SLOW_REPLY
    accepts_unknown: bool             # the first unknown recipient got a 2xx: nothing to harvest at RCPT
    mail_reply: str

    @property
    def limited(self) -> bool:
        return self.cut_off_after is not None or self.slowed_after is not None or self.accepts_unknown


async def probe_rcpt_limit(endpoint: Endpoint, cfg: ProbeConfig, *, domain: str, limit: int = RCPT_LIMIT,
                           sender: str = "probe@mailconform.invalid") -> Attempt[RcptLimitResult]:
    """One session: MAIL FROM, then RCPT TO unknown users of ``domain`` until the server cuts the session
    (421 or hang-up), slows down, or ``limit`` is reached. Then RSET and QUIT: never DATA."""
    transcript = cfg.transcript(endpoint)
    loop = asyncio.get_running_loop()

    async def run() -> RcptLimitResult:
        async with SmtpSession(endpoint, cfg, transcript) as smtp:
            await smtp.open_secured()
            mail = await smtp.mail(sender)
            if mail.permanent:  # e.g. a sender domain that does not resolve: the null sender is always taken
                await smtp.rset()
                mail = await smtp.mail("")
            if mail.transient:
                raise ServerUnavailable(f"MAIL FROM answered {mail}")
            if not mail.positive:
                raise LocalError(f"cannot start a transaction: MAIL FROM:<{sender}> answered {mail}")
            answered: list[str] = []
            times: list[float] = []
            cut = slowed = None
            for index in range(limit):
                started = loop.time()
                try:
                    reply: SmtpReply = await smtp.rcpt(unknown_address(domain))
                except ProbeError as exc:  # 421 (ServerUnavailable) or a hang-up: cut off
                    answered.append(f"(session ended: {exc})")
                    cut = index
                    break
                elapsed = loop.time() - started
                answered.append(str(reply))
                if index == 0 and reply.positive:
                    await _close(smtp)
                    return RcptLimitResult(1, tuple(answered), None, None, True, str(mail))
                baseline = statistics.median(times[:3]) if times else elapsed
                times.append(elapsed)
                if elapsed >= SLOW_REPLY and elapsed >= 10 * baseline:
                    slowed = index
                    break
                if index >= 1 and index % 5 == 0:
                    transcript.note(f"{index} unknown recipients tried")
            await _close(smtp)
        return RcptLimitResult(len(answered), tuple(answered), cut, slowed, False, str(mail))

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


async def _close(smtp: SmtpSession) -> None:
    try:
        await smtp.rset()
    except ProbeError:
        pass
    await smtp.quit()
