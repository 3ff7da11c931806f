"""Post-quantum key exchange seen by the raw scan on an independent stack: tlslite-ng 0.8.2 (with kyber-py)
completes X25519MLKEM768 as a TLS 1.3 server, so the scan's report stands against a server nobody here
crafted (tests/probes/tls/test_tls_scan_hostile.py has the crafted one)."""

from __future__ import annotations

import pytest
from hostile import run
from tls_servers import tlslite_server

from conformance.probes.tls.scan import ScanSettings, scan_endpoint
from conformance.probes.tls.wire import TlsVersion

pytestmark = pytest.mark.reference

pytest.importorskip("kyber_py", reason="tlslite-ng offers ML-KEM groups only with kyber-py (the test extra)")

TLS13_ONLY = {"min_version": (3, 4), "max_version": (3, 4), "cipher_names": ("aes128gcm",)}


@pytest.mark.parametrize(("groups", "report"), [
    (("x25519mlkem768", "x25519"), "X25519MLKEM768 (hybrid ML-KEM) chosen"),
    (("x25519", "secp256r1"), "x25519 chosen although X25519MLKEM768 was offered first with a key share"),
], ids=["hybrid", "classical"])
def test_scan_reports_what_tlslite_chose(groups: tuple[str, ...], report: str) -> None:
    with tlslite_server(**TLS13_ONLY, groups=groups) as served:
        attempt = run(scan_endpoint(served.endpoint, ScanSettings(timeout=5.0)))
    assert attempt.result is not None, attempt.reason
    assert attempt.result.accepted_versions == {TlsVersion.TLS1_3}, attempt.result
    assert attempt.result.post_quantum == report
