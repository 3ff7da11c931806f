"""Known TLS implementation flaws (issue 16) against servers that have them: no stack installable here
has CCS injection, so its vulnerable server is crafted (tls_servers.ccs_injection_server says why);
tlslite-ng and the reference gateway's OpenSSL are the fixed ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from tls_servers import ccs_injection_server, tlslite_server

from tests.suite_runner import run_suite
from tests.test_checks_tls_legacy import _target, _verdicts

pytestmark = pytest.mark.reference


def test_tlslite_refuses_an_early_change_cipher_spec(tmp_path: Path) -> None:
    with tlslite_server(min_version=(3, 3), max_version=(3, 3), cipher_names=("aes128gcm",),
                        key_exchange_names=("ecdhe_rsa",)) as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "ccs_injection"))
    assert _verdicts(run) == {"TLS-CCS-01": "pass"}, run.describe()


def test_a_ccs_injection_server_fails_without_any_completed_handshake(tmp_path: Path) -> None:
    with ccs_injection_server() as served:
        run = run_suite(_target(served, tmp_path), tmp_path, extra=("-k", "ccs_injection"))
    assert _verdicts(run) == {"TLS-CCS-01": "fail"}, run.describe()
    assert "empty master secret (fatal alert bad_record_mac)" in run.with_verdict("fail")[0].reason
