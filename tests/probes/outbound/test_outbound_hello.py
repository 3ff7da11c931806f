"""Reading what a sender offered from the ClientHello bytes it sent (the project's TLS wire parser)."""

from __future__ import annotations

import pytest

from conformance.probes.outbound.hello import OfferedHello
from conformance.probes.tls.wire import ClientHello, DecodeError, Extension, ExtensionType, TlsVersion

pytestmark = pytest.mark.unit

GCM = 0xC02F            # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
RC4 = 0x0005            # TLS_RSA_WITH_RC4_128_SHA
SCSV, GREASE = 0x00FF, 0x1A1A


def sni_extension(host: str) -> tuple[Extension, ...]:
    entry = b"\x00" + len(host).to_bytes(2, "big") + host.encode()
    return (Extension(ExtensionType.SERVER_NAME, len(entry).to_bytes(2, "big") + entry),)


def _versions(*versions: int) -> Extension:
    body = b"".join(v.to_bytes(2, "big") for v in versions)
    return Extension(ExtensionType.SUPPORTED_VERSIONS, bytes([len(body)]) + body)


def test_a_modern_hello_offers_nothing_weak_and_names_the_host() -> None:
    hello = ClientHello(TlsVersion.TLS1_2, (GREASE, 0x1301, GCM, SCSV),
                        (*sni_extension("mx1.a.outbound.test"), _versions(0x2A2A, TlsVersion.TLS1_3, TlsVersion.TLS1_2)))
    offered = OfferedHello.parse(hello.record())
    assert offered.versions == (TlsVersion.TLS1_3, TlsVersion.TLS1_2)
    assert offered.sni == "mx1.a.outbound.test"
    assert offered.legacy_versions == () and offered.broken_suites == ()


def test_legacy_versions_and_broken_suites_are_named() -> None:
    hello = ClientHello(TlsVersion.TLS1_2, (GCM, RC4), (_versions(TlsVersion.TLS1_2, TlsVersion.TLS1_0),))
    offered = OfferedHello.parse(hello.record())
    assert offered.legacy_versions == ("TLS 1.0",)
    assert [s.name for s in offered.broken_suites] == ["TLS_RSA_WITH_RC4_128_SHA"]
    assert offered.sni is None


def test_without_supported_versions_the_legacy_field_is_the_ceiling() -> None:
    offered = OfferedHello.parse(ClientHello(TlsVersion.TLS1_1, (GCM,)).record())
    assert offered.legacy_versions == ("SSL 3.0", "TLS 1.0", "TLS 1.1")


def test_a_hello_split_over_two_records_is_reassembled() -> None:
    record = ClientHello(TlsVersion.TLS1_2, (GCM,), tuple(sni_extension("mx.outbound.test"))).record()
    body = record[5:]
    split = (record[:3] + (20).to_bytes(2, "big") + body[:20]
             + record[:3] + (len(body) - 20).to_bytes(2, "big") + body[20:])
    assert OfferedHello.parse(split).sni == "mx.outbound.test"


@pytest.mark.parametrize("data", [b"EHLO x\r\n", b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", b""])
def test_anything_but_a_client_hello_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        OfferedHello.parse(data)
