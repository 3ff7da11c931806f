"""Chain analysis: path to an anchor, RFC 9525 names, expiry, key and signature-hash evidence."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from certgen import NOW, Issued, Pki, issue, make_pki, sha1_leaf
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conformance.probes.tls.certs import ChainError, analyze_chain, match_name

pytestmark = pytest.mark.unit


def analyze(chain: tuple[bytes, ...], anchor: Path, *hostnames: str, now: dt.datetime = NOW):  # type: ignore[no-untyped-def]
    return analyze_chain(chain, hostnames=hostnames or ("mx.example.test",), trust_anchor_paths=[anchor],
                         use_system_store=False, now=now)


def test_good_chain(pki: Pki, anchor: Path) -> None:
    report = analyze(pki.chain(pki.leaf()), anchor)
    assert report.chains_to_trust, report.trust_reason
    assert report.names_match
    assert not report.expired and report.days_to_expiry == 80
    assert report.key_type == "EC secp256r1" and report.key_bits == 256
    assert report.signature_hashes == ("sha256", "sha256")
    assert report.weak_signatures == ()
    assert report.san_dns == ("mx.example.test",)


def test_unknown_root_does_not_chain(anchor: Path) -> None:
    other = make_pki()
    report = analyze(other.chain(other.leaf()), anchor)
    assert not report.chains_to_trust
    assert "no valid path" in report.trust_reason
    assert report.names_match  # a trust failure is not a name failure


def test_missing_intermediate_does_not_chain(pki: Pki, anchor: Path) -> None:
    report = analyze((pki.leaf().der,), anchor)
    assert not report.chains_to_trust


def test_self_signed_leaf(anchor: Path) -> None:
    leaf = issue("mx.example.test", dns=("mx.example.test",))
    report = analyze((leaf.der,), anchor)
    assert not report.chains_to_trust
    assert report.leaf.self_signed


def test_expired_leaf_is_expired_but_still_chains(pki: Pki, anchor: Path) -> None:
    leaf = pki.leaf(start=NOW - dt.timedelta(days=100), days=90)
    report = analyze(pki.chain(leaf), anchor)
    assert report.expired and report.days_to_expiry < 0
    assert report.chains_to_trust, report.trust_reason


def test_not_yet_valid(pki: Pki, anchor: Path) -> None:
    report = analyze(pki.chain(pki.leaf(start=NOW + dt.timedelta(days=2))), anchor)
    assert report.not_yet_valid and not report.expired


def test_sha1_signed_leaf_is_flagged(pki: Pki, anchor: Path, tmp_path: Path) -> None:
    der = sha1_leaf(pki, tmp_path)
    if der is None:
        pytest.skip("openssl CLI not available to sign with SHA-1")
    report = analyze((der, pki.intermediate.der), anchor, now=dt.datetime.now(dt.UTC))
    assert report.signature_hashes[0] == "sha1"
    assert report.weak_signatures == ("CN=mx.example.test: sha1",)
    assert not report.chains_to_trust  # the verifier's profile rejects SHA-1 signatures too


def test_rsa_key_size(pki: Pki, anchor: Path) -> None:
    key = rsa.generate_private_key(65537, 2048)
    report = analyze(pki.chain(pki.leaf(key=key)), anchor)
    assert (report.key_type, report.key_bits) == ("RSA", 2048)


def test_each_hostname_judged(pki: Pki, anchor: Path) -> None:
    report = analyze(pki.chain(pki.leaf(dns=("mx1.example.test",))), anchor, "mx1.example.test",
                     "mx2.example.test")
    assert [n.matched for n in report.names] == [True, False]
    assert not report.names_match
    assert "mx2.example.test not in SAN" in report.names[1].reason


def test_no_cn_fallback(pki: Pki, anchor: Path) -> None:
    report = analyze(pki.chain(pki.leaf(dns=())), anchor)
    assert not report.names_match
    assert "CN is not used" in report.names[0].reason


@pytest.mark.parametrize(("pattern", "host", "ok"), [
    ("*.example.test", "mx.example.test", True),
    ("*.example.test", "a.mx.example.test", False),
    ("*.example.test", "example.test", False),
    ("m*.example.test", "mx.example.test", False),
    ("*.test", "example.test", False),
    ("MX.Example.Test.", "mx.example.test", True),
    ("mx.*.test", "mx.example.test", False),
])
def test_wildcards_rfc9525(pattern: str, host: str, ok: bool) -> None:
    assert match_name(host, [pattern]).matched is ok


def test_ip_address_needs_ip_san() -> None:
    assert match_name("127.0.0.1", ["127.0.0.1"], []).matched is False
    assert match_name("127.0.0.1", [], ["127.0.0.1"]).matched is True


def test_empty_or_garbage_chain() -> None:
    with pytest.raises(ChainError):
        analyze_chain((), hostnames=["x"], use_system_store=False)
    with pytest.raises(ChainError, match="does not parse"):
        analyze_chain((b"not der",), hostnames=["x"], use_system_store=False)


def test_system_store_loads() -> None:
    other = make_pki()
    report = analyze_chain(other.chain(other.leaf()), hostnames=["mx.example.test"])
    assert not report.chains_to_trust  # a private root is in no system store


BARE_OID = re.compile(r"\b[0-2](?:\.\d+){2,}\b")


def _ca_without_key_usage(root: Issued) -> Issued:
    """An intermediate CA that omits keyUsage (RFC 5280 4.2.1.3 requires it): certgen always adds it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intermediate without keyUsage")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(root.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(days=10)).not_valid_after(NOW + dt.timedelta(days=100))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
                              critical=False))
    return Issued(builder.sign(root.key, hashes.SHA256()), key)


def test_certificate_problems_are_told_in_words_not_oids(pki: Pki, anchor: Path) -> None:
    """Issue 13: 'invalid extension: 2.5.29.15: Certificate is missing required extension' was the reason."""
    intermediate = _ca_without_key_usage(pki.root)
    leaf = issue("mx.example.test", intermediate, dns=("mx.example.test",))
    report = analyze((leaf.der, intermediate.der), anchor)
    assert not report.chains_to_trust
    assert report.trust_reason.endswith("a certificate in the chain lacks the keyUsage extension"), report.trust_reason
    assert not BARE_OID.search(report.trust_reason)


def test_an_unknown_issuer_is_told_in_words(anchor: Path) -> None:
    other = make_pki()
    reason = analyze((other.leaf().der,), anchor).trust_reason
    assert "issued by a trust anchor" in reason and "candidates" not in reason, reason
