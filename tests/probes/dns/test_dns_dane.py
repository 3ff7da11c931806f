"""TLSA records matched against certificate chains (no network)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conformance.probes.dns.dane import Tlsa, Usage, chain_matches, spki, spki_sha256

pytestmark = pytest.mark.unit


def _cert(name: str, key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey, issuer: str) -> bytes:
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(issuer_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


CA_KEY, LEAF_KEY = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
CA = _cert("ca", CA_KEY, CA_KEY, "ca")
LEAF = _cert("mx1.example.test", LEAF_KEY, CA_KEY, "ca")


def tlsa(usage: int, selector: int, mtype: int, der: bytes) -> Tlsa:
    content = der if selector == 0 else spki(der)
    data = {0: content, 1: hashlib.sha256(content).digest(), 2: hashlib.sha512(content).digest()}[mtype]
    return Tlsa(usage, selector, mtype, data, f"{usage} {selector} {mtype} {data.hex()}")


@pytest.mark.parametrize("selector, mtype", [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)])
def test_every_selector_and_matching_type(selector: int, mtype: int) -> None:
    record = tlsa(3, selector, mtype, LEAF)
    assert record.matches(LEAF) and not record.matches(CA)


def test_dane_ee_judges_the_leaf_and_dane_ta_the_rest_of_the_chain() -> None:
    assert chain_matches([tlsa(Usage.DANE_EE, 1, 1, LEAF)], (LEAF, CA)) is not None
    assert chain_matches([tlsa(Usage.DANE_TA, 1, 1, CA)], (LEAF, CA)) is not None
    assert chain_matches([tlsa(Usage.DANE_TA, 1, 1, CA)], (LEAF,)) is None     # the TA must be sent
    assert chain_matches([tlsa(Usage.DANE_EE, 1, 1, CA)], (LEAF, CA)) is None  # EE is the leaf only
    assert chain_matches([tlsa(Usage.DANE_EE, 1, 1, LEAF)], ()) is None


def test_unknown_selector_or_matching_type_matches_nothing() -> None:
    assert not Tlsa(3, 7, 1, b"", "3 7 1").matches(LEAF) and not Tlsa(3, 1, 9, b"", "3 1 9").matches(LEAF)


def test_spki_digest_is_hex_sha256() -> None:
    assert spki_sha256(LEAF) == hashlib.sha256(spki(LEAF)).hexdigest()
