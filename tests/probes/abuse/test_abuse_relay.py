"""Relay, submission and spoofing probes: address forms, 530 kinds, and against aiosmtpd and scripted
servers; never DATA unless a relay sink is named, and then only to it."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from hostile import run, serving
from smtp_servers import PASSWORD, USER, Recorder, aiosmtpd_server

from conformance.probes.abuse.relay import (
    Refusal,
    RelayFormsResult,
    SpoofResult,
    SubmissionResult,
    classify,
    probe_relay_forms,
    probe_sender_spoofing,
    probe_unauth_submission,
    relay_forms,
)
from conformance.probes.smtp.wire import SmtpReply
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Secret, Service

pytestmark = pytest.mark.unit

CFG = ProbeConfig(timeout=5, use_system_store=False)


def test_relay_forms() -> None:
    forms = relay_forms("x@far.invalid", "example.test")
    assert forms == {
        "plain": "x@far.invalid",
        "percent-hack": "x%far.invalid@example.test",
        "bang-path": "far.invalid!x@example.test",
        "source-route": "@example.test:x@far.invalid",
        "quoted-local-part": '"x@far.invalid"@example.test',
    }


@pytest.mark.parametrize(("reply", "kind"), [
    (b"530 5.7.0 Must issue a STARTTLS command first\r\n", Refusal.STARTTLS_FIRST),
    (b"530 5.7.0 Authentication required\r\n", Refusal.AUTH_REQUIRED),
    (b"554 5.7.1 Relay access denied\r\n", Refusal.RELAY_DENIED),
    (b"550 5.1.1 No such user here\r\n", Refusal.UNKNOWN_USER),
    (b"553 5.7.1 Sender address not owned by the authenticated user\r\n", Refusal.NOT_OWNER),
    (b"451 4.3.0 try later\r\n", Refusal.TEMPORARY),
    (b"250 2.1.5 ok\r\n", Refusal.ACCEPTED),
])
def test_classify(reply: bytes, kind: Refusal) -> None:
    assert classify(SmtpReply.parse(reply)) is kind


def relay_server(*, accept: tuple[str, ...] = (), seen: list[bytes] | None = None,  # type: ignore[no-untyped-def]
                 refuse_sender: bytes = b""):
    """Accepts RCPT for recipients containing any of ``accept``; records every command in ``seen``;
    refuses MAIL FROM senders containing ``refuse_sender``."""
    log = seen if seen is not None else []

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted\r\n")
        in_data = False
        while line := await asyncio.wait_for(reader.readline(), 10):
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    writer.write(b"250 2.0.0 queued\r\n")
                    await writer.drain()
                continue
            log.append(line.strip())
            verb = line.strip().upper()
            if verb.startswith(b"MAIL") and refuse_sender and refuse_sender in line:
                writer.write(b"553 5.1.8 sender domain does not exist\r\n")
            elif verb.startswith(b"RCPT"):
                ok = any(a.encode() in line for a in accept)
                writer.write(b"250 2.1.5 ok\r\n" if ok else b"554 5.7.1 Relay access denied\r\n")
            elif verb == b"DATA":
                in_data = True
                writer.write(b"354 go\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
    return behaviour


def forms(behaviour, sink: str | None = None) -> Attempt[RelayFormsResult]:  # type: ignore[no-untyped-def]
    async def main() -> Attempt[RelayFormsResult]:
        async with serving(behaviour, Service.MX) as endpoint:
            return await probe_relay_forms(endpoint, CFG, local_domain="example.test", sink=sink)
    return run(main())


def test_closed_relay_never_sends_data() -> None:
    seen: list[bytes] = []
    result = forms(relay_server(seen=seen))
    assert result.result is not None, result.reason
    assert len(result.result.attempts) == 5 and not any(a.accepted for a in result.result.attempts)
    assert all(a.kind is Refusal.RELAY_DENIED for a in result.result.attempts)
    assert b"DATA" not in seen and seen[-2:] == [b"RSET", b"QUIT"]


def test_open_relay_found_without_data() -> None:
    seen: list[bytes] = []
    result = forms(relay_server(accept=("@",), seen=seen))
    assert result.result is not None, result.reason
    plain = result.result.form("plain")
    assert plain is not None and plain.accepted and b"DATA" not in seen and seen[-2:] == [b"RSET", b"QUIT"]


def test_unresolvable_sender_falls_back_to_null_sender() -> None:
    seen: list[bytes] = []
    result = forms(relay_server(seen=seen, refuse_sender=b"mailconform.invalid"))
    assert result.result is not None and len(result.result.attempts) == 5, result.reason
    assert b"MAIL FROM:<>" in seen


def test_percent_hack_found_without_data() -> None:
    seen: list[bytes] = []
    result = forms(relay_server(accept=("%",), seen=seen))
    assert result.result is not None
    accepted = [a.form for a in result.result.attempts if a.accepted]
    assert accepted == ["percent-hack"] and b"DATA" not in seen


def test_relay_sink_confirms_at_data_to_the_sink_only() -> None:
    seen: list[bytes] = []
    result = forms(relay_server(accept=("sink@",), seen=seen), sink="sink@operator.example")
    assert result.result is not None
    plain = result.result.form("plain")
    assert plain is not None and plain.accepted and plain.confirmed and plain.confirmed.startswith("250")
    rcpts = [line for line in seen if line.upper().startswith(b"RCPT")]
    assert all(b"sink" in r for r in rcpts)  # every recipient tried is a form of the sink
    data_sessions = seen.count(b"DATA")
    assert data_sessions == sum(1 for a in result.result.attempts if a.accepted)


def test_unauth_submission_accepted_by_default_aiosmtpd(context: ssl.SSLContext) -> None:
    """aiosmtpd without auth_required takes mail from anyone: caught, before and inside TLS."""
    async def main() -> Attempt[SubmissionResult]:
        async with aiosmtpd_server(context) as endpoint:
            return await probe_unauth_submission(endpoint, CFG, sender=USER, recipient=USER)
    result = run(main())
    assert result.result is not None, result.reason
    assert result.result.accepted and result.result.before_tls_kind is Refusal.ACCEPTED
    assert not any(line.startswith("C: DATA") for line in result.transcript)


def test_unauth_submission_refused_with_530() -> None:
    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted\r\n")
        while line := await asyncio.wait_for(reader.readline(), 10):
            verb = line.strip().upper()
            if verb.startswith(b"MAIL"):
                writer.write(b"530 5.7.0 Authentication required\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()

    async def main() -> Attempt[SubmissionResult]:
        async with serving(refusing, Service.SUBMISSION) as endpoint:
            return await probe_unauth_submission(endpoint, CFG, sender=USER, recipient=USER)
    result = run(main())
    assert result.result is not None, result.reason
    assert not result.result.accepted and result.result.mail_kind is Refusal.AUTH_REQUIRED
    assert result.result.rcpt_reply is None


def test_aiosmtpd_allows_spoofing(context: ssl.SSLContext, anchor: Path) -> None:
    """aiosmtpd binds no sender to the login: the probe sees the spoofed MAIL and RCPT accepted."""
    async def main() -> Attempt[SpoofResult]:
        async with aiosmtpd_server(context, recorder=Recorder()) as endpoint:
            cfg = ProbeConfig(timeout=5, trust_anchors=(anchor,), use_system_store=False, secrets=(PASSWORD,))
            return await probe_sender_spoofing(endpoint, cfg, username=USER, password=Secret(PASSWORD, "t"),
                                               own=USER, forged="bob@example.test", recipient=USER)
    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.spoofing_accepted
    assert not any(line.startswith("C: DATA") for line in result.transcript)
    assert PASSWORD not in "\n".join(result.transcript)
