"""A tiny test PKI with cryptography: a root, an intermediate and leaves with chosen defects."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # handshake tests judge at the real now
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass
class Issued:
    cert: x509.Certificate
    key: Key

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        return cert_path, key_path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(cn: str, issuer: Issued | None = None, *, ca: bool = False, dns: tuple[str, ...] = (),
          ips: tuple[str, ...] = (), days: int = 90, start: dt.datetime = NOW - dt.timedelta(days=10),
          hash_alg: hashes.HashAlgorithm | None = None, key: Key | None = None) -> Issued:
    key = key or ec.generate_private_key(ec.SECP256R1())
    signer = issuer.key if issuer else key
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(issuer.cert.subject if issuer else _name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                      key_encipherment=False, data_encipherment=False,
                                                      key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                      encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Issued(builder.sign(signer, hash_alg or hashes.SHA256()), key)


@dataclass
class Pki:
    root: Issued
    intermediate: Issued

    def leaf(self, cn: str = "mx.example.test", **kwargs: object) -> Issued:
        kwargs.setdefault("dns", (cn,))
        return issue(cn, self.intermediate, **kwargs)  # type: ignore[arg-type]

    def chain(self, leaf: Issued) -> tuple[bytes, ...]:
        return (leaf.der, self.intermediate.der)


def make_pki(root_start: dt.datetime = NOW - dt.timedelta(days=365)) -> Pki:
    root = issue("Test Root", ca=True, days=3650, start=root_start)
    return Pki(root, issue("Test Intermediate", root, ca=True, days=1825, start=root_start))


def sha1_leaf(pki: Pki, directory: Path, cn: str = "mx.example.test") -> bytes | None:
    """A leaf signed with SHA-1 by the intermediate, via the openssl CLI: cryptography refuses to
    sign with SHA-1. None when openssl is unavailable."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        return None
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(_name(cn))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
           .sign(key, hashes.SHA256()))
    (directory / "leaf.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    ca_cert, ca_key = pki.intermediate.write(directory, "intermediate")
    subprocess.run(["openssl", "x509", "-req", "-in", str(directory / "leaf.csr"), "-CA", str(ca_cert),
                    "-CAkey", str(ca_key), "-sha1", "-days", "30", "-copy_extensions", "copy",
                    "-outform", "DER", "-out", str(directory / "leaf.der")],
                   check=True, capture_output=True, timeout=30)
    return (directory / "leaf.der").read_bytes()


def server_context(pki: Pki, leaf: Issued, directory: Path) -> ssl.SSLContext:
    """A TLS server context presenting leaf + intermediate."""
    cert, key = leaf.write(directory, "leaf")
    cert.write_bytes(cert.read_bytes() + pki.intermediate.cert.public_bytes(serialization.Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
