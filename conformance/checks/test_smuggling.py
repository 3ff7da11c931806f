"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA (RFC 5321 4.1.1.4; CVE-2023-51764/51765/51766)."""

from __future__ import annotations

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.auth import require_session
from conformance.probes.abuse.smuggling import FormResult, SmugglingResult
from conformance.probes.wire.outcome import Attempt
from conformance.target import Endpoint
from conformance.verdict import Inconclusive


@pytest.mark.requirement("SMUGGLE-01")
@pytest.mark.service("mx", "submission", "submissions")
def test_no_smtp_smuggling(endpoint: Endpoint, smuggling: dict[str, Attempt[SmugglingResult]],
                           evidence: Evidence) -> None:
    """<LF>.<LF>, <CR>.<CR>, <LF>.<CR><LF> and <CR><LF>.<LF> inside a message are body, not its end."""
    result = require_session(evidence, smuggling[endpoint.id])
    for form in result.forms:
        evidence.add(f"form {form.form}", _describe(form))
    bad = result.vulnerable
    assert not bad, (
        f"{endpoint}: the server ends DATA at " + ", ".join(f"{f.form} ({_consequence(f)})" for f in bad)
        + ". Only <CRLF>.<CRLF> may end DATA; reject bare LF/CR (Postfix: smtpd_forbid_bare_newline = yes)")
    unsure = result.undetermined
    if unsure:
        raise Inconclusive(f"{endpoint}: where DATA ended is not shown for "
                           + "; ".join(f"{f.form} ({_describe(f)})" for f in unsure))


def _describe(form: FormResult) -> str:
    tries = " (in each of 2 sessions)" if form.sessions > 1 else ""
    ending = f"; the session then ended without QUIT's 221: {form.lost}{tries}" if form.lost else ""
    ran = ""
    if form.ends_data:
        ran = "; the command after the form ran" if form.smuggled_command_ran else "; no command after it ran"
    return (f"DATA -> {form.data_reply or 'no reply'}; then {len(form.trailing_replies)} extra replies before "
            f"QUIT's 221{ran}{ending}")


def _consequence(form: FormResult) -> str:
    replies = " | ".join(form.trailing_replies[:2])
    if form.smuggled_command_ran:
        return (f"then ran the rest of the body as commands: {replies}; a second, spoofed message can be "
                f"smuggled past SPF/DMARC")
    return (f"then answered the rest of the body as commands ({replies}) without running them; no second "
            f"message went through here, but the message was split where a receiving server would not split it")
