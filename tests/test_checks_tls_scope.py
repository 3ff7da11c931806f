"""A TLS or certificate check passes only on evidence for its own scope (issue 13): a TLS 1.2 scan that
could not finish leaves the suite, compression and renegotiation checks inconclusive, not passed on TLS 1.3
evidence; an expired certificate is no evidence that it "does not expire within the warning period"."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from certgen import issue
from cryptography.hazmat.primitives.asymmetric import rsa
from suite_runner import SuiteRun, run_suite
from tls_servers import Served, openssl_server

pytestmark = pytest.mark.reference

TLS_CHECKS = ("test_no_protocol_below or test_tls_1_2 or test_tls_1_3 or broken_cipher or forward_secret "
              "or secure_renegotiation or compression")


def _target(served: Served, directory: Path, timeout: float = 5) -> Path:
    path = directory / "scope.toml"
    path.write_text(f"""
[target]
name = "scope"
timeout = {timeout}

[[node]]
name = "node1"
host = "localhost"
address = "127.0.0.1"
services = {{ submissions = {served.endpoint.port} }}
""")
    return path


def _verdicts(run: SuiteRun) -> dict[str, str]:
    return {c.requirement: c.verdict for c in run.cases}


def test_tls_1_3_evidence_alone_passes_nothing_about_tls_1_2(tmp_path: Path) -> None:
    """TLS 1.3 completes; no older hello is ever answered (as when the TLS 1.2 scan cannot finish)."""
    with openssl_server(lambda ctx: None, mute_below_tls13=True) as served:
        run = run_suite(_target(served, tmp_path, timeout=1), tmp_path, extra=("-k", TLS_CHECKS))
    assert _verdicts(run) == {
        "TLS-VER-01": "inconclusive", "TLS-VER-02": "inconclusive", "TLS-VER-03": "pass",
        "TLS-SUITE-01": "inconclusive", "TLS-SUITE-02": "inconclusive", "TLS-COMP-01": "inconclusive",
        "TLS-RENEG-01": "inconclusive"}, run.describe()
    reason = next(c.reason for c in run.cases if c.requirement == "TLS-SUITE-02")
    assert "TLS 1.2" in reason and "timed out" in reason, reason


def test_an_expired_certificate_does_not_pass_the_expiry_warning(tmp_path: Path) -> None:
    expired = issue("localhost", dns=("localhost",), key=rsa.generate_private_key(65537, 2048),
                    start=dt.datetime.now(dt.UTC) - dt.timedelta(days=2161 + 90), days=90)
    with openssl_server(lambda ctx: None, leaf=expired) as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "within_validity or expiring_soon"))
    assert _verdicts(run) == {"CERT-EXPIRY-01": "fail", "CERT-EXPIRY-02": "skipped"}, run.describe()
    skipped = next(c for c in run.cases if c.requirement == "CERT-EXPIRY-02")
    assert "CERT-EXPIRY-01" in skipped.reason, skipped.reason
