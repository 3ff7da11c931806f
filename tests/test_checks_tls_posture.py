"""TLS posture checks (issue 16) against tlslite-ng, where the reference gateway's OpenSSL cannot misbehave:
OpenSSL always honours TLS_FALLBACK_SCSV, so a server that ignores it is tlslite-ng with the signal
hidden from it, as servers from before RFC 7507 (2015) behaved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tls_servers import heartbleed_server, tlslite_server
from tlslite.api import TLSConnection
from tlslite.constants import CipherSuite
from tlslite.messages import ClientHello

from conformance.checks import test_tls_posture
from conformance.probes.tls.scan import TlsScan
from conformance.probes.tls.suites import by_name
from conformance.probes.tls.wire import TlsVersion
from conformance.probes.wire.outcome import Attempt, Outcome
from tests.suite_runner import run_suite
from tests.test_checks_auth import MX, verdict
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


def test_an_honest_tlslite_server_passes_fallback_and_heartbleed(tmp_path: Path) -> None:
    """tlslite-ng honours TLS_FALLBACK_SCSV, and negotiates heartbeats but never answers an over-long one."""
    with tlslite_server(min_version=(3, 2), max_version=(3, 3), cipher_names=("aes128gcm", "aes128"),
                        key_exchange_names=("ecdhe_rsa",)) as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "fallback_scsv or heartbleed"))
    assert _verdicts(run) == {"TLS-FALLBACK-01": "pass", "TLS-HEARTBLEED-01": "pass"}, run.describe()


def test_a_server_ignoring_fallback_scsv_fails(tmp_path: Path) -> None:
    with tlslite_server(min_version=(3, 2), max_version=(3, 3), cipher_names=("aes128gcm", "aes128"),
                        key_exchange_names=("ecdhe_rsa",), connection=PreRfc7507Connection) as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "fallback_scsv"))
    assert _verdicts(run) == {"TLS-FALLBACK-01": "fail"}, run.describe()
    assert "TLS 1.1 hello carrying TLS_FALLBACK_SCSV" in run.with_verdict("fail")[0].reason


def test_a_heartbleed_server_fails_without_any_completed_handshake(tmp_path: Path) -> None:
    """The leak is its own evidence: the crafted server (tls_servers.heartbleed_server says why crafted)
    completes no handshake, and still fails."""
    with heartbleed_server() as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "heartbleed"))
    assert _verdicts(run) == {"TLS-HEARTBLEED-01": "fail"}, run.describe()
    assert "no payload with 16400 bytes of its memory" in run.with_verdict("fail")[0].reason

def _scan_with(**findings: object) -> dict[str, Attempt[Any]]:
    """A completed scan of a TLS 1.2 server with one strong suite, as the checks read it."""
    tls12 = TlsVersion.TLS1_2
    result = TlsScan(MX.id, "127.0.0.1", frozenset({tls12}), {tls12: (by_name("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),)},
                     None, frozenset(), None, False, True, None, 10, (), 0.1, **findings)  # type: ignore[arg-type]
    return {MX.id: Attempt(MX.id, Outcome.COMPLETED, result, "", ("TLS 1.2 hello",))}


@pytest.mark.unit
def test_truncated_hmac_fails_on_the_servers_echo() -> None:
    """No TLS stack here implements truncated HMAC (OpenSSL never did, tlslite-ng neither): the check is
    proven on the scan's finding, the finding on wire bytes (tests/probes/tls/test_tls_wire.py)."""
    assert verdict(test_tls_posture.test_no_truncated_hmac, MX, _scan_with(truncated_hmac=True)) == "fail"
    assert verdict(test_tls_posture.test_no_truncated_hmac, MX, _scan_with(truncated_hmac=False)) == "pass"
    assert verdict(test_tls_posture.test_no_truncated_hmac, MX, _scan_with()) == "inconclusive"

