"""The reference gateway's TLS-RPT report (RFC 8460 §4 schema, §5.3 mail): the sessions it counted per policy
domain, as gzip'd JSON attached to a multipart/report message. Built with the standard library's ``email``."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import secrets
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

ORGANIZATION = "mailconform reference gateway"


@dataclass
class Sessions:
    """What the sender saw for one policy domain."""

    policy_type: str                       # "tlsa" or "sts"
    successes: int = 0
    failures: dict[str, int] = field(default_factory=dict)   # result-type -> sessions


def report_json(domain: str, sessions: Sessions, start: dt.datetime, end: dt.datetime) -> dict[str, object]:
    return {
        "organization-name": ORGANIZATION,
        "date-range": {"start-datetime": _stamp(start), "end-datetime": _stamp(end)},
        "contact-info": "postmaster@example.test",
        "report-id": f"{secrets.token_hex(8)}@example.test",
        "policies": [{
            "policy": {"policy-type": sessions.policy_type, "policy-domain": domain},
            "summary": {"total-successful-session-count": sessions.successes,
                        "total-failure-session-count": sum(sessions.failures.values())},
            "failure-details": [{"result-type": kind, "failed-session-count": count}
                                for kind, count in sessions.failures.items()],
        }],
    }


def report_message(domain: str, rua: str, document: dict[str, object], sender: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = rua
    message["Subject"] = f"Report Domain: {domain} Submitter: example.test Report-ID: <{document['report-id']}>"
    message["TLS-Report-Domain"] = domain
    message["TLS-Report-Submitter"] = "example.test"
    message.set_content(f"TLS-RPT report for {domain} from the mailconform reference gateway.\n")
    message.add_attachment(gzip.compress(json.dumps(document).encode()), maintype="application",
                           subtype="tlsrpt+gzip", filename=f"example.test!{domain}!report.json.gz")
    message.replace_header("Content-Type", message["Content-Type"].replace("multipart/mixed", "multipart/report"))
    message.set_param("report-type", "tlsrpt")
    return message.as_bytes(policy=policy.SMTP)   # CRLF lines, as SMTP carries them


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
