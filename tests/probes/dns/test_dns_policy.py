"""DMARC, TLS-RPT and DKIM key records parsed (no network)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from conformance.probes.dns.policy import (
    RecordError,
    authorisation_name,
    external_destination,
    parse_dkim_key,
    parse_dmarc,
    parse_tlsrpt,
)

pytestmark = pytest.mark.unit


def test_dmarc_fields_and_report_domains() -> None:
    dmarc = parse_dmarc("v=DMARC1; p=Reject; sp=none; rua=mailto:a@Example.test!10m, mailto:b@rep.example.net")
    assert (dmarc.policy, dmarc.subdomain_policy) == ("reject", "none")
    assert dmarc.rua_domains == ("example.test", "rep.example.net")


@pytest.mark.parametrize("text, error", [("p=reject; v=DMARC1", "first tag"), ("v=DMARC1; rua=mailto:a@b", "no p="),
                                         ("v=DMARC1; p=block", "not one of"), ("v=DMARC1; p", "tag=value")])
def test_dmarc_errors(text: str, error: str) -> None:
    with pytest.raises(RecordError, match=error):
        parse_dmarc(text)


def test_external_destinations_by_suffix() -> None:
    assert not external_destination("example.test", "example.test")
    assert not external_destination("mail.example.test", "example.test")
    assert external_destination("example.test", "reports.example.net")
    assert authorisation_name("example.test.", "rep.net") == "example.test._report._dmarc.rep.net"


def test_tlsrpt() -> None:
    assert parse_tlsrpt("v=TLSRPTv1; rua=mailto:t@example.test,https://r.example.test/x").rua[1].startswith("https:")
    for bad in ("v=TLSRPTv1;", "rua=mailto:a@b; v=TLSRPTv1", "v=TLSRPTv1; rua=ftp://x"):
        with pytest.raises(RecordError):
            parse_tlsrpt(bad)


def _rsa(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    return base64.b64encode(key.public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def test_dkim_keys() -> None:
    assert parse_dkim_key(f"v=DKIM1; k=rsa; t=y:s; p={_rsa(1024)}").describe() == "rsa 1024 bit, t=y (testing)"
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                         serialization.PublicFormat.Raw)
    assert parse_dkim_key(f"k=ed25519; p={base64.b64encode(raw).decode()}").bits == 256
    assert parse_dkim_key("v=DKIM1; p=").revoked


@pytest.mark.parametrize("text, error", [("v=DKIM1; k=rsa", "no p="), ("k=rsa; p=!!!", "base64"),
                                         ("k=rsa; p=AAAA", "DER RSA"), ("k=dsa; p=AAAA", "unknown key type"),
                                         ("k=ed25519; p=AAAA", "32-byte"), ("k=rsa; v=DKIM1; p=", "first tag")])
def test_dkim_errors(text: str, error: str) -> None:
    with pytest.raises(RecordError, match=error):
        parse_dkim_key(text)
