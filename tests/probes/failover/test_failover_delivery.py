"""Delivery probe: tagged submissions with MTA-like retries, read back with imapclient, counted."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import certgen
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from certgen import Pki
from imap_mailbox import MailboxImap, mailbox_server
from smtp_servers import PASSWORD, USER, Recorder, aiosmtpd_server

from conformance.probes.failover.delivery import (
    Submission,
    SubmitOutcome,
    build_report,
    new_run_id,
    read_back,
    submit_batch,
    submit_message,
    token_for,
)
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Outcome
from conformance.target import Account, Secret

pytestmark = pytest.mark.unit

ACCOUNT = Account("test", USER, Secret(PASSWORD, "test"), USER)


def cfg(anchor: Path) -> ProbeConfig:
    return ProbeConfig(timeout=3, trust_anchors=(anchor,), use_system_store=False, secrets=(PASSWORD,))


class Behaving(Recorder):
    """A submission server whose DATA answer follows a script: one callable per message."""

    def __init__(self, script: Callable[[int, bytes], str]) -> None:
        super().__init__()
        self.script = script
        self.seen = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.seen += 1
        return self.script(self.seen, envelope.original_content or b"")


def run_case(context: ssl.SSLContext, anchor: Path, script: Callable[[Behaving, int, bytes], str], count: int = 3,
             deadline: float = 2.0, retries: int = 2, late_window: float = 0.0,
             ) -> tuple[list, object]:  # type: ignore[type-arg]
    async def main() -> tuple[list, object]:  # type: ignore[type-arg]
        recorder = Behaving(lambda n, m: script(recorder, n, m))
        mailbox = MailboxImap(recorder.messages, USER, PASSWORD)
        async with aiosmtpd_server(context, recorder=recorder) as smtp, mailbox_server(mailbox, context) as imap:
            run_id = new_run_id()
            subs = await submit_batch([smtp], cfg(anchor), ACCOUNT, run_id, "during", range(count),
                                      retries=retries, retry_delay=0.05)
            accepted = [s.token for s in subs if s.outcome is SubmitOutcome.ACCEPTED]
            back = await asyncio.to_thread(read_back, imap, cfg(anchor), ACCOUNT, run_id, accepted,
                                           deadline=deadline, grace=0.1, late_window=late_window)
            return subs, back
    return asyncio.run(main())


def deliver(recorder: Behaving, n: int, message: bytes) -> str:
    recorder.messages.append(message)
    return "250 2.0.0 queued"


def test_good_server_delivers_each_message_once(context: ssl.SSLContext, anchor: Path) -> None:
    subs, back = run_case(context, anchor, deliver)
    assert all(s.outcome is SubmitOutcome.ACCEPTED and s.data_latency is not None for s in subs)
    assert back.outcome is Outcome.COMPLETED, back.reason  # type: ignore[attr-defined]
    report = build_report(subs, back.result)  # type: ignore[attr-defined]
    assert (report.sent, report.accepted, report.delivered) == (3, 3, 3)
    assert not report.lost and not report.duplicated and not report.late and not report.rejected
    assert "lost 0" in report.summary()


def test_a_4xx_is_retried_and_counted_as_deferred(context: ssl.SSLContext, anchor: Path) -> None:
    def first_deferred(recorder: Behaving, n: int, message: bytes) -> str:
        return "451 4.3.0 backend down" if n == 1 else deliver(recorder, n, message)
    subs, back = run_case(context, anchor, first_deferred, count=1)
    assert subs[0].outcome is SubmitOutcome.ACCEPTED and subs[0].attempts == 2 and subs[0].deferrals == 1
    assert any("DATA 451 4.3.0 backend down" in r for r in subs[0].replies)
    report = build_report(subs, back.result)  # type: ignore[attr-defined]
    assert report.deferred == 1 and report.delivered == 1


def test_retries_are_bounded(context: ssl.SSLContext, anchor: Path) -> None:
    subs, back = run_case(context, anchor, lambda r, n, m: "451 4.3.0 still down", count=1, retries=2)
    assert subs[0].outcome is SubmitOutcome.DEFERRED and subs[0].attempts == 3
    report = build_report(subs, back.result)  # type: ignore[attr-defined]
    assert report.given_up == (subs[0].token,) and not report.lost  # the sender still holds it: not lost


def test_a_5xx_is_final(context: ssl.SSLContext, anchor: Path) -> None:
    subs, back = run_case(context, anchor, lambda r, n, m: "554 5.3.0 mailbox unavailable", count=1)
    assert subs[0].outcome is SubmitOutcome.REJECTED and subs[0].attempts == 1
    assert build_report(subs, back.result).rejected == (subs[0].token,)  # type: ignore[attr-defined]


def test_accepted_then_dropped_is_lost(context: ssl.SSLContext, anchor: Path) -> None:
    def drop_second(recorder: Behaving, n: int, message: bytes) -> str:
        return "250 2.0.0 queued" if n == 2 else deliver(recorder, n, message)
    subs, back = run_case(context, anchor, drop_second, deadline=0.5)
    report = build_report(subs, back.result)  # type: ignore[attr-defined]
    assert report.accepted == 3 and report.delivered == 2 and len(report.lost) == 1
    assert report.lost[0].startswith("mc-") and report.lost[0] in {s.token for s in subs}


def test_delivered_twice_is_duplicated(context: ssl.SSLContext, anchor: Path) -> None:
    def twice(recorder: Behaving, n: int, message: bytes) -> str:
        recorder.messages.append(message)
        return deliver(recorder, n, message)
    subs, back = run_case(context, anchor, twice, count=2)
    report = build_report(subs, back.result)  # type: ignore[attr-defined]
    assert sorted(report.duplicated) == sorted(s.token for s in subs) and report.delivered == 0


def test_delivered_after_the_deadline_is_late(context: ssl.SSLContext, anchor: Path) -> None:
    def later(recorder: Behaving, n: int, message: bytes) -> str:
        asyncio.get_running_loop().call_later(0.8, recorder.messages.append, message)
        return "250 2.0.0 queued"
    subs, back = run_case(context, anchor, later, count=1, deadline=0.3, late_window=5.0)
    report = build_report(subs, back.result)  # type: ignore[attr-defined]
    assert report.late == (subs[0].token,) and not report.lost and report.delivered == 0


def test_password_goes_only_to_a_verified_certificate(pki: Pki, anchor: Path, tmp_path: Path) -> None:
    wrong = certgen.server_context(pki, pki.leaf("other.example"), tmp_path)

    recorder = Recorder()

    async def main() -> Submission:
        async with aiosmtpd_server(wrong, recorder=recorder) as smtp:
            return await submit_message([smtp], cfg(anchor), ACCOUNT, token_for("0badc0de", 1), "before")
    sub = asyncio.run(main())
    assert sub.outcome is SubmitOutcome.FAILED and "does not verify" in " ".join(sub.replies)
    assert recorder.logins == []


def test_read_back_with_a_wrong_password_is_inconclusive(context: ssl.SSLContext, anchor: Path) -> None:
    async def main() -> object:
        mailbox = MailboxImap([], USER, "another")
        async with mailbox_server(mailbox, context) as imap:
            return await asyncio.to_thread(read_back, imap, cfg(anchor), ACCOUNT, "0badc0de", ["x"], deadline=0.2)
    back = asyncio.run(main())
    assert back.outcome is Outcome.INCONCLUSIVE and "login" in back.reason  # type: ignore[attr-defined]
    assert PASSWORD not in back.reason and PASSWORD not in "\n".join(back.transcript)  # type: ignore[attr-defined]
