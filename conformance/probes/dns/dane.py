"""TLSA records held against the certificates an MX host really serves (RFC 6698 §2.1, RFC 7672 §3.1).

Pure functions over DER bytes: the certificates come from the TLS family's handshakes of the same
endpoints, so judging DANE opens no connection of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

from cryptography import x509
from cryptography.hazmat.primitives import serialization


class Usage(IntEnum):
    PKIX_TA = 0
    PKIX_EE = 1
    DANE_TA = 2
    DANE_EE = 3


UNUSABLE_FOR_SMTP = frozenset({Usage.PKIX_TA, Usage.PKIX_EE})   # RFC 7672 §3.1.3: no PKIX in SMTP


@dataclass(frozen=True)
class Tlsa:
    usage: int
    selector: int      # 0: the whole certificate, 1: its SubjectPublicKeyInfo
    mtype: int         # 0: exact, 1: SHA-256, 2: SHA-512
    data: bytes
    text: str

    def matches(self, der: bytes) -> bool:
        """Whether this record's association data describes the certificate ``der``."""
        content = der if self.selector == 0 else spki(der) if self.selector == 1 else None
        if content is None:
            return False
        digest = {0: lambda b: b, 1: lambda b: hashlib.sha256(b).digest(),
                  2: lambda b: hashlib.sha512(b).digest()}.get(self.mtype)
        return digest is not None and digest(content) == self.data


def tlsa_records(rrset: object) -> list[Tlsa]:
    """The TLSA rdata of an RRset (dnspython's TLSA rdata has usage, selector, mtype, cert)."""
    return [Tlsa(r.usage, r.selector, r.mtype, r.cert, r.to_text()) for r in rrset]  # type: ignore[attr-defined]


def spki(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_sha256(der: bytes) -> str:
    return hashlib.sha256(spki(der)).hexdigest()


def chain_matches(records: list[Tlsa], chain: tuple[bytes, ...]) -> Tlsa | None:
    """The first usable record the served chain satisfies: DANE-EE against the leaf, DANE-TA against
    any certificate the server sends above it (RFC 7672 §3.1.1, §3.1.2)."""
    if not chain:
        return None
    for record in records:
        if record.usage == Usage.DANE_EE and record.matches(chain[0]):
            return record
        if record.usage == Usage.DANE_TA and any(record.matches(der) for der in chain[1:]):
            return record
    return None
