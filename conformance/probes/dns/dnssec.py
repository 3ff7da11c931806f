"""DNSSEC validation by the suite itself: an RRset is secure when its RRSIG verifies with a DNSKEY set that
is itself proven, by a trust anchor or by a DS record from the parent zone proven the same way.

A resolver's AD bit is not used: it is the resolver's opinion. The chain is walked with ``dns.dnssec``
(``validate`` for signatures, ``make_ds`` for DS digests) over lookups made with DO and CD, one DNSKEY
and one DS lookup per zone, shared by every RRset of the run. Denial of existence (NSEC/NSEC3) is not
proven here: a zone without a DS at its parent is reported as not secure, with that reason.

Trust anchors: the IANA root anchors shipped with the suite (``root-anchors.txt``), or the target's
``dnssec_trust_anchors`` files (DS or DNSKEY records in zone-file format) for lab and split-horizon zones.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import dns.asyncresolver
import dns.dnssec
import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zonefile

from conformance.probes.dns.records import Lookup, lookup

ROOT_ANCHORS = Path(__file__).with_name("root-anchors.txt")
MAX_DEPTH = 16   # labels from a name up to the root: a deeper chain is a loop


class Security(StrEnum):
    SECURE = "secure"
    INSECURE = "not signed"              # no signatures, or no DS at the parent: nothing proves the data
    BOGUS = "bogus"                      # signatures present but they do not verify
    INDETERMINATE = "indeterminate"      # the resolver could not answer: no verdict


@dataclass(frozen=True)
class Validation:
    name: str
    rtype: str
    security: Security
    reason: str                          # in words: which key, which signature, which zone
    chain: tuple[str, ...] = ()          # the zones walked, trust anchor last

    def describe(self) -> str:
        return f"{self.rtype} {self.name}: {self.security}: {self.reason}"


class TrustAnchorError(ValueError):
    """A trust anchor file cannot be read or holds no DS/DNSKEY record; the message names the file."""


def load_anchors(paths: tuple[Path, ...] = ()) -> dict[dns.name.Name, dns.rrset.RRset]:
    """Zone -> its anchor RRset (DS or DNSKEY), from the given files or the shipped root anchors."""
    anchors: dict[dns.name.Name, dns.rrset.RRset] = {}
    for path in paths or (ROOT_ANCHORS,):
        try:
            rrsets = dns.zonefile.read_rrsets(path.read_text(encoding="utf-8"), rdclass=None,
                                              default_rdclass=dns.rdataclass.IN, default_ttl=0)
        except (OSError, UnicodeDecodeError, dns.exception.DNSException) as exc:
            raise TrustAnchorError(f"{path}: cannot read DNSSEC trust anchors: {exc}") from None
        for rrset in rrsets:
            if rrset.rdtype in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
                anchors.setdefault(rrset.name, dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype))
                anchors[rrset.name].union_update(rrset)
    if not anchors:
        raise TrustAnchorError(f"{', '.join(map(str, paths))}: no DS or DNSKEY record in the trust anchor file(s)")
    return anchors


class _Fail(Exception):
    def __init__(self, security: Security, reason: str) -> None:
        super().__init__(reason)
        self.security = security


@dataclass
class Validator:
    """Validates RRsets against the anchors; DNSKEY sets are proven once per zone and shared."""

    resolver: dns.asyncresolver.Resolver
    anchors: dict[dns.name.Name, dns.rrset.RRset]
    _keys: dict[dns.name.Name, asyncio.Task[tuple[dns.rrset.RRset, tuple[str, ...]]]] = field(default_factory=dict)

    async def validate(self, found: Lookup) -> Validation:
        """The security of one looked-up RRset. Never raises."""
        if not found.decisive:
            return Validation(found.name, found.rtype, Security.INDETERMINATE, found.describe())
        if found.rrset is None:
            return Validation(found.name, found.rtype, Security.INDETERMINATE,
                              f"{found.status}: no RRset to validate (denial of existence is not proven)")
        try:
            chain = await self._verify(found.rrset, found.rrsigs, found.describe())
        except _Fail as fail:
            return Validation(found.name, found.rtype, fail.security, str(fail))
        return Validation(found.name, found.rtype, Security.SECURE,
                          f"signed by {chain[0]}, proven up to the trust anchor for {chain[-1]}", chain)

    async def _verify(self, rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None, what: str) -> tuple[str, ...]:
        if sigs is None or len(sigs) == 0:
            raise _Fail(Security.INSECURE, f"no signatures returned for {what}")
        signer = sigs[0].signer
        if not rrset.name.is_subdomain(signer):
            raise _Fail(Security.BOGUS, f"RRSIG signer {signer} is not a parent of {rrset.name}")
        keys, chain = await self._proven_keys(signer)
        try:
            dns.dnssec.validate(rrset, sigs, {signer: keys})
        except dns.dnssec.ValidationFailure as exc:
            raise _Fail(Security.BOGUS, f"the RRSIG over {_rr(rrset)} does not verify with the DNSKEYs of "
                        f"{signer} ({_tags(keys)}): {_why(exc, sigs)}") from None
        return (signer.to_text(omit_final_dot=True) or ".", *chain)

    async def _proven_keys(self, zone: dns.name.Name) -> tuple[dns.rrset.RRset, tuple[str, ...]]:
        if zone not in self._keys:
            self._keys[zone] = asyncio.ensure_future(self._prove_keys(zone))
        return await self._keys[zone]

    async def _prove_keys(self, zone: dns.name.Name) -> tuple[dns.rrset.RRset, tuple[str, ...]]:
        if len(zone) > MAX_DEPTH:
            raise _Fail(Security.BOGUS, f"chain of trust deeper than {MAX_DEPTH} zones at {zone}")
        found = await lookup(self.resolver, zone.to_text(), "DNSKEY")
        if not found.decisive:
            raise _Fail(Security.INDETERMINATE, found.describe())
        if found.rrset is None:
            raise _Fail(Security.INSECURE, f"{zone} publishes no DNSKEY ({found.status})")
        keys = found.rrset
        chain: tuple[str, ...]
        if zone in self.anchors:
            trusted, chain = self.anchors[zone], (f"{zone.to_text(omit_final_dot=True) or '.'} (trust anchor)",)
        else:
            trusted, chain = await self._parent_ds(zone)
        entry = _matching_keys(keys, trusted)
        if not entry:
            raise _Fail(Security.BOGUS, f"no DNSKEY of {zone} ({_tags(keys)}) matches its "
                        f"{'trust anchor' if zone in self.anchors else 'DS at the parent'} ({_tags(trusted)})")
        try:
            dns.dnssec.validate(keys, found.rrsigs or dns.rrset.RRset(zone, dns.rdataclass.IN, dns.rdatatype.RRSIG),
                                {zone: entry})
        except dns.dnssec.ValidationFailure as exc:
            raise _Fail(Security.BOGUS, f"the DNSKEY set of {zone} is not signed by its anchored key "
                        f"({_tags(entry)}): {_why(exc, found.rrsigs)}") from None
        return keys, chain

    async def _parent_ds(self, zone: dns.name.Name) -> tuple[dns.rrset.RRset, tuple[str, ...]]:
        if zone == dns.name.root:
            raise _Fail(Security.INSECURE, "the root zone is not a trust anchor here")
        found = await lookup(self.resolver, zone.to_text(), "DS")
        if not found.decisive:
            raise _Fail(Security.INDETERMINATE, found.describe())
        if found.rrset is None:
            raise _Fail(Security.INSECURE, f"no DS for {zone} at its parent ({found.status}): the delegation is "
                        "not signed, or the zone is not under a configured trust anchor")
        chain = await self._verify(found.rrset, found.rrsigs, found.describe())
        return found.rrset, (zone.to_text(omit_final_dot=True), *chain)


def _matching_keys(keys: dns.rrset.RRset, trusted: dns.rrset.RRset) -> dns.rrset.RRset:
    """The DNSKEYs of ``keys`` that an anchor (DNSKEY itself, or a DS digest of it) vouches for."""
    out = dns.rrset.RRset(keys.name, keys.rdclass, dns.rdatatype.DNSKEY)
    for key in keys:
        if trusted.rdtype == dns.rdatatype.DNSKEY:
            if key in trusted:
                out.add(key)
            continue
        for ds in trusted:
            try:
                if dns.dnssec.make_ds(keys.name, key, ds.digest_type) == ds:
                    out.add(key)
            except dns.dnssec.UnsupportedAlgorithm:
                continue
    return out


def _why(failure: dns.dnssec.ValidationFailure, sigs: dns.rrset.RRset | None) -> str:
    """dnspython's reason, or when every signature is outside its validity period, that period in words:
    with several RRSIGs dnspython only says "no RRSIGs validated", and an expired zone is the common case."""
    now = time.time()
    periods = [(sig.inception, sig.expiration) for sig in sigs or ()]
    if periods and all(expiration < now for _, expiration in periods):
        return f"every RRSIG has expired (the last at {_utc(max(e for _, e in periods))})"
    if periods and all(inception > now for inception, _ in periods):
        return f"no RRSIG is valid yet (the first from {_utc(min(i for i, _ in periods))})"
    return str(failure)


def _utc(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _tags(rrset: dns.rrset.RRset) -> str:
    tags = [str(r.key_tag) if rrset.rdtype == dns.rdatatype.DS else str(dns.dnssec.key_id(r)) for r in rrset]
    return "key tag " + ", ".join(sorted(set(tags))) if tags else "no keys"


def _rr(rrset: dns.rrset.RRset) -> str:
    return f"{dns.rdatatype.to_text(rrset.rdtype)} {rrset.name.to_text(omit_final_dot=True)}"


async def validate_all(validator: Validator, lookups: list[Lookup]) -> list[Validation]:
    """Every lookup's security, concurrently (zones shared)."""
    return list(await asyncio.gather(*(validator.validate(lk) for lk in lookups)))

