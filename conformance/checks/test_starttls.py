"""STARTTLS enforcement: offered where it must be, AUTH/LOGIN/USER never before it, capabilities re-read after it."""

from __future__ import annotations

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.tls import Certificates
from conformance.probes.imap.session import ImapCapabilities
from conformance.probes.pop3.session import Pop3Capabilities
from conformance.probes.smtp.session import SmtpCapabilities
from conformance.probes.wire.config import CleartextAuth
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint

# A server that checked (or accepted) credentials sent in clear has already exposed them.
_EXPOSED = (CleartextAuth.ACCEPTED, CleartextAuth.CREDENTIALS_CHECKED)


@pytest.mark.requirement("STARTTLS-OFFER-01")
@pytest.mark.service("mx", "submission")
def test_starttls_offered(endpoint: Endpoint, smtp_capabilities: dict[str, Attempt[SmtpCapabilities]],
                          evidence: Evidence) -> None:
    caps = evidence.require(smtp_capabilities[endpoint.id])
    evidence.add("ehlo_before_tls", caps.pre_tls.extensions if caps.pre_tls else "none")
    assert caps.starttls_offered, (
        f"{endpoint}: EHLO does not offer STARTTLS, so mail to it travels in clear; enable STARTTLS "
        f"(Postfix: smtpd_tls_security_level = may|encrypt)")
    reply = caps.starttls_reply
    assert reply is not None, f"{endpoint}: STARTTLS is advertised but was never answered"
    evidence.add("starttls_reply", reply)
    assert reply.code == 220, f"{endpoint}: STARTTLS is advertised but refused: '{reply}'"
    assert caps.tls is not None, (
        f"{endpoint}: STARTTLS was answered '{reply}', then the TLS handshake failed: {caps.tls_error}")
    evidence.add("negotiated", f"{caps.tls.version} {caps.tls.cipher}")


@pytest.mark.requirement("STARTTLS-AUTH-01")
@pytest.mark.service("submission")
def test_no_auth_before_tls(endpoint: Endpoint, smtp_capabilities: dict[str, Attempt[SmtpCapabilities]],
                            evidence: Evidence) -> None:
    caps = evidence.require(smtp_capabilities[endpoint.id])
    reply = caps.auth_before_tls
    evidence.add("auth_before_tls_reply",
                 f"AUTH {caps.auth_before_tls_mechanism}: {reply.code} {reply.text}" if reply else "not sent")
    evidence.add("auth_mechanisms_before_tls", caps.auth_mechanisms_before_tls)
    assert not caps.auth_mechanisms_before_tls, (
        f"{endpoint}: EHLO advertises AUTH {' '.join(sorted(caps.auth_mechanisms_before_tls))} before STARTTLS; "
        f"clients may send passwords in clear (Postfix: smtpd_tls_auth_only = yes)")
    assert caps.cleartext_auth not in _EXPOSED, (
        f"{endpoint}: AUTH {caps.auth_before_tls_mechanism} before STARTTLS was {caps.cleartext_auth} "
        f"({reply.code if reply else '-'} {reply.text if reply else ''}), whether advertised or not; "
        f"it must be refused (530 5.7.0)")


@pytest.mark.requirement("STARTTLS-IMAP-01")
@pytest.mark.service("imap")
def test_imap_login_disabled_before_tls(endpoint: Endpoint, imap_capabilities: dict[str, Attempt[ImapCapabilities]],
                                        evidence: Evidence) -> None:
    caps = evidence.require(imap_capabilities[endpoint.id])
    evidence.add("capability_before_tls", caps.pre_tls or "none")
    login = caps.login_before_tls
    evidence.add("login_before_tls", f"{login.status} {login.text}" if login else "not sent")
    assert not caps.preauth, f"{endpoint}: greets with PREAUTH before TLS: anyone is logged in without a password"
    assert caps.cleartext_login not in _EXPOSED, (
        f"{endpoint}: LOGIN before STARTTLS was {caps.cleartext_login} "
        f"({login.status if login else '-'} {login.text if login else ''}); passwords cross the wire in clear "
        f"(Dovecot: disable_plaintext_auth = yes)")
    sasl = caps.authenticate_before_tls
    evidence.add("authenticate_plain_before_tls", f"{sasl.status} {sasl.text}" if sasl else
                 "not sent" if caps.cleartext_authenticate is CleartextAuth.NOT_TRIED else "no final answer")
    assert caps.cleartext_authenticate not in _EXPOSED, (
        f"{endpoint}: AUTHENTICATE PLAIN before STARTTLS was {caps.cleartext_authenticate} "
        f"({sasl.status if sasl else 'still asking for more after *'} {sasl.text if sasl else ''}), "
        f"LOGINDISABLED or not; SASL passwords cross the wire in clear (Dovecot: disable_plaintext_auth = yes)")
    assert caps.logindisabled_before_tls, (
        f"{endpoint}: CAPABILITY before STARTTLS lacks LOGINDISABLED, so clients will try LOGIN in clear")


@pytest.mark.requirement("STARTTLS-POP3-01")
@pytest.mark.service("pop3")
def test_pop3_no_login_before_stls(endpoint: Endpoint, pop3_capabilities: dict[str, Attempt[Pop3Capabilities]],
                                   evidence: Evidence) -> None:
    caps = evidence.require(pop3_capabilities[endpoint.id])
    evidence.add("capa_before_tls", caps.pre_tls or "none")
    clear = caps.cleartext
    user = clear.user
    evidence.add("user_pass_before_tls", " / ".join(str(r) for r in user if r is not None) if user else "not sent")
    evidence.add("apop_before_tls", str(clear.apop) if clear.apop else "not offered")
    evidence.add("auth_plain_before_tls", str(clear.auth) if clear.auth else "not sent")
    exposed = [f"{what} was {verdict} ({reply})" for what, verdict, reply in (
        ("USER/PASS", clear.user_verdict, " / ".join(str(r) for r in user if r is not None) if user else "-"),
        ("APOP", clear.apop_verdict, clear.apop), ("AUTH PLAIN", clear.auth_verdict, clear.auth))
        if verdict in _EXPOSED]
    assert not exposed, (
        f"{endpoint}: before STLS, {'; '.join(exposed)}: passwords cross the wire in clear. Refuse USER, APOP and "
        f"AUTH until STLS (Dovecot: disable_plaintext_auth = yes)")
    assert caps.stls_offered, f"{endpoint}: CAPA does not offer STLS, so POP3 clients can only log in in clear"
    assert caps.tls is not None, (
        f"{endpoint}: STLS was answered '{caps.stls_reply}', then no TLS session followed: {caps.tls_error}")
    evidence.add("negotiated", f"{caps.tls.version} {caps.tls.cipher}")


@pytest.mark.requirement("STARTTLS-RECAP-01")
@pytest.mark.service("mx", "submission", "imap", "pop3")
def test_capabilities_refreshed_after_starttls(endpoint: Endpoint,
                                               smtp_capabilities: dict[str, Attempt[SmtpCapabilities]],
                                               imap_capabilities: dict[str, Attempt[ImapCapabilities]],
                                               pop3_capabilities: dict[str, Attempt[Pop3Capabilities]],
                                               evidence: Evidence) -> None:
    if endpoint.protocol == "pop3":
        pcaps = evidence.require(pop3_capabilities[endpoint.id])
        if pcaps.tls is None:
            pytest.skip(f"{endpoint}: no TLS session to look into ({pcaps.tls_error or 'STLS not taken'}; "
                        "see STARTTLS-POP3-01)")
        after = pcaps.post_tls or frozenset()
        evidence.add("capa_after_tls", after or "none")
        assert after, f"{endpoint}: no CAPA answer after STLS (RFC 2595 4: clients re-read it)"
        assert "STLS" not in after, f"{endpoint}: CAPA still offers STLS inside TLS"
        return
    if endpoint.protocol == "imap":
        icaps = evidence.require(imap_capabilities[endpoint.id])
        if icaps.tls is None:
            pytest.skip(f"{endpoint}: no TLS session to look into ({icaps.tls_error or 'STARTTLS not taken'}; "
                        "see STARTTLS-OFFER-01 / STARTTLS-IMAP-01)")
        after = icaps.post_tls or frozenset()
        evidence.add("capability_after_tls", after or "none")
        assert after, f"{endpoint}: no CAPABILITY answer after STARTTLS"
        assert "STARTTLS" not in after, f"{endpoint}: CAPABILITY still offers STARTTLS inside TLS"
        return
    scaps = evidence.require(smtp_capabilities[endpoint.id])
    if scaps.tls is None:
        pytest.skip(f"{endpoint}: no TLS session to look into ({scaps.tls_error or 'STARTTLS not taken'}; "
                    "see STARTTLS-OFFER-01)")
    assert scaps.post_tls is not None, f"{endpoint}: no EHLO answer after STARTTLS"
    evidence.add("ehlo_after_tls", scaps.post_tls.extensions)
    assert not scaps.post_tls.starttls, f"{endpoint}: EHLO still offers STARTTLS inside TLS"


@pytest.mark.requirement("TLS-IMPLICIT-01")
@pytest.mark.service("submissions", "imaps", "pop3s")
def test_implicit_tls_served(endpoint: Endpoint, certificates: dict[str, Certificates], evidence: Evidence) -> None:
    handshake = certificates[endpoint.id].default
    if handshake.outcome is Outcome.SERVER_ERROR:
        evidence.attach(handshake)  # type: ignore[arg-type]
        pytest.fail(f"{endpoint}: no TLS handshake on an implicit-TLS port: {handshake.reason}", pytrace=False)
    result = evidence.require(handshake)
    evidence.add("negotiated", f"{result.version} {result.cipher}")
    assert result.version in ("TLSv1.2", "TLSv1.3"), (
        f"{endpoint}: implicit TLS negotiated {result.version}; TLS 1.2 or newer is required")
