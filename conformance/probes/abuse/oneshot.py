"""SMTP abuse probes: open relay and end-of-data smuggling (bare LF).

Safety rails: the relay probe stops before DATA (RSET, QUIT), so nothing is ever relayed. The
smuggling probe sends one small message to a recipient the operator named (the test account).
Both are timing-independent: replies are counted up to the ``221`` of a final QUIT.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from conformance.target import Endpoint

MAX_TRAILING_REPLIES = 10


@dataclass(frozen=True)
class RelayResult:
    sender: str
    recipient: str
    mail_reply: str
    rcpt_reply: str | None
    accepted: bool  # RCPT to a foreign domain accepted without authentication: an open relay


async def probe_open_relay(endpoint: Endpoint, cfg: ProbeConfig, *, sender: str = "probe@mailconform.invalid",
                           recipient: str = "relay-test@mailconform.invalid") -> Attempt[RelayResult]:
    """MAIL FROM / RCPT TO a foreign domain without AUTH (after STARTTLS when offered), then RSET and
    QUIT — never DATA. ``accepted`` is True when the RCPT got a 2xx."""
    transcript = cfg.transcript(endpoint)

    async def run() -> RelayResult:
        async with SmtpSession(endpoint, cfg, transcript) as smtp:
            await smtp.open_secured()
            mail = await smtp.mail(sender)
            rcpt = await smtp.rcpt(recipient) if mail.positive else None
            await smtp.rset()
            await smtp.quit()
            accepted = rcpt is not None and 200 <= rcpt.code < 300
            return RelayResult(sender, recipient, str(mail), str(rcpt) if rcpt else None, accepted)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


@dataclass(frozen=True)
class SmugglingResult:
    data_reply: str
    trailing_replies: tuple[str, ...]  # replies between the end of our message and QUIT's 221
    bare_lf_ends_data: bool            # the server ended DATA at <LF>.<LF>: SMTP smuggling possible


async def probe_bare_lf_end_of_data(endpoint: Endpoint, cfg: ProbeConfig, *, sender: str, recipient: str,
                                    ) -> Attempt[SmugglingResult]:
    """Send a message whose body contains ``<LF>.<LF>`` followed by an SMTP command (RFC 5321 4.1.1.4
    and 2.3.8: only <CRLF>.<CRLF> ends DATA). A conforming server keeps it all as body and answers
    once; a server that ends DATA at the bare LF then runs the smuggled NOOP, so more replies come
    before the 221 to our QUIT."""
    transcript = cfg.transcript(endpoint)
    body = (b"Subject: mailconform end-of-data probe\r\n\r\n"
            b"This message tests how the server ends DATA.\n.\nNOOP smuggled\r\n"
            b"If you can read this line, the server kept everything as body (correct).\r\n.\r\n")

    async def run() -> SmugglingResult:
        async with SmtpSession(endpoint, cfg, transcript) as smtp:
            await smtp.open_secured()
            for reply in (await smtp.mail(sender), await smtp.rcpt(recipient)):
                if reply.transient:
                    raise ServerUnavailable(f"cannot send the probe message now: {reply}")
                if not reply.positive:  # the operator named an address this endpoint does not take
                    raise LocalError(f"cannot send the probe message from <{sender}> to <{recipient}>: {reply}")
            start = await smtp.command("DATA")
            if start.code != 354:
                raise ProtocolViolation(f"DATA answered {start}")
            transcript.note("sending a body with <LF>.<LF> and a smuggled NOOP (raw)")
            data_reply = await smtp.send_raw(body, what="the probe message")
            trailing = await _replies_until_quit(smtp)
            return SmugglingResult(str(data_reply), tuple(str(r) for r in trailing), bool(trailing))

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


async def _replies_until_quit(smtp: SmtpSession) -> list[SmtpReply]:
    """Send QUIT and collect every reply before its 221 (a closed connection ends the count)."""
    await smtp.send_raw(b"QUIT\r\n", expect_reply=False)
    trailing: list[SmtpReply] = []
    for _ in range(MAX_TRAILING_REPLIES):
        try:
            reply = await smtp.read_reply()
        except ProbeError:
            break
        if reply.code == 221:
            break
        trailing.append(reply)
    return trailing
