"""Judge a presented certificate chain: path to a trust anchor, names, expiry, keys, signature hashes.

Trust is judged here, not during the handshake, so "TLS unavailable" and "certificate does not verify"
stay different findings. Path building uses cryptography's verifier (RFC 5280 / CA/B profile); name
matching is our own RFC 9525 implementation so that every hostname gets its own answer and a reason.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import re
import ssl
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509 import verification

WEAK_HASHES = frozenset({"md5", "sha1"})


@dataclass(frozen=True)
class NameMatch:
    hostname: str
    matched: bool
    matched_by: str | None  # the SAN entry that matched
    reason: str


@dataclass(frozen=True)
class CertInfo:
    """One presented certificate, for evidence."""

    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    signature_hash: str | None  # None for Ed25519/Ed448, which hash internally
    key_type: str
    key_bits: int
    self_signed: bool


@dataclass(frozen=True)
class CertReport:
    leaf: CertInfo
    chain: tuple[CertInfo, ...]
    san_dns: tuple[str, ...]
    san_ip: tuple[str, ...]
    chains_to_trust: bool
    trust_reason: str
    names: tuple[NameMatch, ...]
    days_to_expiry: int
    expired: bool
    not_yet_valid: bool
    weak_signatures: tuple[str, ...]  # "subject: sha1" for every presented non-anchor cert signed with MD5/SHA-1

    @property
    def names_match(self) -> bool:
        return bool(self.names) and all(n.matched for n in self.names)

    @property
    def key_type(self) -> str:
        return self.leaf.key_type

    @property
    def key_bits(self) -> int:
        return self.leaf.key_bits

    @property
    def not_after(self) -> dt.datetime:
        return self.leaf.not_after

    @property
    def signature_hashes(self) -> tuple[str | None, ...]:
        return tuple(c.signature_hash for c in self.chain)


class ChainError(ValueError):
    """The presented bytes are not a certificate chain at all."""


def analyze_chain(chain_der: Sequence[bytes], *, hostnames: Iterable[str], trust_anchor_paths: Iterable[Path] = (),
                  use_system_store: bool = True, now: dt.datetime | None = None) -> CertReport:
    """Analyse a chain as presented (leaf first). Raises ChainError if it is empty or not DER X.509."""
    if not chain_der:
        raise ChainError("the server presented no certificate")
    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError as exc:
        raise ChainError(f"the server presented a certificate that does not parse: {exc}") from None
    now = now or dt.datetime.now(dt.UTC)
    leaf = chain[0]
    trusted, reason = _verify_path(chain, _anchor_store(tuple(trust_anchor_paths), use_system_store), now)
    san_dns, san_ip = _sans(leaf)
    info = [_info(c) for c in chain]
    return CertReport(
        leaf=info[0], chain=tuple(info), san_dns=san_dns, san_ip=san_ip,
        chains_to_trust=trusted, trust_reason=reason,
        names=tuple(match_name(h, san_dns, san_ip) for h in hostnames),
        days_to_expiry=(leaf.not_valid_after_utc - now).days,
        expired=now > leaf.not_valid_after_utc, not_yet_valid=now < leaf.not_valid_before_utc,
        weak_signatures=tuple(f"{i.subject}: {i.signature_hash}" for i in info
                              if i.signature_hash in WEAK_HASHES and not i.self_signed),
    )


def _verify_path(chain: list[x509.Certificate], anchors: verification.Store | None, now: dt.datetime,
                 ) -> tuple[bool, str]:
    """Does the chain lead to an anchor? Judged at a moment the leaf is valid, so that an expired
    leaf is reported once (as expired), not twice (also as untrusted). Names are judged separately."""
    if anchors is None:
        return False, "no trust anchors (no system store and no target trust_anchors)"
    leaf = chain[0]
    moment = min(now, leaf.not_valid_after_utc - dt.timedelta(seconds=1))
    moment = max(moment, leaf.not_valid_before_utc)
    # The client-verifier profile checks the path without a server name; permit_all on the leaf keeps
    # its EKU/SAN rules from rejecting a server certificate there (names are matched in match_name).
    builder = (verification.PolicyBuilder().store(anchors).time(moment)
               .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                                   ee_policy=verification.ExtensionPolicy.permit_all()))
    try:
        builder.build_client_verifier().verify(leaf, chain[1:])
    except verification.VerificationError as exc:
        if "Forbidden signature algorithm" in str(exc):
            return False, ("no valid path to a trust anchor: a certificate in the chain is signed with a forbidden "
                           "algorithm (SHA-1 or MD5), which RFC 5280 verifiers of today reject")
        return False, f"no valid path to a trust anchor: {in_words(str(exc))}"
    return True, "chains to a trust anchor"


_OID = re.compile(r"\b[0-2](?:\.\d+){2,}\b")
_MISSING_EXTENSION = re.compile(r"invalid extension: (?P<oid>[\d.]+): Certificate is missing required extension")
_NO_ISSUER = "all candidates exhausted with no interior errors"


def in_words(message: str) -> str:
    """cryptography's verifier message for an operator: extension OIDs by name, its jargon in plain words."""
    message = re.sub(r"^(?:validation failed: )?(?:candidates exhausted: )?", "", message)
    if message == _NO_ISSUER:
        return "no certificate in the chain is issued by a trust anchor (unknown issuer, or an intermediate is missing)"
    message = _MISSING_EXTENSION.sub(lambda m: f"a certificate in the chain lacks the {_oid_name(m['oid'])} extension",
                                     message)
    return _OID.sub(lambda m: _oid_name(m.group()), message.replace("invalid extension: ", "invalid extension "))


def _oid_name(dotted: str) -> str:
    name = x509.ObjectIdentifier(dotted)._name  # cryptography's registry of names; unknown ones stay dotted
    return dotted if name == "Unknown OID" else name


@functools.lru_cache(maxsize=8)
def _anchor_store(paths: tuple[Path, ...], use_system_store: bool) -> verification.Store | None:
    """The anchors as a verifier's store, built once: a system bundle holds over a hundred roots, and a
    fleet verifies several chains per endpoint."""
    anchors = _anchors(paths, use_system_store)
    return verification.Store(list(anchors)) if anchors else None


def _anchors(paths: tuple[Path, ...], use_system_store: bool) -> tuple[x509.Certificate, ...]:
    files = list(paths)
    if use_system_store:
        cafile = ssl.get_default_verify_paths().cafile
        if cafile:
            files.append(Path(cafile))
    found: list[x509.Certificate] = []
    for path in files:
        found.extend(_load_anchor_file(path))
    return tuple(found)


def _load_anchor_file(path: Path) -> list[x509.Certificate]:
    """Certificates in a PEM bundle or DER file; an unreadable or unparsable file adds none (system
    bundles carry a few legacy roots that cryptography warns about, which are not our business)."""
    try:
        data = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if b"-----BEGIN" in data:
                return x509.load_pem_x509_certificates(data)
            return [x509.load_der_x509_certificate(data)]
    except (OSError, ValueError):
        return []


def _sans(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    return (tuple(san.get_values_for_type(x509.DNSName)),
            tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)))


def match_name(hostname: str, san_dns: Sequence[str], san_ip: Sequence[str] = ()) -> NameMatch:
    """RFC 9525 6.3: DNS-IDs from the SAN only (no CN fallback); a wildcard only as the whole left-most
    label, matching exactly one label; an IP address matches only an iPAddress SAN."""
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        address = None
    if address is not None:
        hit = next((ip for ip in san_ip if ipaddress.ip_address(ip) == address), None)
        return NameMatch(hostname, hit is not None, hit,
                         "iPAddress SAN matches" if hit else f"no iPAddress SAN for {hostname}")
    if not san_dns:
        return NameMatch(hostname, False, None, "certificate has no DNS names in subjectAltName (CN is not used)")
    wanted = _normalise(hostname)
    for entry in san_dns:
        if _dns_id_matches(_normalise(entry), wanted):
            return NameMatch(hostname, True, entry, f"matches SAN {entry}")
    return NameMatch(hostname, False, None, f"{hostname} not in SAN ({', '.join(san_dns)})")


def _normalise(name: str) -> str:
    name = name.rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        return name


def _dns_id_matches(pattern: str, hostname: str) -> bool:
    if "*" not in pattern:
        return pattern == hostname
    first, _, rest = pattern.partition(".")
    host_first, _, host_rest = hostname.partition(".")
    # RFC 9525 6.3: only "*" as the complete left-most label, never partial ("w*.example.com"),
    # and not directly under a single-label name ("*.com")
    if first != "*" or "*" in rest or "." not in rest:
        return False
    return bool(host_first) and host_rest == rest


def _info(cert: x509.Certificate) -> CertInfo:
    key_type, bits = describe_key(cert.public_key())
    algorithm = cert.signature_hash_algorithm
    return CertInfo(
        subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        signature_hash=algorithm.name if algorithm is not None else None,
        key_type=key_type, key_bits=bits, self_signed=cert.issuer == cert.subject,
    )


def describe_key(key: object) -> tuple[str, int]:
    """('RSA', 2048), ('EC secp256r1', 256), ('Ed25519', 256)... for evidence and key-size checks."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return type(key).__name__, 0
