"""TLS posture checks (issue 16) against tlslite-ng, where the reference gateway's OpenSSL cannot misbehave:
OpenSSL always honours TLS_FALLBACK_SCSV, so a server that ignores it is tlslite-ng with the signal
hidden from it, as servers from before RFC 7507 (2015) behaved."""

from __future__ import annotations

from pathlib import Path

import pytest
from tls_servers import tlslite_server
from tlslite.api import TLSConnection
from tlslite.constants import CipherSuite
from tlslite.messages import ClientHello

from tests.suite_runner import run_suite
from tests.test_checks_tls_legacy import _target, _verdicts

pytestmark = pytest.mark.reference

POSTURE_CHECKS = "fallback_scsv or orders_suites or legacy_suites_rank or key_exchange_strength"


class PreRfc7507Connection(TLSConnection):  # type: ignore[misc]
    """A real tlslite-ng server that predates RFC 7507: it never sees the client's TLS_FALLBACK_SCSV."""

    def _getMsg(self, expectedType, secondaryType=None, constructorType=None):  # type: ignore[no-untyped-def]
        for result in super()._getMsg(expectedType, secondaryType, constructorType):
            if isinstance(result, ClientHello):
                result.cipher_suites = [c for c in result.cipher_suites if c != CipherSuite.TLS_FALLBACK_SCSV]
            yield result


@pytest.mark.parametrize(("connection", "verdict"), [(None, "pass"), (PreRfc7507Connection, "fail")],
                         ids=["tlslite-ng", "pre-rfc7507"])
def test_fallback_scsv(connection: type | None, verdict: str, tmp_path: Path) -> None:
    with tlslite_server(min_version=(3, 2), max_version=(3, 3), cipher_names=("aes128gcm", "aes128"),
                        key_exchange_names=("ecdhe_rsa",), connection=connection) as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "fallback_scsv"))
    assert _verdicts(run) == {"TLS-FALLBACK-01": verdict}, run.describe()
    if verdict == "fail":
        assert "TLS 1.1 hello carrying TLS_FALLBACK_SCSV" in run.with_verdict("fail")[0].reason
