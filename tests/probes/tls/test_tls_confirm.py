"""Which findings a completed handshake confirmed: versions, and one suite per weakness class."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from conformance.probes.tls.confirm import Confirmation, handshakers, representatives, settle
from conformance.probes.tls.suites import CipherSuite, by_name
from conformance.probes.tls.wire import TlsVersion
from conformance.probes.wire.outcome import tls_error_words

pytestmark = pytest.mark.unit

V = TlsVersion
GCM = by_name("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
ECDHE_CBC = by_name("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA")
RSA_CBC = by_name("TLS_RSA_WITH_AES_128_CBC_SHA")
RSA_3DES = by_name("TLS_RSA_WITH_3DES_EDE_CBC_SHA")
RC4 = by_name("TLS_RSA_WITH_RC4_128_SHA")


def settled(answered: dict[TlsVersion, tuple[CipherSuite, ...]], dies: frozenset[CipherSuite] = frozenset(),
            ) -> tuple[object, list[tuple[TlsVersion, CipherSuite]]]:
    asked: list[tuple[TlsVersion, CipherSuite]] = []

    async def check(version: TlsVersion, chosen: CipherSuite) -> Confirmation:
        asked.append((version, chosen))
        if chosen in dies:
            return Confirmation(version, chosen, False, "handshake fails: the server sent the TLS alert 'illegal parameter'")
        return Confirmation(version, chosen, True, "test")

    return asyncio.run(settle(answered, check)), asked


def test_a_class_whose_representative_dies_is_unsettled_and_the_rest_stands() -> None:
    result, asked = settled({V.TLS1_2: (GCM, ECDHE_CBC, RSA_CBC, RSA_3DES)}, dies=frozenset({RSA_3DES}))
    assert result.suites == {V.TLS1_2: (GCM, ECDHE_CBC, RSA_CBC)}  # type: ignore[attr-defined]
    why = result.unsettled_suites[V.TLS1_2]  # type: ignore[attr-defined]
    assert why.startswith("1 suite(s) not confirmed") and "TLS_RSA_WITH_3DES_EDE_CBC_SHA" in why
    assert "the server sent the TLS alert 'illegal parameter'" in why
    # the version, then one suite per class, fewest weaknesses first: 3DES is only in the suite that died
    assert asked == [(V.TLS1_2, GCM), (V.TLS1_2, ECDHE_CBC), (V.TLS1_2, RSA_CBC), (V.TLS1_2, RSA_3DES)]


def test_a_version_whose_handshake_dies_is_unsettled() -> None:
    result, _ = settled({V.TLS1_0: (RSA_CBC,), V.TLS1_2: (GCM,)}, dies=frozenset({RSA_CBC}))
    assert set(result.suites) == {V.TLS1_2}  # type: ignore[attr-defined]
    assert result.unsettled_versions[V.TLS1_0].endswith("handshake fails: the server sent the TLS alert 'illegal parameter'")  # type: ignore[attr-defined]


def test_one_representative_per_weakness_not_per_suite() -> None:
    found = {V.TLS1_2: (GCM, ECDHE_CBC, RSA_CBC, RSA_3DES, RC4), V.TLS1_0: (ECDHE_CBC, RSA_CBC, RSA_3DES, RC4)}
    chosen = representatives(found, [GCM])
    covered = set().union(*(s.weaknesses for _, s in chosen))
    assert covered == set().union(*(s.weaknesses for s in found[V.TLS1_2]))
    assert len(chosen) <= 3 and all(v == V.TLS1_2 for v, _ in chosen)


def test_each_finding_goes_to_a_stack_that_speaks_it() -> None:
    assert len(handshakers(V.TLS1_2, GCM)) == 2  # OpenSSL, then tlslite-ng where OpenSSL hits its own limit
    assert len(handshakers(V.TLS1_3, by_name("TLS_AES_128_GCM_SHA256"))) == 2
    assert len(handshakers(V.SSL3, RC4)) == 1  # tlslite-ng only
    assert handshakers(V.TLS1_0, GCM) == []  # no stack runs an AEAD suite below TLS 1.2
    assert handshakers(V.TLS1_2, by_name("TLS_RSA_WITH_IDEA_CBC_SHA")) == []


def test_openssl_reasons_come_out_in_words() -> None:
    def error(reason: str) -> ssl.SSLError:
        exc = ssl.SSLError(1, reason)
        exc.reason = reason  # type: ignore[misc]
        return exc

    assert tls_error_words(error("SSLV3_ALERT_HANDSHAKE_FAILURE")) == "the server sent the TLS alert 'handshake failure'"
    assert tls_error_words(error("TLSV1_ALERT_INTERNAL_ERROR")) == "the server sent the TLS alert 'internal error'"
    assert tls_error_words(error("TLSV1_UNRECOGNIZED_NAME")) == "the server sent the TLS alert 'unrecognized name'"
    assert tls_error_words(error("WRONG_VERSION_NUMBER")) == "the server's answer is not TLS (wrong version number)"
