"""The IANA cipher-suite registry and the grade of each suite."""

from __future__ import annotations

import pytest

from conformance.probes.tls.suites import (
    LEGACY_SUITES,
    REGISTRY,
    TLS13_SUITES,
    Grade,
    Weakness,
    by_name,
    suite,
)

pytestmark = pytest.mark.unit

W = Weakness


def test_registry_covers_the_iana_table() -> None:
    assert len(REGISTRY) > 300
    assert all(code == entry.code for code, entry in REGISTRY.items())
    assert len({s.name for s in REGISTRY.values()}) == len(REGISTRY)
    assert {s.code for s in TLS13_SUITES} >= {0x1301, 0x1302, 0x1303, 0x1304, 0x1305}
    assert not {s.code for s in TLS13_SUITES} & {s.code for s in LEGACY_SUITES}


def test_signalling_values_are_not_suites() -> None:
    assert 0x00FF not in REGISTRY and 0x5600 not in REGISTRY


def test_unknown_code_point_is_named_not_raised() -> None:
    assert suite(0x2A2A).name == "unknown(0x2a2a)"
    assert suite(0x2A2A).grade is Grade.INSECURE  # nothing known, nothing vouched for
    assert suite(0x2A2A).weaknesses == {Weakness.UNREGISTERED}


def test_by_name_names_the_bad_value() -> None:
    assert by_name("TLS_RSA_WITH_AES_128_CBC_SHA").code == 0x002F
    with pytest.raises(KeyError, match="TLS_NOPE"):
        by_name("TLS_NOPE")


@pytest.mark.parametrize(("name", "grade", "weaknesses"), [
    ("TLS_NULL_WITH_NULL_NULL", Grade.INSECURE, {W.NULL_CIPHER, W.ANONYMOUS, W.NO_FORWARD_SECRECY}),
    ("TLS_RSA_WITH_NULL_SHA256", Grade.INSECURE, {W.NULL_CIPHER, W.STATIC_RSA, W.NO_FORWARD_SECRECY}),
    ("TLS_DH_anon_WITH_AES_128_GCM_SHA256", Grade.INSECURE, {W.ANONYMOUS}),
    ("TLS_ECDH_anon_WITH_AES_128_CBC_SHA", Grade.INSECURE, {W.ANONYMOUS, W.CBC_SHA1}),
    ("TLS_RSA_EXPORT_WITH_RC4_40_MD5", Grade.INSECURE,
     {W.EXPORT, W.RC4, W.MD5, W.STATIC_RSA, W.NO_FORWARD_SECRECY}),
    ("TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA", Grade.INSECURE, {W.EXPORT, W.DES, W.CBC_SHA1}),
    ("TLS_RSA_WITH_RC4_128_SHA", Grade.INSECURE, {W.RC4, W.STATIC_RSA, W.NO_FORWARD_SECRECY}),
    ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", Grade.INSECURE, {W.RC4}),
    ("TLS_RSA_WITH_DES_CBC_SHA", Grade.INSECURE, {W.DES, W.CBC_SHA1, W.STATIC_RSA, W.NO_FORWARD_SECRECY}),
    ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", Grade.INSECURE, {W.TRIPLE_DES, W.CBC_SHA1}),
    ("TLS_RSA_WITH_IDEA_CBC_SHA", Grade.INSECURE, {W.WEAK_CIPHER, W.CBC_SHA1, W.STATIC_RSA, W.NO_FORWARD_SECRECY}),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", Grade.WEAK, {W.CBC_SHA1}),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", Grade.WEAK, {W.CBC}),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", Grade.WEAK, {W.STATIC_RSA, W.NO_FORWARD_SECRECY}),
    ("TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256", Grade.WEAK, {W.NO_FORWARD_SECRECY}),
    ("TLS_PSK_WITH_AES_128_GCM_SHA256", Grade.WEAK, {W.NO_FORWARD_SECRECY}),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", Grade.STRONG, set()),
    ("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", Grade.STRONG, set()),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", Grade.STRONG, set()),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CCM", Grade.STRONG, set()),
    ("TLS_AES_128_GCM_SHA256", Grade.STRONG, set()),
    ("TLS_CHACHA20_POLY1305_SHA256", Grade.STRONG, set()),
    ("TLS_SHA256_SHA256", Grade.INSECURE, {W.NULL_CIPHER}),
])
def test_grading_table(name: str, grade: Grade, weaknesses: set[Weakness]) -> None:
    entry = by_name(name)
    assert entry.weaknesses == weaknesses
    assert entry.grade is grade


def test_every_registry_entry_grades_without_error() -> None:
    assert {s.grade for s in REGISTRY.values()} == set(Grade)
    assert min(Grade) is Grade.INSECURE  # min() over suites gives the weakest


def test_key_exchange_kinds() -> None:
    assert by_name("TLS_DHE_RSA_WITH_AES_128_CBC_SHA").ephemeral_dh
    assert by_name("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA").ephemeral_ecdh
    assert not by_name("TLS_RSA_WITH_AES_128_CBC_SHA").ephemeral_dh
    assert by_name("TLS_AES_128_GCM_SHA256").kex == ""
