"""The reference sender's DNS: queries with the DO bit to the configured resolver, RRSIGs checked against
the lab zone's trust anchor (dnspython's ``dns.dnssec.validate``), so DANE rests on validated answers.

Small on purpose: the lab zone is one signed zone under one DS, so the chain is DS -> DNSKEY -> RRset;
names outside it are insecure. A denial (NXDOMAIN, NODATA) is taken as insecure, not proven: the
sender then falls back to opportunistic TLS, which is what a real MTA does for an unsigned name.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import dns.asyncquery
import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class Security(StrEnum):
    SECURE = "secure"
    INSECURE = "insecure"
    BOGUS = "bogus"


class LookupFailed(Exception):
    """The resolver gave no usable answer (SERVFAIL, timeout): a temporary failure for the sender."""


class Validator:
    def __init__(self, resolver: str, anchor_file: Path, *, trust_bogus: bool = False, timeout: float = 3.0) -> None:
        host, _, port = resolver.rpartition(":")
        self.host, self.port, self.anchor_file, self.timeout = host, int(port), anchor_file, timeout
        self.trust_bogus = trust_bogus   # the no_dnssec_validation flaw: a failed signature counts as good

    async def lookup(self, name: str, rdtype: str) -> tuple[dns.rrset.RRset | None, Security]:
        qname = dns.name.from_text(name)
        rtype = dns.rdatatype.from_text(rdtype)
        response = await self._query(qname, rtype)
        rrset = _find(response, qname, rtype)
        if rrset is None:
            return None, Security.INSECURE
        security = await self._judge(response, qname, rrset)
        return rrset, Security.SECURE if security is Security.BOGUS and self.trust_bogus else security

    async def _query(self, qname: dns.name.Name, rtype: dns.rdatatype.RdataType) -> dns.message.Message:
        query = dns.message.make_query(qname, rtype, want_dnssec=True)
        try:
            response, _ = await dns.asyncquery.udp_with_fallback(query, self.host, timeout=self.timeout,
                                                                 port=self.port)
        except (dns.exception.DNSException, OSError) as exc:
            raise LookupFailed(f"{qname} {dns.rdatatype.to_text(rtype)}: no answer from {self.host}:{self.port} "
                               f"({exc})") from None
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise LookupFailed(f"{qname}: {dns.rcode.to_text(response.rcode())}")
        return response

    async def _judge(self, response: dns.message.Message, qname: dns.name.Name,
                     rrset: dns.rrset.RRset) -> Security:
        zone, ds = self._anchor()
        if not qname.is_subdomain(zone):
            return Security.INSECURE
        sigs = _find(response, qname, dns.rdatatype.RRSIG, rrset.rdtype)
        keys = await self._keys(zone, ds)
        if sigs is None or keys is None:
            return Security.BOGUS
        try:
            dns.dnssec.validate(rrset, sigs, {zone: keys})
        except dns.dnssec.ValidationFailure:
            return Security.BOGUS
        return Security.SECURE

    def _anchor(self) -> tuple[dns.name.Name, dns.rrset.RRset]:
        """The DS line the lab wrote (read on each lookup: the suite may make it after we start)."""
        owner, ttl, klass, rtype, *rdata = self.anchor_file.read_text(encoding="ascii").split()
        ds = dns.rrset.from_text(owner, int(ttl), klass, rtype, " ".join(rdata))
        return ds.name, ds

    async def _keys(self, zone: dns.name.Name, ds: dns.rrset.RRset) -> dns.rrset.RRset | None:
        response = await self._query(zone, dns.rdatatype.DNSKEY)
        keys = _find(response, zone, dns.rdatatype.DNSKEY)
        sigs = _find(response, zone, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
        if keys is None or sigs is None:
            return None
        trusted = [k for k in keys for d in ds if dns.dnssec.make_ds(zone, k, d.digest_type) == d]
        if not trusted:
            return None
        try:
            dns.dnssec.validate(keys, sigs, {zone: keys})
        except dns.dnssec.ValidationFailure:
            return None
        return keys


def _find(response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType,
          covers: dns.rdatatype.RdataType = dns.rdatatype.NONE) -> dns.rrset.RRset | None:
    return response.get_rrset(response.answer, name, dns.rdataclass.IN, rdtype, covers)
