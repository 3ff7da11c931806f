"""The STARTTLS family's checks over typed probe results: the verdict and the words of its reason."""

from __future__ import annotations

import pytest

from conformance.checks import test_starttls
from conformance.evidence import Evidence
from conformance.probes.smtp.session import SmtpCapabilities
from conformance.probes.smtp.wire import EhloResult, SmtpReply
from conformance.probes.wire.config import CleartextAuth
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint, Service

pytestmark = pytest.mark.unit

MX = Endpoint(Service.MX, "node1", "mx1.example.test", 25)
EHLO = EhloResult.from_reply(SmtpReply.parse(b"250-mx1.example.test\r\n250 STARTTLS\r\n"))


def caps(starttls_reply: SmtpReply | None, tls_error: str | None) -> dict[str, Attempt[SmtpCapabilities]]:
    result = SmtpCapabilities(SmtpReply.parse(b"220 hi\r\n"), EHLO, True, starttls_reply, None, tls_error, None,
                              None, CleartextAuth.NOT_TRIED)
    return {MX.id: Attempt(MX.id, Outcome.COMPLETED, result, "", ("S: 220 hi",))}


def test_failed_handshake_after_220_names_the_tls_error() -> None:
    error = "TLS error while TLS handshake: the server sent the TLS alert 'handshake failure'"
    data = caps(SmtpReply.parse(b"220 2.0.0 Ready to start TLS\r\n"), error)
    with pytest.raises(AssertionError) as failure:
        test_starttls.test_starttls_offered(MX, data, Evidence())
    message = str(failure.value)
    assert "220 2.0.0 Ready to start TLS" in message and "handshake failure" in message
    assert "refused" not in message and "no reply" not in message


def test_refusal_quotes_the_whole_reply() -> None:
    with pytest.raises(AssertionError, match="refused: '454 4.7.0 TLS not available'"):
        test_starttls.test_starttls_offered(MX, caps(SmtpReply.parse(b"454 4.7.0 TLS not available\r\n"), None),
                                            Evidence())
