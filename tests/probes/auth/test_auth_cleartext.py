"""Authentication before TLS in the capability probes: every cleartext exchange ends in a known state,
and a mechanism accepted in clear is found whether advertised or not."""

from __future__ import annotations

import ssl

import pytest
from hostile import run
from smtp_servers import endless_sasl_server

from conformance.probes.smtp.session import SmtpCapabilities, probe_smtp_capabilities
from conformance.probes.wire.config import CleartextAuth, ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome

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
