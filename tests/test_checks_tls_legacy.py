"""The TLS checks against an independent TLS stack (tlslite-ng) speaking what Debian's OpenSSL 3 no
longer can: SSL 3.0, RC4, 3DES, static RSA, and a server that ignores RFC 5746 as pre-2009 servers did.
The checks must see these through their own raw ClientHellos, not through the local OpenSSL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tls_servers import Served, hello_then_abort_server, tlslite_server
from tlslite.api import TLSConnection
from tlslite.constants import CipherSuite, ExtensionType
from tlslite.messages import ClientHello

from tests.suite_runner import SuiteRun, run_suite

pytestmark = pytest.mark.reference

TLS_CHECKS = "test_no_protocol_below or test_tls_1_2 or test_tls_1_3 or broken_cipher or forward_secret or secure_renegotiation"


class PreRfc5746Connection(TLSConnection):  # type: ignore[misc]
    """A real tlslite-ng server that does not understand secure renegotiation: it never sees the
    client's renegotiation_info or SCSV, so its ServerHello carries no renegotiation_info."""

    def _getMsg(self, expectedType, secondaryType=None, constructorType=None):  # type: ignore[no-untyped-def]
        for result in super()._getMsg(expectedType, secondaryType, constructorType):
            if isinstance(result, ClientHello):
                scsv = CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV
                result.cipher_suites = [c for c in result.cipher_suites if c != scsv]
                if result.extensions:
                    result.extensions = [e for e in result.extensions
                                         if e.extType != ExtensionType.renegotiation_info]
            yield result


def _target(served: Served, directory: Path) -> Path:
    path = directory / "legacy.toml"
    path.write_text(f"""
[target]
name = "tlslite"
timeout = 5

[[node]]
name = "node1"
host = "localhost"
address = "127.0.0.1"
services = {{ submissions = {served.endpoint.port} }}
""")
    return path


def _verdicts(run: SuiteRun) -> dict[str, str]:
    return {c.requirement: c.verdict for c in run.cases if c.verdict != "skipped"}


@pytest.fixture(scope="module")
def legacy_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuiteRun]:
    with tlslite_server(min_version=(3, 0), max_version=(3, 3)) as served:
        workdir = tmp_path_factory.mktemp("legacy")
        yield run_suite(_target(served, workdir), workdir, extra=("-k", TLS_CHECKS))


def test_legacy_versions_and_broken_suites_fail(legacy_run: SuiteRun) -> None:
    verdicts = _verdicts(legacy_run)
    assert verdicts == {"TLS-VER-01": "fail", "TLS-VER-02": "pass", "TLS-VER-03": "fail",
                        "TLS-SUITE-01": "fail", "TLS-SUITE-02": "fail", "TLS-RENEG-01": "pass"}, legacy_run.describe()
    reasons = {c.requirement: c.reason for c in legacy_run.with_verdict("fail")}
    assert "SSL 3.0" in reasons["TLS-VER-01"] and "TLS 1.0" in reasons["TLS-VER-01"]
    assert "RC4" in reasons["TLS-SUITE-01"] and "3DES" in reasons["TLS-SUITE-01"]


def test_server_without_rfc5746_fails_secure_renegotiation(tmp_path: Path) -> None:
    with tlslite_server(min_version=(3, 3), max_version=(3, 3), cipher_names=("aes128gcm",),
                        key_exchange_names=("ecdhe_rsa",), connection=PreRfc5746Connection) as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", TLS_CHECKS))
    verdicts = _verdicts(run)
    assert verdicts["TLS-RENEG-01"] == "fail", run.describe()
    assert {r for r, v in verdicts.items() if v == "fail"} == {"TLS-RENEG-01", "TLS-VER-03"}, run.describe()
    assert "RFC 5746" in next(c.reason for c in run.with_verdict("fail") if c.requirement == "TLS-RENEG-01")


def test_a_server_on_which_no_handshake_completes_passes_and_fails_nothing(tmp_path: Path) -> None:
    """Issue 13: ServerHello, then internal_error, on every version: no version is accepted or refused,
    no suite is accepted; every verdict is inconclusive with the server's alert in words."""
    with hello_then_abort_server() as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", TLS_CHECKS))
    verdicts = _verdicts(run)
    assert set(verdicts.values()) == {"inconclusive"}, run.describe()
    assert {"TLS-VER-01", "TLS-VER-02", "TLS-VER-03", "TLS-SUITE-01", "TLS-SUITE-02"} <= set(verdicts)
    reason = next(c.reason for c in run.cases if c.requirement == "TLS-VER-02")
    assert "TLS 1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: answers ServerHello, handshake fails: the server sent the TLS alert 'internal error'" \
        in reason, reason
