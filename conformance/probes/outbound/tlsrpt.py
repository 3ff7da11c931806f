"""TLS-RPT reports (RFC 8460) as the lab receives them: the gateway's report mail, its gzip'd JSON attachment
unpacked into what each policy names (domain, type, session counts, failure types).

Parsed with the standard library's ``email`` and ``gzip``: a report is one MIME part and one JSON document.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from dataclasses import dataclass
from email import message_from_bytes, policy

MEDIA_TYPE = "application/tlsrpt+gzip"
MAX_REPORT = 1 << 20     # bytes of JSON after gunzip: a lab report is a few hundred


@dataclass(frozen=True)
class PolicyResult:
    domain: str
    policy_type: str                       # "tlsa", "sts" or "no-policy-found"
    successes: int
    failures: int
    result_types: tuple[str, ...]          # failure-details result-type values


@dataclass(frozen=True)
class TlsReport:
    """One report, or why it is not one (``problem``)."""

    policies: tuple[PolicyResult, ...] = ()
    problem: str | None = None

    def policy(self, domain: str) -> PolicyResult | None:
        return next((p for p in self.policies if p.domain.rstrip(".").lower() == domain.lower()), None)


def parse_report(message: bytes) -> TlsReport:
    parts = [p for p in message_from_bytes(message, policy=policy.default).walk()
             if p.get_content_type() == MEDIA_TYPE]
    if not parts:
        return TlsReport(problem=f"the report mail has no {MEDIA_TYPE} part (RFC 8460 §5.3)")
    payload = parts[0].get_payload(decode=True)
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(payload if isinstance(payload, bytes) else b"")) as unpacked:
            raw = unpacked.read(MAX_REPORT + 1)
        document = json.loads(raw[:MAX_REPORT])
    except (OSError, EOFError, zlib.error) as exc:
        return TlsReport(problem=f"the {MEDIA_TYPE} part is not gzip data: {exc}")
    except ValueError as exc:
        return TlsReport(problem=f"the report is not JSON: {exc}")
    try:
        return TlsReport(tuple(_policy(p) for p in document["policies"]))
    except (KeyError, TypeError, ValueError) as exc:
        return TlsReport(problem=f"the report lacks RFC 8460's policies[] fields (missing or malformed: {exc})")


def _policy(entry: dict[str, object]) -> PolicyResult:
    described, summary = entry["policy"], entry["summary"]
    if not isinstance(described, dict) or not isinstance(summary, dict):
        raise TypeError("policy or summary is not an object")
    details = entry.get("failure-details", [])
    kinds = tuple(str(d["result-type"]) for d in details) if isinstance(details, list) else ()
    return PolicyResult(str(described["policy-domain"]), str(described["policy-type"]),
                        int(summary["total-successful-session-count"]), int(summary["total-failure-session-count"]),
                        kinds)

