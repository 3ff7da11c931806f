"""DMARC, TLS-RPT and DKIM key records: tag=value lists parsed into typed results (no network here).

Written here: the three grammars are a few lines each (RFC 7489 §6.4, RFC 8460 §3, RFC 6376 §3.6.1),
and the libraries that parse them (checkdmarc, dkimpy) fetch the records through their own resolvers.
Keys are loaded with ``cryptography``, so a key the RFCs would reject fails to load here too.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

DMARC_POLICIES = ("none", "quarantine", "reject")


class RecordError(ValueError):
    """The record breaks its grammar; the message says where."""


def tag_list(text: str) -> list[tuple[str, str]]:
    """'v=DMARC1; p=reject' -> [('v', 'DMARC1'), ('p', 'reject')]; tag names lower case."""
    tags: list[tuple[str, str]] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise RecordError(f"{part.strip()!r} is not a tag=value pair")
        tags.append((name.strip().lower(), value.strip()))
    return tags


@dataclass(frozen=True)
class Dmarc:
    policy: str
    subdomain_policy: str | None
    rua: tuple[str, ...]           # report URIs as written
    tags: dict[str, str]

    @property
    def rua_domains(self) -> tuple[str, ...]:
        """Domains of the mailto: report addresses, lower case (size suffixes '!10m' removed)."""
        found = []
        for uri in self.rua:
            if uri.lower().startswith("mailto:"):
                address = uri[7:].split("!")[0]
                found.append(address.rpartition("@")[2].rstrip(".").lower())
        return tuple(found)


def parse_dmarc(text: str) -> Dmarc:
    """RFC 7489 §6.3/§6.4: 'v=DMARC1' is the first tag, 'p' is required. Raises RecordError."""
    tags = tag_list(text)
    if not tags or tags[0] != ("v", "DMARC1"):
        raise RecordError(f"the first tag must be v=DMARC1: {text!r}")
    values = dict(tags)
    policy = values.get("p")
    if policy is None:
        raise RecordError(f"no p= tag (the policy is required): {text!r}")
    for key in ("p", "sp"):
        if key in values and values[key].lower() not in DMARC_POLICIES:
            raise RecordError(f"{key}={values[key]!r} is not one of {', '.join(DMARC_POLICIES)}")
    rua = tuple(u.strip() for u in values.get("rua", "").split(",") if u.strip())
    return Dmarc(policy.lower(), values.get("sp", "").lower() or None, rua, values)


def external_destination(policy_domain: str, destination: str) -> bool:
    """RFC 7489 §7.1: reports to another domain need its consent. Without the Public Suffix List the
    organisational domain is approximated by suffix: a destination inside the policy domain (or the
    reverse) counts as the same organisation."""
    a, b = policy_domain.lower().rstrip("."), destination.lower().rstrip(".")
    return not (a == b or a.endswith("." + b) or b.endswith("." + a))


def authorisation_name(policy_domain: str, destination: str) -> str:
    return f"{policy_domain.rstrip('.')}._report._dmarc.{destination}"


@dataclass(frozen=True)
class TlsRpt:
    rua: tuple[str, ...]


def parse_tlsrpt(text: str) -> TlsRpt:
    """RFC 8460 §3: 'v=TLSRPTv1' first, then rua= with mailto: or https: URIs. Raises RecordError."""
    tags = tag_list(text)
    if not tags or tags[0] != ("v", "TLSRPTv1"):
        raise RecordError(f"the first tag must be v=TLSRPTv1: {text!r}")
    rua = tuple(u.strip() for u in dict(tags).get("rua", "").split(",") if u.strip())
    if not rua:
        raise RecordError(f"no rua= report destination: {text!r}")
    bad = [u for u in rua if not u.lower().startswith(("mailto:", "https:"))]
    if bad:
        raise RecordError(f"rua must be mailto: or https: URIs, not {', '.join(bad)}")
    return TlsRpt(rua)


@dataclass(frozen=True)
class DkimKey:
    key_type: str                 # 'rsa' or 'ed25519'
    bits: int                     # RSA modulus size; 256 for Ed25519
    testing: bool                 # t=y: receivers treat failures as unsigned mail
    revoked: bool                 # p= empty (RFC 6376 §3.6.1)

    def describe(self) -> str:
        what = "revoked (empty p=)" if self.revoked else f"{self.key_type} {self.bits} bit"
        return what + (", t=y (testing)" if self.testing else "")


def parse_dkim_key(text: str) -> DkimKey:
    """A DKIM key record (RFC 6376 §3.6.1, RFC 8463 §4). Raises RecordError for a key that cannot be used."""
    tags = tag_list(text)
    values = dict(tags)
    if "v" in values and tags[0] != ("v", "DKIM1"):
        raise RecordError(f"v= must be the first tag and be DKIM1: {text!r}")
    if "p" not in values:
        raise RecordError("no p= tag (the public key)")
    key_type = values.get("k", "rsa").lower()
    testing = "y" in [f.strip().lower() for f in values.get("t", "").split(":")]
    data = "".join(values["p"].split())
    if not data:
        return DkimKey(key_type, 0, testing, revoked=True)
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error:
        raise RecordError("p= is not valid base64") from None
    return DkimKey(key_type, _key_bits(key_type, raw), testing, revoked=False)


def _key_bits(key_type: str, raw: bytes) -> int:
    if key_type == "ed25519":
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise RecordError(f"p= is not a 32-byte Ed25519 key ({len(raw)} bytes)") from None
        return 256
    if key_type != "rsa":
        raise RecordError(f"k={key_type}: unknown key type (rsa or ed25519)")
    try:
        key = serialization.load_der_public_key(raw)
    except ValueError:
        raise RecordError("p= is not a DER RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise RecordError(f"k=rsa but p= holds a {type(key).__name__}")
    return key.key_size
