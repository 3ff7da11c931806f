"""Relay and identity: no open relay (plain or in disguise), no submission without authentication,
no sending as somebody else. Every probe stops before DATA (RSET, QUIT); only a relay sink the
operator names in the target ever gets a message, to confirm a relay."""

from __future__ import annotations

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.auth import require_session
from conformance.probes.abuse.relay import (
    RcptAttempt,
    Refusal,
    RelayFormsResult,
    SpoofResult,
    SubmissionResult,
)
from conformance.probes.wire.outcome import Attempt
from conformance.target import Endpoint
from conformance.verdict import Inconclusive


def _describe(attempt: RcptAttempt) -> str:
    confirmed = f"; confirmed at DATA to the relay sink: {attempt.confirmed}" if attempt.confirmed else \
        " (stopped before DATA: nothing was relayed)"
    return f"RCPT TO:<{attempt.recipient}> ({attempt.form}) -> '{attempt.reply}'{confirmed}"


def _forms(endpoint: Endpoint, relay_forms: dict[str, Attempt[RelayFormsResult]],
           evidence: Evidence) -> RelayFormsResult:
    result = require_session(evidence, relay_forms[endpoint.id])
    evidence.add("mail_from_reply", result.mail_reply)
    if not result.attempts:
        raise Inconclusive(f"{endpoint}: MAIL FROM was refused ({result.mail_reply}); no RCPT could be tried")
    for a in result.attempts:
        evidence.add(f"rcpt {a.form}", f"{a.recipient} -> {a.reply}")
    return result


@pytest.mark.requirement("RELAY-OPEN-01")
@pytest.mark.service("mx")
def test_no_open_relay(endpoint: Endpoint, relay_forms: dict[str, Attempt[RelayFormsResult]],
                       evidence: Evidence) -> None:
    """Unauthenticated RCPT to a foreign domain is refused (RFC 5321 3.6.2: 550/554 5.7.1)."""
    plain = _forms(endpoint, relay_forms, evidence).form("plain")
    assert plain is not None
    assert not plain.accepted, (
        f"{endpoint}: open relay: without authentication, {_describe(plain)}. Restrict relaying to "
        f"authenticated clients and your own domains (Postfix: smtpd_relay_restrictions)")


@pytest.mark.requirement("RELAY-FORMS-01")
@pytest.mark.service("mx")
def test_no_relay_by_address_tricks(endpoint: Endpoint, relay_forms: dict[str, Attempt[RelayFormsResult]],
                                    evidence: Evidence) -> None:
    """Percent hack, bang path, source route and a quoted local part hiding a foreign address."""
    result = _forms(endpoint, relay_forms, evidence)
    plain = result.form("plain")
    plain_relayed = plain is not None and plain.accepted
    # RFC 5321 4.1.1.3 and appendix C: a server ignores source routes, so "@local:user@far" is the plain
    # foreign address; accepted, it is news only where the plain form was refused (else RELAY-OPEN-01's).
    accepted = [a for a in result.attempts if a.form != "plain" and a.accepted
                and not (a.form == "source-route" and plain_relayed)]
    assert not accepted, (
        f"{endpoint}: relay through a disguised address, without authentication: "
        + "; ".join(_describe(a) for a in accepted)
        + ". Reject local parts with %, !, @ or quotes for your domains (Postfix: allow_percent_hack = no, "
          "swap_bangpath = no, and reject unknown local recipients)")


@pytest.mark.requirement("RELAY-SUBMIT-01")
@pytest.mark.service("submission", "submissions")
def test_submission_requires_auth(endpoint: Endpoint, unauth_submission: dict[str, Attempt[SubmissionResult]],
                                  evidence: Evidence) -> None:
    """RFC 6409 4.3: submission takes mail only from authenticated clients (530 5.7.0)."""
    result = require_session(evidence, unauth_submission[endpoint.id])
    if result.before_tls is not None:
        evidence.add("mail_before_tls", f"{result.before_tls} ({result.before_tls_kind})")
    evidence.add("mail_inside_tls", f"{result.mail_reply} ({result.mail_kind})")
    evidence.add("rcpt_inside_tls", f"{result.rcpt_reply} ({result.rcpt_kind})" if result.rcpt_reply else "not sent")
    assert not result.accepted, (
        f"{endpoint}: mail accepted without authentication: MAIL -> '{result.mail_reply}', "
        f"RCPT -> '{result.rcpt_reply}' (stopped before DATA). Submission must answer 530 5.7.0 "
        f"Authentication required (Postfix: smtpd_recipient_restrictions = permit_sasl_authenticated, reject)")
    if not result.refused_for_auth:
        raise Inconclusive(
            f"{endpoint}: without authentication MAIL -> '{result.mail_reply}', RCPT to the test account -> "
            f"'{result.rcpt_reply or 'not sent'}': neither is an authentication or policy refusal (530, 5.7.x), so "
            f"whether this endpoint takes mail from anybody is not shown; check that [accounts.test] names an "
            f"address it delivers to")
    if result.mail_kind is Refusal.STARTTLS_FIRST:
        evidence.add("note", "inside TLS the refusal still says 'STARTTLS first' instead of 'authentication required'")


@pytest.mark.requirement("RELAY-SPOOF-01")
@pytest.mark.service("submission", "submissions")
def test_no_sender_spoofing(endpoint: Endpoint, sender_spoofing: dict[str, Attempt[SpoofResult]],
                            evidence: Evidence) -> None:
    """An authenticated user may not use another user's address as envelope sender."""
    result = require_session(evidence, sender_spoofing[endpoint.id])
    evidence.add("own_address", result.own_mail)
    evidence.add("forged_mail", f"MAIL FROM:<{result.forged}> -> {result.forged_mail}")
    evidence.add("forged_rcpt", result.forged_rcpt or "not sent")
    assert not result.spoofing_accepted, (
        f"{endpoint}: the test account, logged in, may send as <{result.forged}>: MAIL -> "
        f"'{result.forged_mail}', RCPT -> '{result.forged_rcpt}' (stopped before DATA). Bind envelope senders "
        f"to the login (Postfix: reject_sender_login_mismatch with smtpd_sender_login_maps)")
