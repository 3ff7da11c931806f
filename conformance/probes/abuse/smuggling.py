"""SMTP smuggling (SEC Consult, December 2023; CVE-2023-51764/51765/51766): end-of-data forms other
than <CRLF>.<CRLF> (RFC 5321 4.1.1.4, 2.3.8).

For each form one small message goes to the target's own test account (and nowhere else). Its body
holds the form followed by a harmless ``NOOP``: a server that ends DATA at the form answers the
message, then the NOOP and the rest of the body as commands, so replies arrive before the 221 to our
QUIT. A conforming server keeps it all as body and answers once. Counting replies up to QUIT's 221
needs no waiting on silence, so the verdict does not depend on timing: replies that arrived ahead of a
reset still count (``wire.streams`` reads them first), each form has its own session, and a session
lost before QUIT's 221 with no second reply is tried once more.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.auth.sasl import logged_in
from conformance.probes.smtp.session import SmtpSession
from conformance.probes.smtp.wire import SmtpReply
from conformance.probes.wire.config import ProbeConfig, scrubbed
from conformance.probes.wire.outcome import (
    Attempt,
    LocalError,
    ProbeError,
    ProbeTimeout,
    ProtocolViolation,
    ServerUnavailable,
    Unreachable,
    attempt,
)
from conformance.target import Endpoint, Secret

# name -> the bytes that a lenient parser takes as the end of DATA
FORMS: dict[str, bytes] = {
    "<LF>.<LF>": b"\n.\n",
    "<CR>.<CR>": b"\r.\r",
    "<LF>.<CR><LF>": b"\n.\r\n",
    "<CR><LF>.<LF>": b"\r\n.\n",
}
MAX_TRAILING_REPLIES = 10


@dataclass(frozen=True)
class FormResult:
    form: str
    data_reply: str                     # the reply to the message ("" if none came)
    trailing_replies: tuple[str, ...]   # replies between the end of our message and QUIT's 221
    lost: str | None = None             # how the session ended before QUIT's 221, in words, if it did
    sessions: int = 1                   # 2 when a lost session was tried once more

    @property
    def ends_data(self) -> bool:
        """More than one reply to one message: the server ended DATA at the form."""
        return bool(self.trailing_replies)

    @property
    def smuggled_command_ran(self) -> bool:
        """The command after the form was taken (2xx): a second message could follow it."""
        return any(reply[:1] == "2" for reply in self.trailing_replies)

    @property
    def undetermined(self) -> bool:
        """No second reply, but no 221 either, and no permanent refusal of the message: where DATA ended
        is not shown (a reset may have cut the replies off)."""
        return not self.ends_data and self.lost is not None and self.data_reply[:1] != "5"


@dataclass(frozen=True)
class SmugglingResult:
    forms: tuple[FormResult, ...]

    @property
    def vulnerable(self) -> tuple[FormResult, ...]:
        return tuple(f for f in self.forms if f.ends_data)

    @property
    def undetermined(self) -> tuple[FormResult, ...]:
        return tuple(f for f in self.forms if f.undetermined)


def probe_body(form: str) -> bytes:
    marker = FORMS[form]
    return (f"Subject: mailconform end-of-data probe {form}\r\n\r\n".encode()
            + b"This message tests how the server ends DATA." + marker + b"NOOP smuggled\r\n"
            + b"If you can read this line, the server kept everything as body (correct).\r\n.\r\n")


async def probe_smuggling(endpoint: Endpoint, cfg: ProbeConfig, *, sender: str, recipient: str,
                          username: str | None = None, password: Secret | str | None = None,
                          forms: tuple[str, ...] = tuple(FORMS), retry_after: float = 0.0,
                          ) -> Attempt[SmugglingResult]:
    """One session per form (a server that split the message is left in an unknown state). With
    ``username`` the session logs in first (submission); the recipient must be the test account."""
    transcript = cfg.transcript(endpoint)

    async def session(form: str) -> FormResult:
        opened = False
        try:
            if username is not None and password is not None:
                async with logged_in(endpoint, cfg, transcript, "PLAIN", username, password,
                                     retry_after=retry_after) as (smtp, login):
                    assert isinstance(smtp, SmtpSession)
                    if login.outcome is LoginOutcome.TEMPORARY:
                        raise ServerUnavailable(f"cannot log in now: {login.reply}")
                    if login.outcome is not LoginOutcome.ACCEPTED:
                        raise LocalError(f"the test account could not log in ({login.reply})")
                    opened = True
                    return await _send(smtp, form, sender, recipient)
            async with SmtpSession(endpoint, cfg, transcript) as smtp:
                await smtp.open_secured()
                opened = True
                return await _send(smtp, form, sender, recipient)
        except (Unreachable, ProbeTimeout, ServerUnavailable) as exc:
            if not opened:  # no session at all says nothing of this form: the endpoint's own reason stands
                raise
            return FormResult(form, "", (), str(exc))  # this form only; the others stand

    async def one(form: str) -> FormResult:
        transcript.note(f"end-of-data form {form}")
        result = await session(form)
        if result.undetermined:  # a reset can cut replies off: one more session decides
            transcript.note(f"end-of-data form {form}: {result.lost}; trying once more on a new connection")
            result = replace(await session(form), sessions=2)
        return result

    async def run() -> SmugglingResult:
        results = []
        for form in forms:  # one after the other: a per-host connection budget is the operator's
            results.append(await one(form))
        return SmugglingResult(tuple(results))

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


async def _send(smtp: SmtpSession, form: str, sender: str, recipient: str) -> FormResult:
    for reply in (await smtp.mail(sender), await smtp.rcpt(recipient)):
        if reply.transient:
            raise ServerUnavailable(f"cannot send the probe message now: {reply}")
        if not reply.positive:
            raise LocalError(f"cannot send the probe message from <{sender}> to <{recipient}>: {reply}")
    start = await smtp.command("DATA")
    if start.code != 354:
        raise ProtocolViolation(f"DATA answered {start}")
    data_reply, lost = await _after_sending(smtp, probe_body(form), "the probe message")
    if data_reply is None:
        return FormResult(form, "", (), lost)
    trailing, lost = await _replies_until_quit(smtp)
    return FormResult(form, str(data_reply), tuple(str(r) for r in trailing), lost)


async def _after_sending(smtp: SmtpSession, data: bytes, what: str) -> tuple[SmtpReply | None, str | None]:
    """Send and read one reply; a server that hangs up while we send may still have answered first
    (a bare-LF refusal), so its reply is read even then. Returns the reply or how the session was lost."""
    lost = None
    try:
        await smtp.send_raw(data, what=what, expect_reply=False)
    except Unreachable as exc:
        lost = str(exc)
    try:
        return await smtp.read_reply(), lost
    except (Unreachable, ProtocolViolation) as exc:
        return None, lost or str(exc)


async def _replies_until_quit(smtp: SmtpSession) -> tuple[list[SmtpReply], str | None]:
    """Every reply before QUIT's 221, including those that arrived ahead of a reset; and, if no 221
    came, how the session ended."""
    lost = None
    try:
        await smtp.send_raw(b"QUIT\r\n", expect_reply=False)
    except Unreachable as exc:
        lost = str(exc)
    trailing: list[SmtpReply] = []
    for _ in range(MAX_TRAILING_REPLIES):
        try:
            reply = await smtp.read_reply()
        except ProbeError as exc:
            return trailing, lost or str(exc)
        if reply.code == 221:
            return trailing, None
        trailing.append(reply)
    return trailing, None
