"""Known TLS implementation flaws (issue 16) against servers that have them: no stack installable here
has CCS injection, so its vulnerable server is crafted (tls_servers.ccs_injection_server says why); the
ROBOT oracle is tlslite-ng's real RSA key exchange with its Bleichenbacher countermeasure bypassed; 0-RTT is
``openssl s_server -early_data`` (Python's ssl cannot enable it). tlslite-ng, s_server without early data
and the reference gateway's OpenSSL are the fixed ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tls_servers import ccs_injection_server, openssl_s_server, tlslite_server
from tlslite.api import TLSConnection
from tlslite.constants import AlertDescription
from tlslite.messages import ClientKeyExchange

from tests.suite_runner import run_suite
from tests.test_checks_tls_legacy import _target, _verdicts

pytestmark = pytest.mark.reference

RSA_AND_ECDHE = {"min_version": (3, 3), "max_version": (3, 3), "cipher_names": ("aes128gcm",),
                 "key_exchange_names": ("rsa", "ecdhe_rsa")}


class PaddingOracleConnection(TLSConnection):  # type: ignore[misc]
    """tlslite-ng as servers before the Bleichenbacher countermeasure (RFC 5246 7.4.7.1) behaved: a premaster
    block that is not well-formed PKCS#1 v1.5 of 48 bytes gets decrypt_error at once, instead of a random
    premaster secret and the Finished check every other block meets (bad_record_mac)."""

    def handshakeServer(self, **kwargs: Any) -> None:
        self.oracle_key = kwargs["privateKey"]
        super().handshakeServer(**kwargs)

    def _getMsg(self, expectedType, secondaryType=None, constructorType=None):  # type: ignore[no-untyped-def]
        for result in super()._getMsg(expectedType, secondaryType, constructorType):
            # only an RSA key exchange carries a premaster block: ECDHE handshakes go through untouched
            if isinstance(result, ClientKeyExchange) and result.encryptedPreMasterSecret:
                premaster = self.oracle_key.decrypt(result.encryptedPreMasterSecret)
                if premaster is None or len(premaster) != 48:
                    yield from self._sendError(AlertDescription.decrypt_error, "bad PKCS#1 padding")
            yield result


def test_tlslite_refuses_an_early_ccs_and_is_no_robot_oracle(tmp_path: Path) -> None:
    with tlslite_server(**RSA_AND_ECDHE) as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "ccs_injection or robot"))
    assert _verdicts(run) == {"TLS-CCS-01": "pass", "TLS-ROBOT-01": "pass"}, run.describe()


def test_a_ccs_injection_server_fails_without_any_completed_handshake(tmp_path: Path) -> None:
    with ccs_injection_server() as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "ccs_injection"))
    assert _verdicts(run) == {"TLS-CCS-01": "fail"}, run.describe()
    assert "empty master secret (fatal alert bad_record_mac)" in run.with_verdict("fail")[0].reason


def test_a_padding_oracle_fails_robot(tmp_path: Path) -> None:
    with tlslite_server(**RSA_AND_ECDHE, connection=PaddingOracleConnection) as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "robot"))
    assert _verdicts(run) == {"TLS-ROBOT-01": "fail"}, run.describe()
    reason = run.with_verdict("fail")[0].reason
    assert "a well-formed block: fatal alert bad_record_mac" in reason
    assert "no 0x00 separator: fatal alert decrypt_error" in reason


@pytest.mark.parametrize(("options", "verdict"), [((), "pass"), (("-early_data",), "fail")],
                         ids=["tickets-only", "early-data"])
def test_0rtt_fails_where_resumption_alone_passes(options: tuple[str, ...], verdict: str, tmp_path: Path) -> None:
    with openssl_s_server("-tls1_3", *options) as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "early_data"))
    assert _verdicts(run) == {"TLS-0RTT-01": verdict}, run.describe()
    if verdict == "fail":
        assert "session tickets accept 16384 bytes of early data" in run.with_verdict("fail")[0].reason


@pytest.mark.parametrize(("options", "verdict"), [((), "pass"), (("-client_renegotiation",), "fail"),
                                                  (("-tls1_3",), "pass")],
                         ids=["refused", "client-renegotiation", "tls13-only"])
def test_client_renegotiation_fails_where_s_server_allows_it(options: tuple[str, ...], verdict: str,
                                                              tmp_path: Path) -> None:
    with openssl_s_server(*options) as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "client_renegotiation"))
    assert _verdicts(run) == {"TLS-RENEG-02": verdict}, run.describe()
    if verdict == "fail":
        assert "accepted a client-initiated renegotiation (4 handshakes on one connection)" in (
            run.with_verdict("fail")[0].reason)
