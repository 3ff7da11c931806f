"""The raw TLS scanner against real TLS stacks on loopback: OpenSSL (Python's ssl) and tlslite-ng.

Expected suites are exact. For OpenSSL the oracle is the server context's own cipher list, narrowed
to what an RSA certificate without DH parameters can serve; for tlslite-ng they are spelled out.
"""

from __future__ import annotations

import ssl

import pytest
from hostile import run
from tls_servers import Served, openssl_server, padded_leaf, tlslite_server

from conformance.probes.tls.scan import ScanSettings, TlsScan, addresses_of, scan_all, scan_endpoint
from conformance.probes.tls.suites import REGISTRY, by_name
from conformance.probes.tls.wire import NamedGroup, TlsVersion
from conformance.probes.wire.outcome import Outcome
from conformance.target import Endpoint, Service

pytestmark = pytest.mark.reference

V = TlsVersion
SETTINGS = ScanSettings(timeout=5.0, max_connections_per_host=4)


def scan(served: Served) -> TlsScan:
    attempt = run(scan_endpoint(served.endpoint, SETTINGS))
    assert attempt.ok, attempt.reason
    assert attempt.result is not None
    assert attempt.result.connections == served.accepted  # our count is the server's count
    return attempt.result


def names(result: TlsScan, version: TlsVersion) -> set[str]:
    return {s.name for s in result.suites.get(version, ())}


def servable(ctx: ssl.SSLContext, version: TlsVersion) -> set[str]:
    """What an RSA-certificate OpenSSL server with this context can negotiate at ``version``."""
    usable_kex = {("kx-ecdhe", "auth-rsa"), ("kx-rsa", "auth-rsa"), ("kx-ecdhe", "auth-null"), ("kx-any", "auth-any")}
    protocols = {V.TLS1_3: {"TLSv1.3"}, V.TLS1_2: {"SSLv3", "TLSv1.0", "TLSv1.2"}}.get(version, {"SSLv3", "TLSv1.0"})
    return {REGISTRY[c["id"] & 0xFFFF].name for c in ctx.get_ciphers()
            if (c["kea"], c["auth"]) in usable_kex and c["protocol"] in protocols}


def tls12_aead(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE+AESGCM")


def test_tls12_only_aead_server() -> None:
    with openssl_server(tls12_aead) as served:
        result = scan(served)
    assert result.accepted_versions == {V.TLS1_2}
    assert names(result, V.TLS1_2) == {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}
    assert result.server_preference is True  # Python's server contexts set OP_CIPHER_SERVER_PREFERENCE
    assert result.compression is False and result.secure_renegotiation is True
    assert result.fallback_scsv is None  # one version: nothing to fall back to
    assert {NamedGroup.X25519, NamedGroup.SECP256R1} <= result.groups
    assert result.inconclusive == ()
    assert result.connections < 40  # vs 358 registry suites x 5 versions for one-hello-per-suite


def test_client_order_server_is_told_apart() -> None:
    def follow_client(ctx: ssl.SSLContext) -> None:
        tls12_aead(ctx)
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE

    with openssl_server(follow_client) as served:
        assert scan(served).server_preference is False


def test_legacy_openssl_server_with_tls10_and_seclevel0() -> None:
    holder: list[ssl.SSLContext] = []

    def legacy(ctx: ssl.SSLContext) -> None:
        ctx.minimum_version = ssl.TLSVersion.TLSv1  # deprecated on purpose: it is the server under test
        ctx.set_ciphers("@SECLEVEL=0:ALL")
        holder.append(ctx)

    with pytest.warns(DeprecationWarning), openssl_server(legacy) as served:
        result = scan(served)
    ctx = holder[0]
    assert result.accepted_versions == {V.TLS1_0, V.TLS1_1, V.TLS1_2, V.TLS1_3}
    for version in (V.TLS1_0, V.TLS1_1, V.TLS1_2, V.TLS1_3):
        assert names(result, version) == servable(ctx, version), version
    assert "TLS_ECDH_anon_WITH_AES_128_CBC_SHA" in names(result, V.TLS1_0)  # anonymous: graded insecure
    assert result.fallback_scsv is True
    assert result.inconclusive == ()
    pairs = sum(len(servable(ctx, v)) for v in result.accepted_versions)
    # One connection per accepted suite plus a bounded overhead, not one per suite offered (358 x 5).
    print(f"{result.connections} connections for {pairs} accepted suite/version pairs")
    assert result.connections <= pairs + 45  # +3 (issue 16): Heartbleed, no-SNI, post-quantum; +1 CCS, +5 ROBOT, +1 tickets
    assert result.ccs_injection is not None and result.ccs_injection.vulnerable is False, result.ccs_injection


def test_tls13_only_server() -> None:
    def tls13(ctx: ssl.SSLContext) -> None:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3

    with openssl_server(tls13) as served:
        result = scan(served)
    assert result.accepted_versions == {V.TLS1_3}
    assert names(result, V.TLS1_3) == {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                       "TLS_CHACHA20_POLY1305_SHA256"}
    assert {NamedGroup.X25519, NamedGroup.SECP256R1, NamedGroup.SECP384R1} <= result.groups
    assert result.secure_renegotiation is None and result.compression is None
    assert result.post_quantum == "x25519 chosen although X25519MLKEM768 was offered first with a key share"


TLSLITE_SSL3 = {
    "TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
}
TLSLITE_TLS12 = TLSLITE_SSL3 | {
    "TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA256", "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
}


def assert_tlslite_legacy(result: TlsScan) -> None:
    assert result.accepted_versions == {V.SSL3, V.TLS1_0, V.TLS1_1, V.TLS1_2}
    for version in (V.SSL3, V.TLS1_0, V.TLS1_1):
        assert names(result, version) == TLSLITE_SSL3, version
    assert names(result, V.TLS1_2) == TLSLITE_TLS12
    assert by_name("TLS_RSA_WITH_RC4_128_SHA") in result.suites[V.SSL3]
    assert result.dhe_bits is not None and result.dhe_bits >= 1024
    assert result.inconclusive == ()


def test_tlslite_legacy_server_ssl3_rc4_3des_for_real() -> None:
    with tlslite_server() as served:
        result = scan(served)
    assert_tlslite_legacy(result)
    assert result.fallback_scsv is True
    pairs = len(TLSLITE_TLS12) + 3 * len(TLSLITE_SSL3)
    print(f"{result.connections} connections for {pairs} accepted suite/version pairs")
    assert result.connections <= pairs + 45  # +3 (issue 16): Heartbleed, no-SNI, post-quantum; +1 CCS, +5 ROBOT, +1 tickets
    assert result.ccs_injection is not None and result.ccs_injection.vulnerable is False, result.ccs_injection


def test_tlslite_behind_smtp_starttls() -> None:
    with tlslite_server(smtp=True) as served:
        attempt = run(scan_endpoint(served.endpoint, SETTINGS))
    assert attempt.ok, attempt.reason
    assert attempt.result is not None
    assert_tlslite_legacy(attempt.result)
    assert any("STARTTLS" in line for line in attempt.transcript)


def test_tlslite_behind_imap_starttls() -> None:
    with tlslite_server(imap=True) as served:
        attempt = run(scan_endpoint(served.endpoint, SETTINGS))
    assert attempt.ok, attempt.reason
    assert attempt.result is not None
    assert_tlslite_legacy(attempt.result)
    assert any("STARTTLS" in line for line in attempt.transcript)


def test_openssl_behind_smtp_starttls_matches_implicit_tls() -> None:
    with openssl_server(tls12_aead) as implicit, openssl_server(tls12_aead, smtp=True) as starttls:
        direct, upgraded = scan(implicit), scan(starttls)
    assert upgraded.accepted_versions == direct.accepted_versions
    assert upgraded.suites == direct.suites
    assert upgraded.groups == direct.groups


def test_421_busy_server_is_retried_not_read_as_unsupported() -> None:
    # Two 421s in the whole scan: fewer than a probe's attempts, wherever they land.
    with tlslite_server(smtp=True, busy=lambda n: n in (2, 9)) as served:
        attempt = run(scan_endpoint(served.endpoint, SETTINGS))
    assert attempt.ok, attempt.reason
    assert attempt.result is not None
    assert_tlslite_legacy(attempt.result)


def test_always_busy_server_is_inconclusive_with_its_reason() -> None:
    with tlslite_server(smtp=True, busy=lambda n: True) as served:
        attempt = run(scan_endpoint(served.endpoint, SETTINGS))
    assert attempt.outcome is Outcome.INCONCLUSIVE
    assert "421" in attempt.reason


def test_addresses_of_pinned_and_literal_hosts() -> None:
    pinned = Endpoint(Service.MX, "n1", "mx.example.test", 25, "127.0.0.1")
    literal = Endpoint(Service.MX, "n1", "127.0.0.1", 25)
    assert run(addresses_of(pinned, 2.0)) == ["127.0.0.1"]
    assert run(addresses_of(literal, 2.0)) == ["127.0.0.1"]


def test_scan_all_keys_by_endpoint() -> None:
    with openssl_server(tls12_aead) as first, tlslite_server() as second:
        node2 = Endpoint(second.endpoint.service, "node2", "localhost", second.endpoint.port, "127.0.0.1")
        results = run(scan_all([first.endpoint, node2], SETTINGS))
    assert set(results) == {"submissions@node1", "submissions@node2"}
    assert all(a.outcome is Outcome.COMPLETED for a in results.values())
    legacy = results["submissions@node2"].result
    assert legacy is not None and V.SSL3 in legacy.accepted_versions


def test_a_145_kib_certificate_chain_is_scanned() -> None:
    """Issue 13: the TLS 1.2 scan could not finish on a 145 KB chain (the first flight's Certificate
    message was over our old 128 KiB bound) and OpenSSL's client stops at 100 KiB: tlslite-ng confirms."""
    with openssl_server(lambda ctx: None, leaf=padded_leaf(145)) as served:
        result = scan(served)
    assert result.accepted_versions == {V.TLS1_2, V.TLS1_3}
    assert result.unsettled_versions == {} and result.unsettled_suites == {}
    assert result.inconclusive == ()
