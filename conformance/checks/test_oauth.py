"""OAuth 2.0 logins: tokens only inside TLS, refusals that say why without telling users apart, basic
authentication really retired where the target says so."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.auth import require_session
from conformance.fixtures.oauth import oauth_account
from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.auth.mechanisms import OAUTH
from conformance.probes.auth.oauth import BasicLogin, OAuthPosture, oauth_error
from conformance.probes.auth.sasl import SaslReply
from conformance.probes.wire.outcome import Attempt
from conformance.target import Endpoint, Target
from conformance.verdict import Inconclusive

_LOGIN_SERVICES = ("submission", "submissions", "imap", "imaps", "pop3", "pop3s")


def _offered_in_clear(endpoint: Endpoint, capabilities: dict[str, Attempt[Any]], evidence: Evidence) -> set[str]:
    caps = evidence.require(capabilities[endpoint.id])
    if endpoint.protocol == "smtp":
        before = caps.pre_tls.auth_mechanisms if caps.pre_tls else frozenset()
    else:
        prefix = "AUTH=" if endpoint.protocol == "imap" else "SASL="
        before = {c.removeprefix(prefix) for c in (caps.pre_tls or ()) if c.startswith(prefix)}
    evidence.add("mechanisms_before_tls", sorted(before) or "none")
    return set(before) & set(OAUTH)


@pytest.mark.requirement("AUTH-OAUTH-01")
@pytest.mark.service("submission", "imap", "pop3")
def test_oauth_offered_only_inside_tls(endpoint: Endpoint, smtp_capabilities: dict[str, Attempt[Any]],
                                       imap_capabilities: dict[str, Attempt[Any]],
                                       pop3_capabilities: dict[str, Attempt[Any]], evidence: Evidence) -> None:
    """A bearer token is a password for as long as it lives (RFC 6750 5.3: always TLS)."""
    capabilities = {"smtp": smtp_capabilities, "imap": imap_capabilities, "pop3": pop3_capabilities}
    offered = _offered_in_clear(endpoint, capabilities[endpoint.protocol], evidence)
    assert not offered, (
        f"{endpoint}: {', '.join(sorted(offered))} offered before STARTTLS: clients send bearer tokens in clear, "
        f"and a captured token logs anyone in until it expires. Offer OAuth mechanisms only inside TLS")


def _judge_refusal(endpoint: Endpoint, mechanism: str, known: SaslReply, unknown: SaslReply,
                   evidence: Evidence) -> list[str]:
    evidence.add(f"{mechanism}.known_user", f"{known.reply} (error {known.challenge or 'none'})")
    evidence.add(f"{mechanism}.unknown_user", f"{unknown.reply} (error {unknown.challenge or 'none'})")
    accepted = [who for who, a in (("the known user", known), ("an unknown user", unknown))
                if a.outcome is LoginOutcome.ACCEPTED]
    assert not accepted, (f"{endpoint}: {mechanism} with a token nobody issued logged {' and '.join(accepted)} "
                          f"in: the server does not validate bearer tokens")
    if LoginOutcome.TEMPORARY in (known.outcome, unknown.outcome):
        raise Inconclusive(f"{endpoint}: {mechanism} refusals were temporary ('{known.reply}' / '{unknown.reply}')")
    problems = []
    error, other = oauth_error(known), oauth_error(unknown)
    if error is None or "status" not in error:
        problems.append(f"{mechanism} refused the token without the RFC 7628 3.2.2 error (a JSON object with "
                        f"\"status\"; got challenge {known.challenge or 'none'!r}, reply '{known.reply}')")
    seen = (known.code, (error or {}).get("status"), (error or {}).get("scope"))
    if seen != (unknown.code, (other or {}).get("status"), (other or {}).get("scope")):
        problems.append(f"{mechanism} answers an unknown user differently ('{unknown.reply}', error "
                        f"{unknown.challenge or 'none'}) from a known one ('{known.reply}', error "
                        f"{known.challenge or 'none'}): the refusal tells which users exist")
    return problems


@pytest.mark.requirement("AUTH-OAUTH-02")
@pytest.mark.service(*_LOGIN_SERVICES)
def test_invalid_token_refused_alike(endpoint: Endpoint, oauth_refusals: dict[str, Attempt[OAuthPosture]],
                                     evidence: Evidence) -> None:
    posture = require_session(evidence, oauth_refusals[endpoint.id])
    evidence.add("oauth_mechanisms_inside_tls", sorted(posture.advertised) or "none")
    if not posture.refusals:
        pytest.skip(f"{endpoint}: no OAuth mechanism (OAUTHBEARER, XOAUTH2) offered inside TLS")
    problems = [p for r in posture.refusals for p in _judge_refusal(endpoint, r.mechanism, r.known, r.unknown,
                                                                     evidence)]
    assert not problems, f"{endpoint}: " + "; ".join(problems)


@pytest.mark.requirement("AUTH-BASIC-01")
@pytest.mark.service(*_LOGIN_SERVICES)
def test_basic_auth_retired(endpoint: Endpoint, target: Target,
                            basic_auth_logins: dict[str, Attempt[tuple[BasicLogin, ...]]], evidence: Evidence) -> None:
    if target.policy.basic_auth != "forbidden":
        pytest.skip("the target keeps basic authentication ([policy] basic_auth is not \"forbidden\")")
    account = oauth_account(target)
    if account is None:
        pytest.skip("no account carries both a token and a password: nothing shows basic auth is retired")
    logins = require_session(evidence, basic_auth_logins[endpoint.id])
    for login in logins:
        evidence.add(f"{login.mechanism}{'' if login.advertised else ' (not advertised)'}", login.answer.reply)
    let_in = [f"{x.mechanism} ('{x.answer.reply}')" for x in logins if x.answer.outcome is LoginOutcome.ACCEPTED]
    assert not let_in, (
        f"{endpoint}: basic authentication is retired by policy, yet {account.username} logs in with the "
        f"password over {', '.join(let_in)}. Switch off PLAIN/LOGIN (and IMAP LOGIN / POP3 USER) for OAuth users")
    if any(x.answer.outcome is LoginOutcome.TEMPORARY for x in logins):
        raise Inconclusive(f"{endpoint}: temporary answers, so the refusal of basic auth is not proven: "
                           + "; ".join(f"{x.mechanism} -> '{x.answer.reply}'" for x in logins))
