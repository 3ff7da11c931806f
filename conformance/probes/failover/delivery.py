"""No mail lost, none duplicated: submit uniquely tagged messages, read them back over IMAP, count.

Each message carries a token (``mc-<run>-<n>``) in its Subject and its Message-ID and goes only to
the target's own test account, sent by that account over submission with TLS and AUTH (a password
goes only to a server whose certificate verifies). The client retries a 4xx (or a lost connection)
like an MTA would, on the next node, a bounded number of times; a 5xx is final (RFC 5321 §4.2.1).
Read-back uses imapclient (a real, independent IMAP client) and counts each token's copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import re
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import imapclient
import imapclient.exceptions

from conformance.probes.smtp.session import SmtpReply, SmtpSession
from conformance.probes.tls.handshake import judge
from conformance.probes.wire.config import ProbeConfig, scrub
from conformance.probes.wire.outcome import (
    Attempt,
    LocalError,
    Outcome,
    ProbeError,
    ProbeTimeout,
    ServerUnavailable,
    Transcript,
    Unreachable,
    outcome_of,
)
from conformance.target import Account, Endpoint

_TOKEN = re.compile(r"mc-[0-9a-f]{8}-\d{3}")
POLL_INTERVAL = 0.2  # seconds between mailbox reads while waiting for delivery


def new_run_id() -> str:
    return secrets.token_hex(4)


def token_for(run_id: str, index: int) -> str:
    return f"mc-{run_id}-{index:03d}"


def make_message(account: Account, token: str, phase: str) -> bytes:
    """A small message from and to the test account; the token in Subject and Message-ID."""
    return (f"From: <{account.address}>\r\nTo: <{account.address}>\r\n"
            f"Subject: mailconform delivery check {token} ({phase})\r\n"
            f"Message-ID: <{token}@mailconform.invalid>\r\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
            f"X-Mailconform-Token: {token}\r\n\r\n"
            f"Sent by mailconform to prove that mail accepted during an outage is delivered exactly once.\r\n"
            ).encode()


class SubmitOutcome(StrEnum):
    ACCEPTED = "accepted"    # a 250 to DATA: the gateway owns the message now (RFC 5321 §6.1)
    DEFERRED = "deferred"    # still 4xx (or unreachable) after every retry: the sender keeps it
    REJECTED = "rejected"    # a 5xx: the sender drops (bounces) it
    FAILED = "failed"        # could not even try (TLS or certificate refused, our own error)


@dataclass(frozen=True)
class Submission:
    token: str
    phase: str
    outcome: SubmitOutcome
    attempts: int
    deferrals: int                 # 4xx replies and lost connections met on the way
    replies: tuple[str, ...]       # "node: stage code text", every reply that decided an attempt
    node: str | None = None        # the node whose 250 took the message
    data_latency: float | None = None  # seconds from DATA to its final reply, on the accepting attempt


class _Deferred(Exception):
    pass


class _Rejected(Exception):
    pass


def _judge(stage: str, reply: SmtpReply, endpoint: Endpoint, replies: list[str], ok: tuple[int, ...]) -> None:
    if reply.code in ok:
        return
    replies.append(f"{endpoint.node}: {stage} {reply}")
    if reply.transient:
        raise _Deferred(str(reply))
    raise _Rejected(str(reply))


async def _submit_once(endpoint: Endpoint, cfg: ProbeConfig, account: Account, message: bytes,
                       transcript: Transcript, replies: list[str]) -> float:
    """One SMTP transaction; returns the DATA latency. Raises _Deferred, _Rejected or ProbeError."""
    async with SmtpSession(endpoint, cfg, transcript) as smtp:
        await smtp.connect()
        _judge("EHLO", (await smtp.ehlo()).reply, endpoint, replies, (250,))
        if not endpoint.implicit_tls:
            _judge("STARTTLS", await smtp.starttls(), endpoint, replies, (220,))
        if smtp.tls is None:
            raise LocalError("not sending credentials without TLS")
        verdict = judge(smtp.tls, endpoint, cfg)
        if not verdict.verified:
            raise LocalError(f"not sending credentials: the certificate does not verify ({verdict.verify_error})")
        _judge("AUTH", await smtp.auth_plain(account.username, account.password), endpoint, replies, (235,))
        _judge("MAIL", await smtp.mail(account.address), endpoint, replies, (250,))
        _judge("RCPT", await smtp.rcpt(account.address), endpoint, replies, (250, 251))
        started = time.monotonic()
        reply = await smtp.data(message)
        latency = time.monotonic() - started
        _judge("DATA", reply, endpoint, replies, (250,))
        replies.append(f"{endpoint.node}: DATA {reply} after {latency:.2f} s")
        await smtp.quit()
        return latency


async def submit_message(endpoints: Sequence[Endpoint], cfg: ProbeConfig, account: Account, token: str,
                         phase: str, *, retries: int = 3, retry_delay: float = 0.5,
                         transcript: Transcript | None = None) -> Submission:
    """Submit one tagged message: first to ``endpoints[0]``, after a 4xx or a lost connection to the
    next endpoint (round robin), at most ``retries`` more times, ``retry_delay`` apart."""
    if not endpoints:
        raise ValueError("no submission endpoint to send through")
    transcript = transcript or cfg.transcript(endpoints[0])
    message = make_message(account, token, phase)
    replies: list[str] = []
    deferrals = 0
    for attempt_no in range(retries + 1):
        endpoint = endpoints[attempt_no % len(endpoints)]
        transcript.note(f"{token}: attempt {attempt_no + 1} via {endpoint}")
        try:
            latency = await _submit_once(endpoint, cfg, account, message, transcript, replies)
        except _Rejected:
            return Submission(token, phase, SubmitOutcome.REJECTED, attempt_no + 1, deferrals, tuple(replies))
        except (_Deferred, ServerUnavailable, Unreachable, ProbeTimeout) as exc:
            deferrals += 1
            if not isinstance(exc, _Deferred):
                replies.append(f"{endpoint.node}: {scrub(str(exc), cfg.secrets)}")
        except ProbeError as exc:
            replies.append(f"{endpoint.node}: {scrub(str(exc), cfg.secrets)}")
            return Submission(token, phase, SubmitOutcome.FAILED, attempt_no + 1, deferrals, tuple(replies))
        else:
            return Submission(token, phase, SubmitOutcome.ACCEPTED, attempt_no + 1, deferrals, tuple(replies),
                              endpoint.node, latency)
        if attempt_no < retries:
            await asyncio.sleep(retry_delay)  # an MTA's retry interval, compressed: bounded by `retries`
    return Submission(token, phase, SubmitOutcome.DEFERRED, retries + 1, deferrals, tuple(replies))


async def submit_batch(endpoints: Sequence[Endpoint], cfg: ProbeConfig, account: Account, run_id: str,
                       phase: str, indices: range, **kwargs: Any) -> list[Submission]:
    """Submit the messages ``indices`` of a run concurrently (the per-host limiter keeps it polite)."""
    return list(await asyncio.gather(*(
        submit_message(endpoints, cfg, account, token_for(run_id, i), phase, **kwargs) for i in indices)))


# --- reading back ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadBack:
    counts: dict[str, int]            # token -> copies in the mailbox
    first_seen: dict[str, float]      # token -> seconds after read-back started
    waited: float                     # how long we polled
    deadline: float


class _PinnedNameContext(ssl.SSLContext):
    """A verifying context that checks the endpoint's host name even when imapclient connects to an
    address (imaplib passes the host it connected to as server_hostname)."""

    server_name: str = ""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(sock, *args, **kwargs)


def verifying_context(endpoint: Endpoint, cfg: ProbeConfig) -> ssl.SSLContext:
    context = _PinnedNameContext(ssl.PROTOCOL_TLS_CLIENT)
    context.server_name = endpoint.host
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.use_system_store:
        context.load_default_certs()
    for anchor in cfg.trust_anchors:
        context.load_verify_locations(cafile=str(anchor))
    return context


def _tokens_in(data: bytes, run_id: str) -> set[str]:
    return {t for t in _TOKEN.findall(data.decode("utf-8", "replace")) if t.startswith(f"mc-{run_id}-")}


class _Mailbox:
    """One imapclient connection to the test account's INBOX, read-only."""

    def __init__(self, endpoint: Endpoint, cfg: ProbeConfig, account: Account, transcript: Transcript) -> None:
        self.endpoint, self.cfg, self.account, self.transcript = endpoint, cfg, account, transcript
        self.client: imapclient.IMAPClient | None = None

    def open(self) -> None:
        context = verifying_context(self.endpoint, self.cfg)
        self.transcript.note(f"imapclient: connecting to {self.endpoint}")
        client = imapclient.IMAPClient(self.endpoint.connect_host, port=self.endpoint.port,
                                       ssl=self.endpoint.implicit_tls, ssl_context=context, timeout=self.cfg.timeout)
        self.client = client
        if not self.endpoint.implicit_tls:
            client.starttls(context)
        self.transcript.client("LOGIN <redacted>")
        client.login(self.account.username, self.account.password.reveal())
        self.transcript.server("OK logged in")

    def tokens(self, run_id: str) -> Counter[str]:
        assert self.client is not None
        self.client.select_folder("INBOX", readonly=True)
        uids = self.client.search(["SUBJECT", f"mc-{run_id}-"])
        counts: Counter[str] = Counter()
        if uids:
            for data in self.client.fetch(uids, ["BODY.PEEK[HEADER]"]).values():
                header = data.get(b"BODY[HEADER]") or b""
                counts.update(_tokens_in(header, run_id))
        return counts

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # the counts are in hand; a failed LOGOUT changes none
                self.client.logout()
            self.client = None


def _mapped(exc: BaseException) -> ProbeError:
    if isinstance(exc, ProbeError):
        return exc
    if isinstance(exc, imapclient.exceptions.LoginError):
        return ServerUnavailable(f"IMAP login for the test account failed: {exc}")
    if isinstance(exc, TimeoutError):
        return ProbeTimeout(f"IMAP read-back timed out: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return LocalError(f"not reading the mailbox: the certificate does not verify ({exc.verify_message})")
    if isinstance(exc, OSError):
        return Unreachable(f"IMAP read-back: {exc.strerror or exc}")
    return ServerUnavailable(f"IMAP read-back failed: {exc}")


def read_back(endpoint: Endpoint, cfg: ProbeConfig, account: Account, run_id: str, expected: Sequence[str], *,
              deadline: float, grace: float = 0.5, late_window: float = 0.0) -> Attempt[ReadBack]:
    """Poll the test account's INBOX until every ``expected`` token is there (then look once more
    after ``grace`` seconds, for a late duplicate) or until ``deadline`` seconds have passed, and
    then at most ``late_window`` seconds more: a token first seen then was delivered late.
    Blocking (imapclient); run it in a thread from async code."""
    transcript = cfg.transcript(endpoint)
    mailbox = _Mailbox(endpoint, cfg, account, transcript)
    started = time.monotonic()
    first_seen: dict[str, float] = {}
    counts: Counter[str] = Counter()
    wanted = set(expected)
    try:
        mailbox.open()
        while True:
            counts = mailbox.tokens(run_id)
            now = time.monotonic() - started
            for token in counts:
                first_seen.setdefault(token, now)
            if wanted <= set(counts) or now >= deadline + late_window:
                break
            time.sleep(POLL_INTERVAL)  # polling a mailbox: the server gives no event to wait on
        if wanted <= set(counts):
            time.sleep(grace)  # a duplicate is usually delivered right after the first copy
            counts = mailbox.tokens(run_id)
        transcript.note(f"read back {sum(counts.values())} message(s) of run {run_id} "
                        f"after {time.monotonic() - started:.1f} s")
    except Exception as exc:  # noqa: BLE001 - the one boundary where imapclient's errors become ours
        error = _mapped(exc)
        return Attempt(endpoint.id, outcome_of(error), None, scrub(str(error), cfg.secrets), tuple(transcript.lines))
    finally:
        mailbox.close()
    return Attempt(endpoint.id, Outcome.COMPLETED,
                   ReadBack(dict(counts), first_seen, time.monotonic() - started, deadline), "",
                   tuple(transcript.lines))


# --- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryReport:
    """Counts, and the tokens behind every count that is a problem."""

    sent: int
    accepted: int
    deferred: int                 # messages that met at least one 4xx / lost connection
    delivered: int                # accepted messages found exactly once within the deadline
    lost: tuple[str, ...]         # accepted (250), never delivered
    duplicated: tuple[str, ...]   # delivered more than once
    late: tuple[str, ...]         # delivered, but after the deadline
    rejected: tuple[str, ...]     # a 5xx: the sender drops it (FAIL-TEMP's business; counted here too)
    given_up: tuple[str, ...]     # still deferred after every retry (not lost: the sender keeps it)
    replies: tuple[str, ...] = field(default=(), repr=False)

    def summary(self) -> str:
        return (f"sent {self.sent}, accepted {self.accepted}, deferred {self.deferred}, "
                f"delivered {self.delivered}, lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
                f"late {len(self.late)}, rejected {len(self.rejected)}, gave up {len(self.given_up)}")


def build_report(submissions: Sequence[Submission], readback: ReadBack) -> DeliveryReport:
    accepted = [s.token for s in submissions if s.outcome is SubmitOutcome.ACCEPTED]
    counts = readback.counts
    late = tuple(sorted(t for t in accepted if t in readback.first_seen and readback.first_seen[t] > readback.deadline))
    return DeliveryReport(
        sent=len(submissions),
        accepted=len(accepted),
        deferred=sum(1 for s in submissions if s.deferrals),
        delivered=sum(1 for t in accepted if counts.get(t) == 1 and t not in late),
        lost=tuple(sorted(t for t in accepted if not counts.get(t))),
        duplicated=tuple(sorted(s.token for s in submissions if counts.get(s.token, 0) > 1)),
        late=late,
        rejected=tuple(sorted(s.token for s in submissions if s.outcome is SubmitOutcome.REJECTED)),
        given_up=tuple(sorted(s.token for s in submissions if s.outcome is SubmitOutcome.DEFERRED)),
        replies=tuple(r for s in submissions for r in s.replies),
    )
