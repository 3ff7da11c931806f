"""The lab's keys: the zone signing key and a lab CA for the MX certificates, kept in ``[outbound] lab_dir``.

A sender validates the suite's zone with the trust anchor written beside the key (``zone.ds``), and may
trust the lab CA (``ca.pem``) for PKIX; both are made once, so an operator configures the resolver
before the run. Certificates for the MX hosts are issued per run (expired, wrong-name, self-signed
ones included), with cryptography, because the postures are the lab's own and need no outside CA.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import dns.dnssec
import dns.rdtypes.ANY.DNSKEY
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dns.rdtypes.dnskeybase import Flag

TTL = 300
ZONE_KEY, ANCHOR, CA_CERT, CA_KEY = "zone.key", "zone.ds", "ca.pem", "ca.key"


@dataclass(frozen=True)
class Issued:
    chain_pem: bytes
    key_pem: bytes
    leaf_der: bytes


@dataclass(frozen=True)
class LabPki:
    zone_key: ec.EllipticCurvePrivateKey
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate

    @classmethod
    def load_or_create(cls, directory: Path | None, domain: str) -> LabPki:
        """The lab's keys from ``directory`` (made there on first use, with the trust anchor files)."""
        if directory is not None and (directory / ZONE_KEY).is_file():
            zone_key = _load_key(directory / ZONE_KEY)
            ca_key = _load_key(directory / CA_KEY)
            ca = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
            return cls(zone_key, ca_key, ca)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        # the lab's domain in the name: a sender trusting several labs' CAs (one file, as OpenSSL reads it)
        # must find this lab's CA by name, not try another lab's and fail its signature
        ca = _certificate(f"mailconform outbound lab CA for {domain}", ca_key, ca_key, None, ca=True)
        pki = cls(ec.generate_private_key(ec.SECP256R1()), ca_key, ca)
        if directory is not None:
            pki.write(directory, domain)
        return pki

    def write(self, directory: Path, domain: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, key in ((ZONE_KEY, self.zone_key), (CA_KEY, self.ca_key)):
            _write_private(directory / name, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (directory / CA_CERT).write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        (directory / ANCHOR).write_text(self.trust_anchor(domain), encoding="ascii")

    @property
    def dnskey(self) -> dns.rdtypes.ANY.DNSKEY.DNSKEY:
        return dns.dnssec.make_dnskey(self.zone_key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256,
                                      flags=Flag.ZONE | Flag.SEP)

    def trust_anchor(self, domain: str) -> str:
        """The zone's DS as a zone-file line: what the sender's validating resolver trusts."""
        ds = dns.dnssec.make_ds(domain + ".", self.dnskey, "SHA256")
        return f"{domain}. {TTL} IN DS {ds.to_text()}\n"

    def issue(self, host: str, *, expired: bool = False, self_signed: bool = False,
              also: tuple[str, ...] = ()) -> Issued:
        """A leaf for ``host`` (and the names ``also``) from the lab CA (or signed by itself), valid now
        unless ``expired``."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=400 if expired else 1)
        issuer = None if self_signed else self.ca
        leaf = _certificate(host, key, key if self_signed else self.ca_key, issuer, start=start,
                            dns_names=(host, *also))
        chain = [leaf] if self_signed else [leaf, self.ca]
        return Issued(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain),
                      key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()),
                      leaf.public_bytes(serialization.Encoding.DER))


def _certificate(cn: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
                 issuer: x509.Certificate | None, *, ca: bool = False, start: dt.datetime | None = None,
                 dns_names: tuple[str, ...] = ()) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = start or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + dt.timedelta(days=3650 if ca else 90))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
                                        critical=False)
    return builder.sign(signer, hashes.SHA256())


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{path}: expected an EC P-256 key")
    return key


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
