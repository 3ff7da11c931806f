"""The TLS family's probes gathered as a run gathers them (``probes.tls.family``), and what each costs.

Against Python's ssl (OpenSSL) on loopback: the scan's connections per probe add up to what the server
accepted, the certificate handshakes share the scan's per-host budget, and a curve TLS 1.3 already took
is not asked for again at TLS 1.2 (the scan reports the union).
"""

from __future__ import annotations

import ssl

import pytest
from hostile import run
from tls_servers import openssl_server

from conformance.probes.tls.family import probe_family
from conformance.probes.tls.scan import ScanSettings, scan_endpoint
from conformance.probes.tls.wire import NamedGroup, TlsVersion
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.connect import HostLimiter

pytestmark = pytest.mark.reference

BUDGET = 3
SETTINGS = ScanSettings(timeout=5.0, max_connections_per_host=BUDGET)


def tls12_and_13(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE+AESGCM")


def tls12_only(ctx: ssl.SSLContext) -> None:
    tls12_and_13(ctx)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2


def test_connections_per_probe_add_up_to_what_the_server_accepted() -> None:
    with openssl_server(tls12_and_13) as served:
        attempt = run(scan_endpoint(served.endpoint, SETTINGS))
    assert attempt.result is not None, attempt.reason
    by_probe = attempt.result.connections_by_probe
    assert sum(by_probe.values()) == attempt.result.connections == served.accepted
    assert {"TLS 1.2 support", "TLS 1.2 suites", "TLS 1.3 groups", "Heartbleed", "ROBOT",
            "TLS 1.2 confirmation"} <= by_probe.keys()
    assert by_probe["ROBOT"] == 1  # the server refuses RSA key exchange: the one well-formed block only


def test_tls12_curves_are_not_asked_for_again_after_tls13() -> None:
    with openssl_server(tls12_only) as served:
        only12 = run(scan_endpoint(served.endpoint, SETTINGS)).result
    with openssl_server(tls12_and_13) as served:
        both = run(scan_endpoint(served.endpoint, SETTINGS)).result
    assert only12 is not None and both is not None
    ec = {g for g in only12.groups if g < 256}
    assert {NamedGroup.X25519, NamedGroup.SECP256R1} <= ec
    assert ec <= both.groups  # the union is what it was
    # OpenSSL serves the same curves at both versions: TLS 1.2 has nothing left to find, one refused hello
    assert both.connections_by_probe["TLS 1.2 groups"] == 1
    assert only12.connections_by_probe["TLS 1.2 groups"] == len(ec)  # every curve but the first contact's, + refusal


def test_scan_certificates_and_renegotiation_share_one_budget() -> None:
    limiter = HostLimiter(BUDGET)
    with openssl_server(tls12_and_13, smtp=True) as served:
        family = run(probe_family([served.endpoint], SETTINGS, ProbeConfig(timeout=5.0, limiter=limiter,
                                                                          use_system_store=False)))
    scan = family.scans[served.endpoint.id].result
    certificates = family.certificates[served.endpoint.id]
    assert scan is not None and TlsVersion.TLS1_3 in scan.accepted_versions
    assert certificates.default.ok and certificates.without_sni is not None and certificates.without_sni.ok
    assert certificates.handshakes == 4
    renegotiation = family.renegotiations[served.endpoint.id]
    assert renegotiation.result is not None and renegotiation.result.accepted == 0, renegotiation.reason
    assert limiter.total_opened == scan.connections + certificates.handshakes + 1 == served.accepted
    assert limiter.peak[served.endpoint.connect_host] <= BUDGET


def test_a_part_not_asked_for_is_not_probed() -> None:
    with openssl_server(tls12_and_13) as served:
        family = run(probe_family([served.endpoint], SETTINGS, ProbeConfig(timeout=5.0, limiter=HostLimiter(BUDGET)),
                                  scans=False, renegotiations=False))
    assert family.scans == {} and served.accepted == family.certificates[served.endpoint.id].handshakes == 4


def legacy_between_aead(ctx: ssl.SSLContext) -> None:
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-GCM-SHA384:"
                    "ECDHE-RSA-CHACHA20-POLY1305")


@pytest.mark.parametrize("budget", [3, 5, 8])  # one suite chain, or several ranked against each other
def test_legacy_rank_is_the_same_whatever_the_chains(budget: int) -> None:
    with openssl_server(legacy_between_aead) as served:
        attempt = run(scan_endpoint(served.endpoint, ScanSettings(timeout=5.0, max_connections_per_host=budget)))
    assert attempt.result is not None, attempt.reason
    rank = attempt.result.legacy_rank[TlsVersion.TLS1_2]
    assert rank is not None
    assert [s.name for s in rank[:1]] == ["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]
    # some of the strong suites it outranks (a chain's lowest one stands for those above it in its chain)
    assert rank[1:] and {s.name for s in rank[1:]} <= {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                                                       "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"}
