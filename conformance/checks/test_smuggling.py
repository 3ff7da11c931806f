"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA (RFC 5321 4.1.1.4; CVE-2023-51764/51765/51766)."""

from __future__ import annotations

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.auth import require_session
from conformance.probes.abuse.smuggling import SmugglingResult
from conformance.probes.wire.outcome import Attempt
from conformance.target import Endpoint


@pytest.mark.requirement("SMUGGLE-01")
@pytest.mark.service("mx", "submission", "submissions")
def test_no_smtp_smuggling(endpoint: Endpoint, smuggling: dict[str, Attempt[SmugglingResult]],
                           evidence: Evidence) -> None:
    """<LF>.<LF>, <CR>.<CR>, <LF>.<CR><LF> and <CR><LF>.<LF> inside a message are body, not its end."""
    result = require_session(evidence, smuggling[endpoint.id])
    for form in result.forms:
        evidence.add(f"form {form.form}", f"DATA -> {form.data_reply}; then {len(form.trailing_replies)} "
                                          f"extra replies before QUIT's 221")
    bad = result.vulnerable
    assert not bad, (
        f"{endpoint}: the server ends DATA at "
        + ", ".join(f"{f.form} (then answered the rest of the body as commands: "
                    f"{' | '.join(f.trailing_replies[:2])})" for f in bad)
        + ": a second, spoofed message can be smuggled past SPF/DMARC (SMTP smuggling). Accept only "
          "<CRLF>.<CRLF> and reject bare LF/CR (Postfix: smtpd_forbid_bare_newline = yes)")
