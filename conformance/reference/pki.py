"""The reference gateway's test PKI: one CA, and per node a leaf certificate in the variant a flaw asks for.

Leaves carry RSA keys so that a static-RSA suite can be offered at all (``static_rsa``); the CA is
ECDSA. Keys are generated once per process: RSA generation is the slow part of a gateway start.
"""

from __future__ import annotations

import datetime as dt
import functools
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conformance.reference.flaws import Flaws

# RFC 2409 6.2 (the reference imports no probe, so the scanner's copy in probes/tls/groups.py is not shared)
OAKLEY_GROUP_2 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF", 16)

HOSTS = ("mx1.example.test", "mx2.example.test")


class CertVariant(StrEnum):
    GOOD = "good"
    SELF_SIGNED = "self-signed"
    WRONG_HOST = "wrong-host"
    EXPIRED = "expired"
    EXPIRING = "expiring"
    WEAK_KEY = "weak-key"
    SHA1 = "sha1"


def variant_for(flaws: Flaws) -> CertVariant:
    """The leaf variant a flaw set needs (cert flaws are exclusive: the first one on wins)."""
    for on, variant in ((flaws.untrusted_cert, CertVariant.SELF_SIGNED), (flaws.wrong_hostname, CertVariant.WRONG_HOST),
                        (flaws.expired_cert, CertVariant.EXPIRED), (flaws.expiring_cert, CertVariant.EXPIRING),
                        (flaws.weak_key, CertVariant.WEAK_KEY), (flaws.sha1_cert, CertVariant.SHA1)):
        if on:
            return variant
    return CertVariant.GOOD


@functools.lru_cache(maxsize=4)
def _rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.lru_cache(maxsize=1)
def _ca_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailconform reference"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass(frozen=True)
class Pki:
    """Files written into a directory: the CA certificate (the trust anchor) and one chain+key per variant."""

    directory: Path
    ca_cert: x509.Certificate

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    @classmethod
    def create(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        key = _ca_key()
        ca = (x509.CertificateBuilder().subject_name(_name("mailconform reference test CA"))
              .issuer_name(_name("mailconform reference test CA")).public_key(key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(days=1000)).not_valid_after(now + dt.timedelta(days=3650))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                           crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
              .sign(key, hashes.SHA256()))
        pki = cls(directory, ca)
        pki.ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        return pki

    def leaf(self, variant: CertVariant) -> tuple[Path, Path]:
        """(chain file, key file) for a variant, written on first use."""
        chain_path, key_path = self.directory / f"{variant}.pem", self.directory / f"{variant}.key"
        if chain_path.exists():
            return chain_path, key_path
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        key = _rsa_key(1024 if variant is CertVariant.WEAK_KEY else 2048)
        names = ("mail.wrong.example.net",) if variant is CertVariant.WRONG_HOST else HOSTS
        start, end = now - dt.timedelta(days=10), now + dt.timedelta(days=365)
        if variant is CertVariant.EXPIRED:
            start, end = now - dt.timedelta(days=100), now - dt.timedelta(days=10)
        elif variant is CertVariant.EXPIRING:
            end = now + dt.timedelta(days=5)
        self_signed = variant is CertVariant.SELF_SIGNED
        # the SHA-1 variant is built self-signed, then re-signed by the CA with openssl
        issuer = _name(names[0]) if self_signed or variant is CertVariant.SHA1 else self.ca_cert.subject
        builder = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        if not self_signed and variant is not CertVariant.SHA1:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(_ca_key().public_key()), critical=False)
        if variant is CertVariant.SHA1:  # openssl re-signs a self-signed input, keeping its extensions
            cert = self._resign_sha1(builder.sign(key, hashes.SHA256()))
        else:
            cert = builder.sign(key if self_signed else _ca_key(), hashes.SHA256())
        chain = cert.public_bytes(serialization.Encoding.PEM)
        if not self_signed:
            chain += self.ca_cert.public_bytes(serialization.Encoding.PEM)
        chain_path.write_bytes(chain)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return chain_path, key_path

    def named_leaf(self, name: str) -> tuple[Path, Path]:
        """(chain file, key file) of a good ECDSA leaf for one more host name (the MTA-STS policy host)."""
        chain_path, key_path = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        if chain_path.exists():
            return chain_path, key_path
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(self.ca_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=10)).not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(_ca_key().public_key()),
                               critical=False)
                .sign(_ca_key(), hashes.SHA256()))
        chain_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                               + self.ca_cert.public_bytes(serialization.Encoding.PEM))
        key_path.touch(mode=0o600)
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return chain_path, key_path

    def _resign_sha1(self, cert: x509.Certificate) -> x509.Certificate:
        """The same certificate signed with SHA-1 by the CA, via the openssl CLI: cryptography refuses
        to sign with SHA-1. Raises subprocess.CalledProcessError if openssl fails."""
        ca_key_path = self.directory / "ca.key"
        if not ca_key_path.exists():
            ca_key_path.touch(mode=0o600)
            ca_key_path.write_bytes(_ca_key().private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
        unsigned = self.directory / "sha1-input.pem"
        unsigned.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out = self.directory / "sha1-output.pem"
        subprocess.run(["openssl", "x509", "-in", str(unsigned), "-CA", str(self.ca_path), "-CAkey", str(ca_key_path),
                        "-sha1", "-days", "365", "-out", str(out)],
                       check=True, capture_output=True, timeout=30)
        return x509.load_pem_x509_certificate(out.read_bytes())

    def weak_dh_params(self) -> Path:
        """The 1024-bit RFC 2409 Oakley group 2 (for ``weak_dh_params``): a fixed, widely shared prime."""
        path = self.directory / "oakley2.pem"
        if not path.exists():
            params = dh.DHParameterNumbers(OAKLEY_GROUP_2, 2).parameters()
            path.write_bytes(params.parameter_bytes(serialization.Encoding.PEM, serialization.ParameterFormat.PKCS3))
        return path

    def dh_params(self) -> Path:
        """RFC 7919 ffdhe2048 parameters (for the anonymous DH suites of ``anon_suites``), written on first
        use with the openssl CLI: a named group, so nothing is generated. Raises CalledProcessError."""
        path = self.directory / "ffdhe2048.pem"
        if not path.exists():
            subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
                            "-out", str(path)], check=True, capture_output=True, timeout=30)
        return path
