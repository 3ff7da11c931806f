"""User enumeration: VRFY/EXPN, login answers and timing for unknown vs known users, RCPT harvesting.

Safety rails: no valid password is ever sent here; the known user is only tried with a wrong
password, the *same* one throughout a run, so a server that ignores repeats of one wrong password
(LOCK-STALE-01) counts it once. Nothing reaches DATA (RSET, QUIT).
"""

from __future__ import annotations

import asyncio
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
from conformance.probes.auth.timing import BATCH, MAX_LOOKS, TimingVerdict
from conformance.probes.smtp.session import SmtpSession
from conformance.probes.smtp.wire import SmtpReply
from conformance.probes.wire.config import ProbeConfig, scrubbed
from conformance.probes.wire.outcome import (
    Attempt,
    LocalError,
    ProbeError,
    ServerUnavailable,
    Transcript,
    attempt,
)
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

PAIRS = BATCH              # interleaved pairs per look; the probe looks up to MAX_LOOKS times
SLOW_FAILURE = 0.5         # seconds: a server this slow to fail delays on purpose (Dovecot: 2 s, others 3 s)
SIDE_BY_SIDE = 4           # sessions sampled at once on such a server, within the per-host budget


@dataclass(frozen=True)
class LoginSample:
    known: bool
    outcome: LoginOutcome
    code: str
    text: str         # the reply's words without code or tag: what an attacker compares
    reply: str
    seconds: float

    @property
    def plain(self) -> bool:
        """A plain rejection: what timing compares (not a lock, throttle or acceptance)."""
        return self.outcome is LoginOutcome.REJECTED


@dataclass(frozen=True)
class EnumerationResult:
    mechanism: str
    known_user: str
    unknown_user: str
    samples: tuple[LoginSample, ...] = field(repr=False)
    known_accepted: bool   # the wrong password was accepted: AUTH-WRONG-01's finding, nothing to compare
    preauth: bool = False  # IMAP greeted with PREAUTH: no login to compare (STARTTLS-PREAUTH-01's finding)
    throttled: str | None = None  # a temporary answer (lock, throttle) ended the sampling early
    side_by_side: int = 1         # sessions sampled at once (more than one on a server that delays failures)

    def rejected(self, known: bool) -> list[LoginSample]:
        """Samples the server answered as a plain rejection (not throttled or locked)."""
        return [s for s in self.samples if s.known is known and s.outcome is LoginOutcome.REJECTED]

    def answers(self, known: bool) -> frozenset[tuple[str, str]]:
        """Distinct (code, text) answers for one kind, throttling and locks left out."""
        return frozenset((s.code, s.text) for s in self.rejected(known))

    def timing(self) -> TimingVerdict | None:
        """The judgement of ENUM-TIMING-01 (probes.auth.timing); None with too few plain rejections."""
        return TimingVerdict.of([s.seconds for s in self.rejected(True)], [s.seconds for s in self.rejected(False)])


async def probe_login_enumeration(endpoint: Endpoint, cfg: ProbeConfig, *, known_user: str, unknown_user: str,
                                  wrong_password: str, pairs: int = PAIRS, looks: int = MAX_LOOKS,
                                  require_verified_tls: bool = True) -> Attempt[EnumerationResult]:
    """Sessions of one wrong-password login each for the unknown and the known user, in alternating order
    (interleaving spreads load spikes over both groups), ``pairs`` more per look until the timing verdict
    is settled or ``looks`` looks are done. Only the login exchange is timed (the reply to AUTH / LOGIN),
    not TCP and TLS. Two failures per session stay below the three after which RFC 4954 4 lets a server
    hang up. A server that takes SLOW_FAILURE to fail is sampled SIDE_BY_SIDE sessions at a time."""
    transcript = cfg.transcript(endpoint)

    async def run() -> EnumerationResult:
        sampler = _Sampler(endpoint, cfg, transcript, (known_user, unknown_user, wrong_password),
                           require_verified_tls)
        await sampler.pair(0, transcript)  # in full in the evidence; it also shows how slow failures are
        if not sampler.stopped:
            transcript.note("further sessions repeat this exchange; their lines are omitted")
        slow = bool(sampler.samples) and min(s.seconds for s in sampler.samples) >= SLOW_FAILURE
        budget = cfg.limiter.max_per_host if cfg.limiter else SIDE_BY_SIDE
        side_by_side = max(1, min(SIDE_BY_SIDE, budget)) if slow else 1
        done = 1
        for look in range(1, looks + 1):
            if not sampler.stopped and done < pairs * look:
                await sampler.batch(range(done, pairs * look), side_by_side)
                done = pairs * look
            verdict = TimingVerdict.of([s.seconds for s in sampler.samples if s.known and s.plain],
                                       [s.seconds for s in sampler.samples if not s.known and s.plain])
            if sampler.stopped or verdict is None or verdict.settled:
                break
        return EnumerationResult(sampler.mechanism, known_user, unknown_user, tuple(sampler.samples),
                                 sampler.known_accepted, sampler.preauth, sampler.throttled, side_by_side)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


class _Sampler:
    """The sessions of one enumeration probe and what they found; ``stopped`` once a login was accepted,
    a temporary answer came (more failures would only prolong a lock and count against it) or PREAUTH."""

    def __init__(self, endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript,
                 logins: tuple[str, str, str], require_verified_tls: bool) -> None:
        self.endpoint, self.cfg, self.transcript = endpoint, cfg, transcript
        self.known_user, self.unknown_user, self.wrong_password = logins
        self.require_verified_tls = require_verified_tls
        self.samples: list[LoginSample] = []
        self.mechanism = ""
        self.known_accepted = self.preauth = self.stopped = False
        self.throttled: str | None = None

    async def batch(self, indices: range, side_by_side: int) -> None:
        """These pairs, ``side_by_side`` sessions at a time; a failing session's lines join the evidence."""
        gate = asyncio.Semaphore(side_by_side)

        async def one(index: int) -> None:
            async with gate:
                scratch = self.cfg.transcript(self.endpoint)
                try:
                    await self.pair(index, scratch)
                except BaseException:
                    self.transcript.lines.extend(scratch.lines)
                    raise

        outcomes = await asyncio.gather(*(one(i) for i in indices), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def pair(self, index: int, transcript: Transcript) -> None:
        if self.stopped:
            return
        loop = asyncio.get_running_loop()
        async with tls_session(self.endpoint, self.cfg, transcript,
                               require_verified_tls=self.require_verified_tls) as session:
            if is_preauth(session):
                self.preauth = self.stopped = True
                return
            self.mechanism = self.mechanism or _mechanism(advertised_mechanisms(session), self.endpoint.protocol)
            for known in ((False, True) if index % 2 == 0 else (True, False)):
                started = loop.time()
                answer: SaslReply = await login_once(session, self.mechanism,
                                                     self.known_user if known else self.unknown_user,
                                                     self.wrong_password)
                self.samples.append(LoginSample(known, answer.outcome, answer.code, answer.text, answer.reply,
                                                loop.time() - started))
                if answer.outcome is LoginOutcome.ACCEPTED:
                    self.known_accepted, self.stopped = known, True
                    break
                if answer.outcome is LoginOutcome.TEMPORARY:
                    transcript.note(f"temporary answer ({answer.reply}): sampling stopped")
                    self.throttled, self.stopped = answer.reply, True
                    break
            await end_session(session)


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
