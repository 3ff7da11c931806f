"""Relay and identity: open relay with the classic address forms, unauthenticated submission, sender
spoofing by an authenticated user.

Safety rails: every probe stops before DATA and ends with RSET and QUIT, so nothing is relayed. The
one exception is a relay sink the operator names in the target (``relay_sink``, an address they own):
a relay that accepted RCPT is then confirmed at DATA with a short message to that sink, and only to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.auth.sasl import end_session, logged_in
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
from conformance.target import Endpoint, Secret

DEFAULT_FOREIGN = "relay-test@mailconform.invalid"  # RFC 2606 .invalid: undeliverable wherever it leaks
PROBE_SENDER = "probe@mailconform.invalid"


class Refusal(StrEnum):
    """Why a MAIL or RCPT was (not) taken; tells 530 "STARTTLS first" from 530 "authentication required"."""

    ACCEPTED = "accepted"
    STARTTLS_FIRST = "starttls-first"     # RFC 3207 4: 530 5.7.0 Must issue a STARTTLS command first
    AUTH_REQUIRED = "auth-required"       # RFC 4954 6: 530 5.7.0 Authentication required
    RELAY_DENIED = "relay-denied"         # 550/554 5.7.1 (RFC 5321 3.6.2 policy refusal)
    NOT_OWNER = "not-owner"               # 553/550 5.7.1 sender address not owned
    UNKNOWN_USER = "unknown-user"         # 550 5.1.1
    TEMPORARY = "temporary"               # 4xx
    OTHER = "other"


_OWNERSHIP = re.compile(r"\bown(?:s|ed|er|ership)?\b")
# Refusals that say "not without authentication" (RFC 4954 6, RFC 3207 4, RFC 5321 3.6.2 policy, RFC 3463 5.7.x)
POLICY_REFUSALS = frozenset({Refusal.AUTH_REQUIRED, Refusal.STARTTLS_FIRST, Refusal.RELAY_DENIED, Refusal.NOT_OWNER})


def classify(reply: SmtpReply) -> Refusal:
    text = reply.text.lower()
    if reply.positive:
        return Refusal.ACCEPTED
    if reply.transient:
        return Refusal.TEMPORARY
    if reply.code == 530 or (reply.enhanced or "") == "5.7.0":
        # both RFCs use 530 5.7.0: only the words tell them apart
        return Refusal.STARTTLS_FIRST if "tls" in text else Refusal.AUTH_REQUIRED
    if (reply.enhanced or "") == "5.1.1":
        return Refusal.UNKNOWN_USER
    if reply.code == 553 or _OWNERSHIP.search(text):  # a word, not "own" inside "unknown"
        return Refusal.NOT_OWNER
    if (reply.enhanced or "").startswith("5.7.") or "relay" in text:
        return Refusal.RELAY_DENIED
    return Refusal.OTHER


def relay_forms(foreign: str, local_domain: str) -> dict[str, str]:
    """The plain foreign recipient and the classic tricks that hide it behind the local domain
    (RFC 5321 3.6.1 source routes, the %-hack and UUCP bang paths of RFC 2505 2.2, a quoted local part)."""
    local, _, domain = foreign.rpartition("@")
    return {
        "plain": foreign,
        "percent-hack": f"{local}%{domain}@{local_domain}",
        "bang-path": f"{domain}!{local}@{local_domain}",
        "source-route": f"@{local_domain}:{foreign}",
        "quoted-local-part": f'"{foreign}"@{local_domain}',
    }


@dataclass(frozen=True)
class RcptAttempt:
    form: str
    recipient: str
    reply: str
    kind: Refusal
    confirmed: str | None = None   # the reply at the end of DATA to the relay sink, if one was named

    @property
    def accepted(self) -> bool:
        return self.kind is Refusal.ACCEPTED


@dataclass(frozen=True)
class RelayFormsResult:
    mail_reply: str
    attempts: tuple[RcptAttempt, ...]
    sink: str | None

    def form(self, name: str) -> RcptAttempt | None:
        return next((a for a in self.attempts if a.form == name), None)


async def _finish(smtp: SmtpSession) -> None:
    try:
        await smtp.rset()
    except ProbeError:
        pass  # what the session showed stands
    await smtp.quit()


async def probe_relay_forms(endpoint: Endpoint, cfg: ProbeConfig, *, local_domain: str,
                            sink: str | None = None, sender: str = PROBE_SENDER) -> Attempt[RelayFormsResult]:
    """Unauthenticated (inside TLS where offered) MAIL FROM, then RCPT TO each relay form, RSET between
    them; never DATA, unless ``sink`` is set: then every accepted form is confirmed in a new session
    by a short message to the sink, and only to it."""
    transcript = cfg.transcript(endpoint)
    forms = relay_forms(sink or DEFAULT_FOREIGN, local_domain)

    async def run() -> RelayFormsResult:
        attempts: list[RcptAttempt] = []
        reverse_path = sender
        async with SmtpSession(endpoint, cfg, transcript) as smtp:
            await smtp.open_secured()
            mail = await smtp.mail(reverse_path)
            if mail.permanent:  # e.g. a sender domain that does not resolve: the null sender is always taken
                await smtp.rset()
                reverse_path = ""
                mail = await smtp.mail(reverse_path)
            if mail.transient:
                raise ServerUnavailable(f"MAIL FROM answered {mail}")
            for name, recipient in forms.items():
                if not mail.positive:
                    break
                reply = await smtp.rcpt(recipient)
                if reply.code == 421:
                    raise ServerUnavailable(f"RCPT answered {reply}")
                attempts.append(RcptAttempt(name, recipient, str(reply), classify(reply)))
                if reply.positive:  # start clean, so each form is judged on its own
                    await smtp.rset()
                    mail = await smtp.mail(reverse_path)
            await _finish(smtp)
        if sink is not None:
            attempts = [await _confirm(endpoint, cfg, transcript, a, reverse_path) if a.accepted else a for a in attempts]
        return RelayFormsResult(str(mail), tuple(attempts), sink)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


async def _confirm(endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript, accepted: RcptAttempt,
                   sender: str) -> RcptAttempt:
    """DATA to the operator's relay sink only: the 250 at the end of DATA confirms the relay."""
    transcript.note(f"confirming the {accepted.form} relay with a message to the relay sink only")
    message = (f"From: <{sender}>\r\nTo: <{accepted.recipient}>\r\n"
               f"Subject: mailconform relay confirmation ({accepted.form}) via {endpoint.id}\r\n\r\n"
               "This gateway relayed a message from an unauthenticated client.\r\n").encode()
    async with SmtpSession(endpoint, cfg, transcript) as smtp:
        await smtp.open_secured()
        mail = await smtp.mail(sender)
        rcpt = await smtp.rcpt(accepted.recipient) if mail.positive else mail
        if not rcpt.positive:
            await _finish(smtp)
            return RcptAttempt(accepted.form, accepted.recipient, accepted.reply, accepted.kind,
                               f"not confirmed: {rcpt}")
        reply = await smtp.data(message)
        await smtp.quit()
    return RcptAttempt(accepted.form, accepted.recipient, accepted.reply, accepted.kind, str(reply))


@dataclass(frozen=True)
class SubmissionResult:
    before_tls: str | None          # MAIL FROM before STARTTLS (None on implicit TLS)
    before_tls_kind: Refusal | None
    mail_reply: str                 # MAIL FROM inside TLS, unauthenticated
    mail_kind: Refusal
    rcpt_reply: str | None          # RCPT TO the test account, if MAIL was taken
    rcpt_kind: Refusal | None

    @property
    def accepted(self) -> bool:
        """Mail would be taken from an unauthenticated client."""
        return self.rcpt_kind is Refusal.ACCEPTED

    @property
    def refused_for_auth(self) -> bool:
        """MAIL or RCPT inside TLS was refused for want of authentication or by policy: the evidence a
        pass needs. "User unknown" for the test account's own address proves nothing about authentication."""
        return self.mail_kind in POLICY_REFUSALS or self.rcpt_kind in POLICY_REFUSALS


async def probe_unauth_submission(endpoint: Endpoint, cfg: ProbeConfig, *, sender: str,
                                  recipient: str) -> Attempt[SubmissionResult]:
    """Before TLS (where STARTTLS applies) and inside TLS, MAIL FROM and RCPT TO without AUTH.
    RSET and QUIT; never DATA."""
    transcript = cfg.transcript(endpoint)

    async def run() -> SubmissionResult:
        async with SmtpSession(endpoint, cfg, transcript) as smtp:
            await smtp.connect()
            caps = await smtp.ehlo()
            before = None
            if not endpoint.implicit_tls:
                before = await smtp.mail(sender)
                await smtp.rset()
                if caps.starttls:
                    await smtp.starttls()
            mail = await smtp.mail(sender)
            if mail.transient:
                raise ServerUnavailable(f"MAIL FROM answered {mail}")
            rcpt = await smtp.rcpt(recipient) if mail.positive else None
            await _finish(smtp)
        return SubmissionResult(str(before) if before else None, classify(before) if before else None,
                                str(mail), classify(mail), str(rcpt) if rcpt else None,
                                classify(rcpt) if rcpt else None)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


@dataclass(frozen=True)
class SpoofResult:
    own_mail: str          # MAIL FROM the account's own address (control: must be taken)
    forged: str
    forged_mail: str
    forged_rcpt: str | None
    forged_kind: Refusal

    @property
    def spoofing_accepted(self) -> bool:
        return self.forged_kind is Refusal.ACCEPTED


async def probe_sender_spoofing(endpoint: Endpoint, cfg: ProbeConfig, *, username: str, password: Secret | str,
                                own: str, forged: str, recipient: str, retry_after: float = 0.0,
                                ) -> Attempt[SpoofResult]:
    """Log in (inside TLS, verified certificate), MAIL FROM our own address (control), RSET, then MAIL
    FROM ``forged`` and RCPT TO ``recipient``. RSET and QUIT: never DATA."""
    transcript = cfg.transcript(endpoint)

    async def run() -> SpoofResult:
        async with logged_in(endpoint, cfg, transcript, "PLAIN", username, password,
                             retry_after=retry_after) as (session, login):
            assert isinstance(session, SmtpSession)
            if login.outcome is LoginOutcome.TEMPORARY:
                raise ServerUnavailable(f"cannot log in now: {login.reply}")
            if login.outcome is not LoginOutcome.ACCEPTED:
                raise LocalError(f"the test account could not log in ({login.reply}); check its password")
            control = await session.mail(own)
            if not control.positive:
                await end_session(session)
                raise LocalError(f"MAIL FROM the account's own address <{own}> was refused ({control}): "
                                 "cannot judge spoofing")
            await session.rset()
            mail = await session.mail(forged)
            rcpt = await session.rcpt(recipient) if mail.positive else None
            final = rcpt if rcpt is not None else mail
            await _finish(session)
        return SpoofResult(str(control), forged, str(mail), str(rcpt) if rcpt else None, classify(final))

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)
