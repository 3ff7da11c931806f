"""The reference sender's delay notice (RFC 3464): what a queue tells the submitting account when it keeps a
message because DANE, DNSSEC or MTA-STS forbade delivering it.

Written as bytes by hand: the standard library's email API builds no message/delivery-status part from
fields, and the notice is a fixed shape.
"""

from __future__ import annotations

import email.utils
import secrets

STATUS = "4.7.5"   # RFC 3463 X.7.5: cryptographic failure (TLS, DANE, MTA-STS), still being retried


def delay_notice(reporting_mta: str, mail_from: str, rcpts: list[str], reason: str, message: bytes) -> bytes:
    """A multipart/report DSN with Action: delayed for every recipient, the original header attached."""
    boundary = f"mc-dsn-{secrets.token_hex(8)}"
    header = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    recipients = "".join(f"\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: delayed\r\nStatus: {STATUS}\r\n"
                         f"Diagnostic-Code: X-Mailconform-Reference; {reason}\r\n" for rcpt in rcpts)
    return (f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\nTo: <{mail_from}>\r\n"
            f"Subject: Delayed Mail (still being retried)\r\nDate: {email.utils.formatdate(usegmt=True)}\r\n"
            f"Message-ID: <{boundary}@{reporting_mta}>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"Your message to {', '.join(rcpts)} is not delivered yet and is being retried: {reason}\r\n\r\n"
            f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; {reporting_mta}\r\n{recipients}\r\n"
            f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{header}\r\n\r\n"
            f"--{boundary}--\r\n").encode()
