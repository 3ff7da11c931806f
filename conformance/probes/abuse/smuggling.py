"""SMTP smuggling (SEC Consult, December 2023; CVE-2023-51764/51765/51766): end-of-data forms other
than <CRLF>.<CRLF> (RFC 5321 4.1.1.4, 2.3.8).

For each form one small message goes to the target's own test account (and nowhere else). Its body
holds the form followed by a harmless ``NOOP``: a server that ends DATA at the form answers the
message, then the NOOP and the rest of the body as commands, so replies arrive before the 221 to our
QUIT. A conforming server keeps it all as body and answers once. Counting replies up to QUIT's 221
needs no waiting on silence, so the verdict does not depend on timing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.auth.sasl import logged_in
from conformance.probes.smtp.session import SmtpSession
from conformance.probes.smtp.wire import SmtpReply
from conformance.probes.wire.config import ProbeConfig, scrubbed
from conformance.probes.wire.outcome import (
    Attempt,
    LocalError,
    ProbeError,
    ProtocolViolation,
    ServerUnavailable,
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
    data_reply: str
    trailing_replies: tuple[str, ...]   # replies between the end of our message and QUIT's 221

    @property
    def ends_data(self) -> bool:
        return bool(self.trailing_replies)


@dataclass(frozen=True)
class SmugglingResult:
    forms: tuple[FormResult, ...]

    @property
    def vulnerable(self) -> tuple[FormResult, ...]:
        return tuple(f for f in self.forms if f.ends_data)


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

    async def one(form: str) -> FormResult:
        transcript.note(f"end-of-data form {form}")
        if username is not None and password is not None:
            async with logged_in(endpoint, cfg, transcript, "PLAIN", username, password,
                                 retry_after=retry_after) as (session, login):
                assert isinstance(session, SmtpSession)
                if login.outcome is LoginOutcome.TEMPORARY:
                    raise ServerUnavailable(f"cannot log in now: {login.reply}")
                if login.outcome is not LoginOutcome.ACCEPTED:
                    raise LocalError(f"the test account could not log in ({login.reply})")
                return await _send(session, form, sender, recipient)
        async with SmtpSession(endpoint, cfg, transcript) as smtp:
            await smtp.open_secured()
            return await _send(smtp, form, sender, recipient)

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
    data_reply = await smtp.send_raw(probe_body(form), what="the probe message")
    trailing = await _replies_until_quit(smtp)
    return FormResult(form, str(data_reply), tuple(str(r) for r in trailing))


async def _replies_until_quit(smtp: SmtpSession) -> list[SmtpReply]:
    await smtp.send_raw(b"QUIT\r\n", expect_reply=False)
    trailing: list[SmtpReply] = []
    for _ in range(MAX_TRAILING_REPLIES):
        try:
            reply = await smtp.read_reply()
        except (ProbeError, asyncio.IncompleteReadError):
            break
        if reply.code == 221:
            break
        trailing.append(reply)
    return trailing
