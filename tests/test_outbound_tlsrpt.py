"""TLS-RPT reports as the lab reads them (RFC 8460 §5.3): the reference gateway's report parses; a mail
without the gzip'd JSON part, or with something else in it, is named as not a report, in words."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage

import pytest

from conformance.probes.outbound.tlsrpt import MEDIA_TYPE, parse_report
from conformance.reference.tlsrpt_report import Sessions, report_json, report_message

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def test_the_reference_report_parses() -> None:
    sessions = Sessions("tlsa", successes=1, failures={"tlsa-invalid": 2})
    message = report_message("d.lab.test", "tlsrpt@r.lab.test", report_json("d.lab.test", sessions, NOW, NOW),
                             "tlsrpt@example.test")
    policy = parse_report(message).policy("d.lab.test")
    assert policy is not None and (policy.policy_type, policy.successes, policy.failures, policy.result_types) == (
        "tlsa", 1, 2, ("tlsa-invalid",))


def _mail(payload: bytes | None) -> bytes:
    message = EmailMessage()
    message["Subject"] = "not a report"
    message.set_content("hello\n")
    if payload is not None:
        message.add_attachment(payload, maintype="application", subtype="tlsrpt+gzip", filename="r.json.gz")
    return bytes(message)


@pytest.mark.parametrize(("payload", "words"), [
    (None, f"no {MEDIA_TYPE} part"),
    (b"plain text, not gzip", "not gzip data"),
])
def test_what_is_not_a_report_says_why(payload: bytes | None, words: str) -> None:
    problem = parse_report(_mail(payload)).problem
    assert problem is not None and words in problem
