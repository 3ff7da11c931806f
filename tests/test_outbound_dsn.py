"""Reading a DSN (RFC 3464) as the outbound family does: the per-recipient blocks, folded fields joined, and
nothing from a message that is no DSN."""

from __future__ import annotations

import pytest

from conformance.probes.outbound.dsn import DsnRead, parse_dsn
from conformance.reference.dsn import delay_notice

pytestmark = pytest.mark.unit

# the shape Postfix sends (bounce(8)): a per-message block, then one block per recipient
POSTFIX_DELAY = (b"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\nTo: alice@example.net\r\n"
                 b"Subject: Delayed Mail (still being retried)\r\nMIME-Version: 1.0\r\n"
                 b'Content-Type: multipart/report; report-type=delivery-status; boundary="B/1"\r\n\r\n'
                 b"--B/1\r\nContent-Type: text/plain\r\n\r\nThis is the mail system.\r\n\r\n"
                 b"--B/1\r\nContent-Type: message/delivery-status\r\n\r\n"
                 b"Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Tue,  1 Dec 2026 21:00:00 +0000 (UTC)\r\n\r\n"
                 b"Final-Recipient: rfc822; mc-0a1b2c3d@dane-mismatch.outbound.test\r\n"
                 b"Original-Recipient: rfc822;mc-0a1b2c3d@dane-mismatch.outbound.test\r\nAction: delayed\r\n"
                 b"Status: 4.7.5\r\nDiagnostic-Code: X-Postfix; TLSA certificate verification failed\r\n"
                 b"    for mx1.dane-mismatch.outbound.test\r\n\r\n"
                 b"Final-Recipient: rfc822; MC-0a1b2c3d@sts-outside.outbound.test\r\nAction: failed\r\n"
                 b"Status: 5.7.1\r\n\r\n--B/1--\r\n")


def test_a_postfix_delay_notice_reads_per_recipient() -> None:
    first, second = parse_dsn(POSTFIX_DELAY)
    assert first.describe() == ("Action: delayed; Status: 4.7.5; Diagnostic-Code: X-Postfix; TLSA certificate "
                                "verification failed for mx1.dane-mismatch.outbound.test")
    assert (second.recipient, second.action, second.says_delivered) == (
        "mc-0a1b2c3d@sts-outside.outbound.test", "failed", False)
    read = DsnRead("imaps@node1", (first, second))
    assert read.about("mc-0a1b2c3d@STS-outside.outbound.test") == (second,)


def test_the_reference_notice_reads_back_and_a_plain_message_is_no_dsn() -> None:
    original = b"Subject: mailconform outbound dane-notls 0a1b2c3d\r\n\r\nhello\r\n"
    notice = delay_notice("mx1.example.test", "alice@example.test", ["mc-0a1b2c3d@dane-notls.outbound.test"],
                          "mx1.dane-notls.outbound.test: it offers no STARTTLS", original)
    (dsn,) = parse_dsn(notice)
    assert (dsn.action, dsn.status) == ("delayed", "4.7.5") and "offers no STARTTLS" in dsn.diagnostic
    assert parse_dsn(original) == ()
