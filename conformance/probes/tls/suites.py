"""Cipher suites: the IANA registry as typed values, and a grade for each suite.

A suite's properties are read from its registry name (``TLS_<kex>_WITH_<cipher>_<mac>``, or
``TLS_<aead>_<hash>`` for TLS 1.3), so a new registry line needs no hand-written table row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, IntEnum

from conformance.probes.tls.iana import IANA_CIPHER_SUITES, PRE_STANDARD_SUITES


class Weakness(Enum):
    """What is wrong with a suite; each maps to a line in TR-02102-2 / RFC 7525 / RFC 9325."""

    NULL_CIPHER = "no encryption"
    ANONYMOUS = "no server authentication"
    EXPORT = "export-grade (40/56-bit) keys"
    RC4 = "RC4 (RFC 7465)"
    DES = "single DES"
    TRIPLE_DES = "3DES (64-bit block, Sweet32)"
    WEAK_CIPHER = "obsolete cipher (RC2/IDEA)"
    MD5 = "MD5 MAC"
    STATIC_RSA = "static RSA key exchange"
    NO_FORWARD_SECRECY = "no forward secrecy"
    CBC_SHA1 = "CBC with SHA-1 MAC"
    CBC = "CBC mode (MAC-then-encrypt)"
    UNREGISTERED = "not in the IANA registry: nothing can be vouched for"


class Grade(IntEnum):
    """Worst first, so ``min`` over a set of suites gives its weakest member."""

    INSECURE = 0   # broken: NULL, anonymous, EXPORT, RC4, DES/3DES, MD5
    WEAK = 1       # legacy: no forward secrecy, or CBC
    STRONG = 2     # AEAD with forward secrecy (and every TLS 1.3 suite with an AEAD)


_INSECURE = frozenset({
    Weakness.NULL_CIPHER, Weakness.ANONYMOUS, Weakness.EXPORT, Weakness.RC4, Weakness.DES,
    Weakness.TRIPLE_DES, Weakness.WEAK_CIPHER, Weakness.MD5, Weakness.UNREGISTERED,
})
_TLS12_NAME = re.compile(r"^TLS_(?P<kex>.+?)_WITH_(?P<rest>.+)$")
_AEAD_MARKS = ("_GCM", "_CCM", "CHACHA20_POLY1305", "_MGM_", "AEGIS")
_FS_KEX = ("DHE_", "ECDHE_", "DH_anon", "ECDH_anon", "ECCPWD", "PSK_DHE")
# RFC 9367: the GOST MGM suites carry a _WITH_ name but are TLS 1.3-only.
_TLS13_WITH_NAMES = frozenset({0xC103, 0xC104, 0xC105, 0xC106})


@dataclass(frozen=True, order=True)
class CipherSuite:
    code: int
    name: str

    @property
    def registered(self) -> bool:
        return self.name.startswith("TLS_")

    @property
    def tls13(self) -> bool:
        return self.registered and ("_WITH_" not in self.name or self.code in _TLS13_WITH_NAMES)

    @property
    def kex(self) -> str:
        """Key exchange and authentication part of the name ('ECDHE_RSA', 'RSA'), '' for TLS 1.3."""
        match = _TLS12_NAME.match(self.name)
        return match.group("kex") if match and not self.tls13 else ""

    @property
    def cipher(self) -> str:
        match = _TLS12_NAME.match(self.name)
        return match.group("rest") if match else self.name.removeprefix("TLS_")

    @property
    def aead(self) -> bool:
        return any(mark in self.cipher for mark in _AEAD_MARKS)

    @property
    def forward_secret(self) -> bool:
        return self.tls13 or self.kex.startswith(_FS_KEX)

    @property
    def ephemeral_dh(self) -> bool:
        """Finite-field DHE: the ServerKeyExchange carries the prime, whose size we report."""
        return self.kex.startswith(("DHE_", "DH_anon"))

    @property
    def ephemeral_ecdh(self) -> bool:
        return self.kex.startswith(("ECDHE_", "ECDH_anon"))

    @property
    def weaknesses(self) -> frozenset[Weakness]:
        return _weaknesses(self)

    @property
    def grade(self) -> Grade:
        found = self.weaknesses
        if found & _INSECURE:
            return Grade.INSECURE
        return Grade.WEAK if found else Grade.STRONG

    def __str__(self) -> str:
        return self.name


def _weaknesses(s: CipherSuite) -> frozenset[Weakness]:
    name, kex, cipher = s.name, s.kex, s.cipher
    found: set[Weakness] = set()
    if not s.registered:
        return frozenset({Weakness.UNREGISTERED})
    if s.tls13:
        # RFC 9150 integrity-only suites encrypt nothing.
        return frozenset({Weakness.NULL_CIPHER}) if cipher.startswith("SHA") else frozenset()
    if cipher.startswith("NULL") or kex == "NULL":
        found.add(Weakness.NULL_CIPHER)
    if "anon" in kex or kex == "NULL":
        found.add(Weakness.ANONYMOUS)
    if "EXPORT" in name:
        found.add(Weakness.EXPORT)
    if "RC4" in cipher:
        found.add(Weakness.RC4)
    if "3DES" in cipher:
        found.add(Weakness.TRIPLE_DES)
    elif "DES" in cipher:
        found.add(Weakness.DES)
    if "RC2" in cipher or "IDEA" in cipher:
        found.add(Weakness.WEAK_CIPHER)
    if cipher.endswith("_MD5"):
        found.add(Weakness.MD5)
    if kex in ("RSA", "RSA_PSK") or kex.startswith("RSA_EXPORT"):
        found.add(Weakness.STATIC_RSA)
    if not s.forward_secret:
        found.add(Weakness.NO_FORWARD_SECRECY)
    if "_CBC" in cipher or "CBC_" in cipher:
        found.add(Weakness.CBC_SHA1 if cipher.endswith("_SHA") else Weakness.CBC)
    return frozenset(found)


def _load(text: str) -> dict[int, CipherSuite]:
    table: dict[int, CipherSuite] = {}
    for line in text.strip().splitlines():
        code, name = line.split()
        table[int(code, 16)] = CipherSuite(int(code, 16), name)
    return table


REGISTRY: dict[int, CipherSuite] = {**_load(IANA_CIPHER_SUITES), **_load(PRE_STANDARD_SUITES)}
TLS13_SUITES: tuple[CipherSuite, ...] = tuple(s for s in REGISTRY.values() if s.tls13)
LEGACY_SUITES: tuple[CipherSuite, ...] = tuple(s for s in REGISTRY.values() if not s.tls13)


def suite(code: int) -> CipherSuite:
    """The registry entry for a code point; one we do not know is named ``unknown(0x1234)``."""
    return REGISTRY.get(code) or CipherSuite(code, f"unknown(0x{code:04x})")


def by_name(name: str) -> CipherSuite:
    """Look a suite up by its IANA name; raises KeyError naming the bad value."""
    for entry in REGISTRY.values():
        if entry.name == name:
            return entry
    raise KeyError(f"no cipher suite named {name!r} in the IANA registry")
