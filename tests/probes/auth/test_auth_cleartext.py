"""Authentication before TLS in the capability probes: every cleartext exchange ends in a known state,
and a mechanism accepted in clear is found whether advertised or not."""

from __future__ import annotations

import ssl

import pytest
from fake_imap import FakeImap
from hostile import CLOSE, hidden_auth_login, run, script, serving
from smtp_servers import endless_sasl_server

from conformance.probes.imap.session import ImapCapabilities, probe_imap_capabilities
from conformance.probes.smtp.session import SmtpCapabilities, probe_smtp_capabilities
from conformance.probes.wire.config import CleartextAuth, ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Service

pytestmark = pytest.mark.unit


def test_endless_sasl_does_not_swallow_starttls(context: ssl.SSLContext) -> None:
    """A server that answers "*" with yet another 334 is still in the AUTH exchange: STARTTLS sent there
    would be read as a SASL response, so it goes to a fresh connection (RFC 4954 4)."""
    async def main() -> Attempt[SmtpCapabilities]:
        async with endless_sasl_server(context) as endpoint:
            return await probe_smtp_capabilities(endpoint, ProbeConfig(timeout=5, use_system_store=False))
    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    caps = result.result
    assert caps is not None and caps.starttls_reply is not None
    assert caps.starttls_reply.code == 220 and caps.tls is not None
    assert caps.cleartext_auth is CleartextAuth.CREDENTIALS_CHECKED  # it did take up AUTH in clear
    assert any("fresh connection" in line for line in result.transcript)


def test_auth_taken_in_clear_though_not_advertised() -> None:
    async def main() -> Attempt[SmtpCapabilities]:
        async with serving(hidden_auth_login) as endpoint:
            return await probe_smtp_capabilities(endpoint, ProbeConfig(timeout=5, use_system_store=False))
    result = run(main())
    caps = result.result
    assert caps is not None, result.reason
    assert not caps.auth_mechanisms_before_tls
    assert caps.cleartext_auth is CleartextAuth.CREDENTIALS_CHECKED and caps.auth_before_tls_mechanism == "LOGIN"
    assert caps.auth_before_tls is not None and caps.auth_before_tls.code == 535


def imap_caps(server: FakeImap) -> Attempt[ImapCapabilities]:
    async def main() -> Attempt[ImapCapabilities]:
        async with serving(server, Service.IMAP) as endpoint:
            return await probe_imap_capabilities(endpoint, ProbeConfig(timeout=5, use_system_store=False))
    return run(main())


def test_imap_authenticate_in_clear_despite_logindisabled(context: ssl.SSLContext) -> None:
    result = imap_caps(FakeImap(context, sasl_before_tls=True))
    caps = result.result
    assert caps is not None, result.reason
    assert caps.logindisabled_before_tls and caps.cleartext_login is CleartextAuth.REFUSED_FOR_TLS
    assert caps.cleartext_authenticate is CleartextAuth.CREDENTIALS_CHECKED
    assert caps.tls is not None


def test_imap_authenticate_refused_for_tls(context: ssl.SSLContext) -> None:
    caps = imap_caps(FakeImap(context)).result
    assert caps is not None and caps.cleartext_authenticate is CleartextAuth.REFUSED_FOR_TLS and caps.tls is not None


def test_imap_endless_sasl_does_not_swallow_starttls(context: ssl.SSLContext) -> None:
    result = imap_caps(FakeImap(context, endless_sasl=True))
    caps = result.result
    assert caps is not None, result.reason
    assert caps.cleartext_authenticate is CleartextAuth.CREDENTIALS_CHECKED and caps.authenticate_before_tls is None
    assert caps.tls is not None and any("fresh connection" in line for line in result.transcript)


def test_hang_up_after_one_cleartext_auth_keeps_the_first_answer() -> None:
    """Trying AUTH LOGIN after AUTH PLAIN must not cost the capability probe when the server ends the
    session after one failed AUTH (RFC 4954 4 lets it): the PLAIN answer stands."""
    behaviour = script(b"220 strict.test\r\n", None, b"250-strict.test\r\n250 8BITMIME\r\n", None,
                       b"530 5.7.0 Must issue a STARTTLS command first\r\n", None,
                       b"421 4.7.0 Too many errors\r\n", CLOSE)

    async def main() -> Attempt[SmtpCapabilities]:
        async with serving(behaviour) as endpoint:
            return await probe_smtp_capabilities(endpoint, ProbeConfig(timeout=5, use_system_store=False))
    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.cleartext_auth is CleartextAuth.REFUSED_FOR_TLS
