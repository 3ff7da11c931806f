"""What a gateway answers while one of its components is down.

- ``probe_transaction``: one SMTP transaction (greeting, EHLO, STARTTLS, optionally AUTH, MAIL, RCPT,
  optionally DATA) with every reply and its stage recorded: while delivery or the directory is out
  the right answers are 4xx (RFC 5321 §4.2.5) or a 250 the gateway then honours, never a 5xx.
- ``probe_shutdown``: sessions held open (an SMTP session in the middle of DATA, idle IMAP sessions)
  while the node is taken down in an orderly way: 421 (RFC 5321 §3.8) or ``* BYE`` (RFC 9051 §7.1.5),
  not a TCP reset or a silent close.

Authentication during an auth-backend outage is ``probes.auth.logins.probe_login``'s job (one login).
No pytest in here; the caller runs the outage hooks.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from conformance.probes.failover.delivery import make_message
from conformance.probes.imap.session import ImapSession
from conformance.probes.pop3.session import Pop3Session
from conformance.probes.smtp.session import SmtpReply, SmtpSession
from conformance.probes.tls.handshake import judge
from conformance.probes.wire.config import ProbeConfig, scrubbed
from conformance.probes.wire.outcome import (
    Attempt,
    LocalError,
    Outcome,
    ProbeError,
    ProbeTimeout,
    ServerUnavailable,
    Transcript,
    attempt,
    os_error_words,
    tls_error_words,
)
from conformance.probes.wire.streams import close
from conformance.target import Account, Endpoint, Service

_CODE = re.compile(r"\b([245]\d\d)\b")
MAIL_STAGES = ("greeting", "MAIL", "RCPT", "DATA")  # where a 5xx makes the sender drop the message


@dataclass(frozen=True)
class StageReply:
    stage: str            # greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA
    code: int | None      # None: the connection ended instead of a reply
    text: str
    seconds: float        # from sending the command (connecting, for the greeting) to its reply

    def __str__(self) -> str:
        return f"{self.stage} {self.code or ''} {self.text}".replace("  ", " ").strip()


@dataclass(frozen=True)
class Transaction:
    replies: tuple[StageReply, ...]
    completed: bool       # the transaction ran to its last step (a 250 to DATA, or to RCPT without DATA)

    def first_permanent(self, stages: Sequence[str] = MAIL_STAGES) -> StageReply | None:
        return next((r for r in self.replies if r.stage in stages and r.code is not None and r.code >= 500), None)

    def reply(self, stage: str) -> StageReply | None:
        return next((r for r in self.replies if r.stage == stage), None)

    def summary(self) -> str:
        return "; ".join(str(r) for r in self.replies)


class _Stop(Exception):
    """The transaction cannot go on (a refusal was recorded): stop and report what was seen."""


async def probe_transaction(endpoint: Endpoint, cfg: ProbeConfig, account: Account, *, token: str,
                            send_data: bool = True, data_timeout: float | None = None) -> Attempt[Transaction]:
    """One transaction to the test account. MX: MAIL FROM:<> (RFC 5321 §4.5.5: a null sender is always
    acceptable), STARTTLS if offered. Submission: STARTTLS, AUTH as the test account (only to a
    verified certificate), MAIL FROM the account. ``data_timeout`` lets DATA's reply take longer than
    the per-read timeout, so a late reply is measured rather than lost."""
    if data_timeout is not None and data_timeout > cfg.timeout:
        cfg = replace(cfg, timeout=data_timeout, session_timeout=cfg.session_budget + data_timeout)
    transcript = cfg.transcript(endpoint)
    replies: list[StageReply] = []

    async def step(stage: str, call: Callable[[], object]) -> SmtpReply:
        started = time.monotonic()
        try:
            reply = await call()  # type: ignore[misc]
        except ServerUnavailable as exc:  # a 421 (or a 4xx/554 greeting): the answer we came for
            found = _CODE.search(str(exc))
            replies.append(StageReply(stage, int(found.group(1)) if found else None, str(exc),
                                      time.monotonic() - started))
            raise _Stop from None
        except ProbeTimeout as exc:
            if stage != "DATA":
                raise
            # Silence after the body is the finding (a stalled backend), not a failed probe.
            replies.append(StageReply(stage, None, str(exc), time.monotonic() - started))
            raise _Stop from None
        assert isinstance(reply, SmtpReply)
        text = reply.lines[0] if stage == "EHLO" and reply.lines else " / ".join(reply.lines)  # not every extension
        replies.append(StageReply(stage, reply.code, text, time.monotonic() - started))
        return reply

    async def run() -> Transaction:
        async with SmtpSession(endpoint, cfg, transcript) as smtp:
            try:
                await step("greeting", smtp.connect)
                async def ehlo() -> SmtpReply:
                    return (await smtp.ehlo()).reply

                await step("EHLO", ehlo)
                offered = smtp.capabilities is not None and smtp.capabilities.starttls
                submission = endpoint.service is not Service.MX
                if (not endpoint.implicit_tls and (offered or submission)
                        and (await step("STARTTLS", smtp.starttls)).code != 220):
                    raise _Stop
                if submission:
                    if smtp.tls is None or not judge(smtp.tls, endpoint, cfg).verified:
                        raise LocalError("not sending the test account's password: TLS missing or unverified")
                    if (await step("AUTH", lambda: smtp.auth_plain(account.username, account.password))).code != 235:
                        raise _Stop
                sender = account.address if submission else ""
                if (await step("MAIL", lambda: smtp.mail(sender))).code != 250:
                    raise _Stop
                if (await step("RCPT", lambda: smtp.rcpt(account.address))).code not in (250, 251):
                    raise _Stop
                if not send_data:
                    await smtp.rset()
                    await smtp.quit()
                    return Transaction(tuple(replies), True)
                message = make_message(account, token, "outage")
                data = await step("DATA", lambda: smtp.data(message))
                await smtp.quit()
                return Transaction(tuple(replies), data.code == 250)
            except _Stop:
                if replies and replies[-1].code is None:
                    await smtp.close()  # mid-DATA: a QUIT would only wait out another timeout
                else:
                    await smtp.quit()
                return Transaction(tuple(replies), False)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


# --- orderly shutdown ------------------------------------------------------------------------------


class Ending(StrEnum):
    REPLY_421 = "421"        # SMTP: the right way to close (RFC 5321 §3.8, §4.2.2)
    BYE = "bye"              # IMAP: the right way to close (RFC 9051 §7.1.5)
    ERR = "-err"             # POP3: an unsolicited -ERR (ideally [SYS/TEMP], RFC 3206 §4), then the close;
                             # RFC 1939 has neither 421 nor BYE, and nothing is lost without QUIT (§3)
    OTHER_REPLY = "other"    # some other reply, then (or without) a close
    CLOSED = "closed"        # the connection closed without a word
    RESET = "reset"          # a TCP reset: the client cannot tell what happened to its message
    OPEN = "open"            # still open, nothing said, after the wait: the node did not go down?


@dataclass(frozen=True)
class SessionEnd:
    ending: Ending
    held: str                # what the session was doing when the node went down
    detail: str              # the server's words, or the error

    @property
    def orderly(self) -> bool:
        return self.ending in (Ending.REPLY_421, Ending.BYE, Ending.ERR)


@dataclass
class _Held:
    endpoint: Endpoint
    transcript: Transcript
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    held: str
    session: SmtpSession | ImapSession | Pop3Session


async def _hold(endpoint: Endpoint, cfg: ProbeConfig, account: Account) -> _Held:
    """Open a session and leave it where a shutdown hurts: an MX session inside DATA (body half sent),
    submission after STARTTLS, IMAP after STARTTLS (or on imaps) waiting for the next command."""
    transcript = cfg.transcript(endpoint)
    kinds: dict[str, type[SmtpSession | ImapSession | Pop3Session]] = {"imap": ImapSession, "pop3": Pop3Session}
    session = kinds.get(endpoint.protocol, SmtpSession)(endpoint, cfg, transcript)
    try:
        return await _hold_session(endpoint, account, session, transcript)
    except BaseException:
        await session.close()
        raise


async def _hold_session(endpoint: Endpoint, account: Account, session: SmtpSession | ImapSession | Pop3Session,
                        transcript: Transcript) -> _Held:
    if isinstance(session, Pop3Session):
        await session.connect()
        if not endpoint.implicit_tls and "STLS" in await session.capa():
            await session.stls()
        reader, writer = session.streams
        return _Held(endpoint, transcript, reader, writer, "idle POP3 session", session)
    if isinstance(session, ImapSession):
        imap = session
        await imap.connect()
        if not endpoint.implicit_tls and "STARTTLS" in (imap.capabilities or await imap.capability()):
            await imap.starttls()
        reader, writer = imap.streams  # the session's own streams: we read the server's last words
        return _Held(endpoint, transcript, reader, writer, "idle IMAP session", imap)
    smtp = session
    await smtp.connect()
    ehlo = await smtp.ehlo()
    if not endpoint.implicit_tls and ehlo.starttls:
        await smtp.starttls()
    held = "idle SMTP session after EHLO"
    if (endpoint.service is Service.MX and (await smtp.mail("")).code == 250
            and (await smtp.rcpt(account.address)).code in (250, 251)
            and (await smtp.command("DATA")).code == 354):
        await smtp.send_raw(make_message(account, "shutdown", "shutdown")[:200], what="half a message",
                            expect_reply=False)
        held = "SMTP session in the middle of DATA"
    reader, writer = smtp.streams
    return _Held(endpoint, transcript, reader, writer, held, smtp)


def _lost_words(exc: BaseException) -> str:
    return tls_error_words(exc) if isinstance(exc, ssl.SSLError) else os_error_words(exc)


async def _last_words(held: _Held, wait: float) -> SessionEnd:
    """Read what the server says after the node went down, telling a reset from a close."""
    lines: list[str] = []
    try:
        while len(lines) < 20:
            line = await asyncio.wait_for(held.reader.readline(), wait)
            if not line:
                break
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            held.transcript.server(text)
            lines.append(text)
            if held.endpoint.protocol == "smtp" and text[3:4] != "-":
                break
            if held.endpoint.protocol == "imap" and text.upper().startswith("* BYE"):
                break
            if held.endpoint.protocol == "pop3":
                break  # POP3 has no multi-line status: the first line is the server's last word
    except TimeoutError:
        if not lines:
            return SessionEnd(Ending.OPEN, held.held, f"no answer and no close within {wait:g} s")
    except (ConnectionResetError, BrokenPipeError) as exc:
        return SessionEnd(Ending.RESET, held.held, os_error_words(exc) + (f" after {lines[-1]!r}" if lines else ""))
    except (ssl.SSLError, OSError, asyncio.IncompleteReadError) as exc:
        if not lines:
            return SessionEnd(Ending.CLOSED, held.held, f"connection ended without a reply ({_lost_words(exc)})")
    if not lines:
        return SessionEnd(Ending.CLOSED, held.held, "connection closed without a reply")
    last = lines[-1]
    if held.endpoint.protocol == "imap":
        bye = next((x for x in lines if x.upper().startswith("* BYE")), None)
        return SessionEnd(Ending.BYE if bye else Ending.OTHER_REPLY, held.held, bye or last)
    if held.endpoint.protocol == "pop3":
        return SessionEnd(Ending.ERR if last.upper().startswith("-ERR") else Ending.OTHER_REPLY, held.held, last)
    return SessionEnd(Ending.REPLY_421 if last.startswith("421") else Ending.OTHER_REPLY, held.held, last)


async def probe_shutdown(endpoints: Sequence[Endpoint], cfg: ProbeConfig, account: Account,
                         take_down: Callable[[], object], *, wait: float | None = None,
                         ) -> dict[str, Attempt[SessionEnd]]:
    """Hold a session on every endpoint, call ``take_down`` (blocking: it runs the node's down hook),
    then read each session's last words. An endpoint whose session could not be opened gets an
    inconclusive attempt; ``take_down`` raising propagates (after the sessions are closed)."""
    wait = wait if wait is not None else cfg.timeout
    opened = await asyncio.gather(*(_open(e, cfg, account) for e in endpoints))
    held = [h for h in opened if isinstance(h, _Held)]
    try:
        # Called on the loop's thread, blocking it: the sessions only buffer meanwhile, and a Ctrl-C
        # during the hook reaches the outage() context (which runs `up`), not a worker thread.
        take_down()
        ends = await asyncio.gather(*(_last_words(h, wait) for h in held))
    finally:
        for h in held:
            await close(h.writer)
    results: dict[str, Attempt[SessionEnd]] = {}
    for endpoint, item in zip(endpoints, opened):
        if isinstance(item, _Held):
            end = ends[held.index(item)]
            item.transcript.note(f"after the node went down: {end.ending} ({end.detail})")
            results[endpoint.id] = scrubbed(Attempt(endpoint.id, Outcome.COMPLETED, end, "",
                                                    tuple(item.transcript.lines)), cfg)
        else:
            results[endpoint.id] = item
    return results


async def _open(endpoint: Endpoint, cfg: ProbeConfig, account: Account) -> _Held | Attempt[SessionEnd]:
    try:
        return await asyncio.wait_for(_hold(endpoint, cfg, account), cfg.session_budget)
    except (ProbeError, TimeoutError) as exc:
        return scrubbed(Attempt(endpoint.id, Outcome.INCONCLUSIVE, None,
                                f"could not open a session before the shutdown: {exc or 'timed out'}"), cfg)


# --- recovery -------------------------------------------------------------------------------------


async def _serving(endpoint: Endpoint, cfg: ProbeConfig) -> None:
    if endpoint.protocol == "pop3":
        async with Pop3Session(endpoint, cfg) as pop3:
            await pop3.connect()
            await pop3.quit()
        return
    if endpoint.protocol == "imap":
        async with ImapSession(endpoint, cfg) as imap:
            await imap.connect()
            await imap.logout()
        return
    async with SmtpSession(endpoint, cfg) as smtp:
        await smtp.connect()
        await smtp.quit()


async def wait_until_serving(endpoints: Sequence[Endpoint], cfg: ProbeConfig, within: float, *,
                             interval: float = 0.2) -> dict[str, float | None]:
    """Seconds until each endpoint greets normally again (220 / * OK), or None if not within ``within``.
    Polls (a server gives no event to wait on), each attempt bounded by what is left of ``within``."""
    started = time.monotonic()

    async def one(endpoint: Endpoint) -> float | None:
        while True:
            left = within - (time.monotonic() - started)
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(_serving(endpoint, replace(cfg, timeout=min(cfg.timeout, left))), left)
                return time.monotonic() - started
            except (ProbeError, TimeoutError):
                await asyncio.sleep(min(interval, max(0.0, within - (time.monotonic() - started))))

    found = await asyncio.gather(*(one(e) for e in endpoints))
    return {e.id: seconds for e, seconds in zip(endpoints, found)}
