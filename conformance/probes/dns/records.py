"""Every DNS record a mail domain's policy lives in, looked up concurrently, one typed result per lookup.

Two rounds: the domain's own names (MX, SPF TXT, ``_dmarc``, ``_smtp._tls``, ``_mta-sts``, DNSKEY, the
autoconfiguration SRV names, each DKIM selector), then per MX host its A, AAAA and ``_25._tcp`` TLSA.
Every query asks with the DO bit (RRSIGs come back for the suite's own DNSSEC validation) and the CD
bit (a validating resolver hands over bogus data instead of SERVFAIL, so the suite can say *why* it is
bogus). dnspython retries over TCP when an answer is truncated; each query has its own time budget.

A lookup never raises: its status says what the resolver answered, in words (answer, NXDOMAIN, NODATA,
SERVFAIL, timeout); the checks decide whether that is a finding or inconclusive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset

from conformance.probes.dns.mx import make_resolver
from conformance.probes.wire.outcome import Attempt, Outcome, os_error_words

EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: larger answers come over TCP, never fragmented
SRV_NAMES = ("_submissions._tcp", "_imaps._tcp", "_submission._tcp", "_imap._tcp")


class Status(StrEnum):
    ANSWER = "answer"
    NXDOMAIN = "NXDOMAIN (the name does not exist)"
    NODATA = "NODATA (the name exists, with no record of this type)"
    SERVFAIL = "SERVFAIL (the resolver could not get an answer)"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True)
class Lookup:
    name: str                      # lower case, no trailing dot
    rtype: str
    status: Status
    texts: tuple[str, ...] = ()    # rdata as text; TXT strings joined into one text per record
    reason: str = ""               # the resolver's own words when there is no answer
    cname: str | None = None       # where the name points when it is an alias (CNAME)
    rrset: dns.rrset.RRset | None = None
    rrsigs: dns.rrset.RRset | None = None

    @property
    def void(self) -> bool:
        """NXDOMAIN or NODATA: an answer saying there is nothing (RFC 7208 §4.6.4 calls it a void lookup)."""
        return self.status in (Status.NXDOMAIN, Status.NODATA)

    @property
    def decisive(self) -> bool:
        """The resolver gave an answer a check can judge (records, or a definite 'none')."""
        return self.status in (Status.ANSWER, Status.NXDOMAIN, Status.NODATA)

    def describe(self) -> str:
        if self.status is Status.ANSWER:
            alias = f" (alias of {self.cname})" if self.cname else ""
            return f"{self.rtype} {self.name}{alias}: " + "; ".join(repr(t) if self.rtype == "TXT" else t
                                                                       for t in self.texts)
        return f"{self.rtype} {self.name}: {self.status}" + (f": {self.reason}" if self.reason else "")


@dataclass(frozen=True)
class DomainRecords:
    domain: str
    resolver: str                                           # "system" or "host:port"
    lookups: dict[tuple[str, str], Lookup] = field(default_factory=dict)
    mx_hosts: tuple[str, ...] = ()                          # in preference order, without the null MX
    elapsed: float = 0.0                                    # seconds for both rounds

    def get(self, name: str, rtype: str) -> Lookup:
        """The lookup of (name, type); KeyError if the probe never asked (a bug in the caller)."""
        return self.lookups[(_key(name), rtype.upper())]

    def txt(self, name: str, prefix: str) -> tuple[Lookup, list[str]]:
        """The TXT lookup of ``name`` and the records starting with ``prefix`` (case-insensitive)."""
        found = self.get(name, "TXT")
        return found, [t for t in found.texts if t.lower().startswith(prefix.lower())]


def _key(name: str) -> str:
    return name.rstrip(".").lower()


def _text(rdata: object) -> str:
    strings = getattr(rdata, "strings", None)
    if strings is not None:  # TXT: a record is one string split into chunks of at most 255 bytes
        return b"".join(strings).decode("utf-8", "replace")
    return str(rdata)


def _sigs_for(answer: dns.resolver.Answer, owner: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.rrset.RRset | None:
    try:
        return answer.response.find_rrset(answer.response.answer, owner, dns.rdataclass.IN,
                                          dns.rdatatype.RRSIG, rdtype)
    except KeyError:
        return None


async def lookup(resolver: dns.asyncresolver.Resolver, name: str, rtype: str) -> Lookup:
    """One query; never raises."""
    key, rtype = _key(name), rtype.upper()
    try:
        answer = await resolver.resolve(key + ".", rtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return Lookup(key, rtype, Status.NXDOMAIN)
    except dns.exception.Timeout as exc:
        return Lookup(key, rtype, Status.TIMEOUT, reason=str(exc))
    except dns.resolver.NoNameservers as exc:
        status, words = _nameserver_failures(exc)
        return Lookup(key, rtype, status, reason=words)
    except dns.exception.DNSException as exc:
        return Lookup(key, rtype, Status.ERROR, reason=str(exc))
    canonical = _key(answer.canonical_name.to_text())
    cname = canonical if canonical != key else None
    if answer.rrset is None:
        return Lookup(key, rtype, Status.NODATA, cname=cname)
    rrset = answer.rrset
    return Lookup(key, rtype, Status.ANSWER, tuple(_text(r) for r in rrset), cname=cname, rrset=rrset,
                  rrsigs=_sigs_for(answer, rrset.name, rrset.rdtype))


def _nameserver_failures(exc: dns.resolver.NoNameservers) -> tuple[Status, str]:
    """What each server did, in words: dnspython's own text names exception objects ("[Errno 111] Connect
    call failed", an empty text for a truncated answer)."""
    words: list[str] = []
    servfail = False
    for server, tcp, port, error, _ in exc.kwargs.get("errors", []):
        address = str(server).removeprefix("Do53:").partition("@")[0]   # dnspython names it "Do53:addr@port"
        where = f"{address} port {port} over {'TCP' if tcp else 'UDP'}"
        if isinstance(error, str):  # a response code
            servfail |= error == "SERVFAIL"
            text = f"{where} answered {error}"
        elif isinstance(error, dns.message.Truncated):
            text = f"{where} answered truncated (TC), so the answer needs TCP"
        elif isinstance(error, OSError):
            text = f"{where}: {os_error_words(error)}"
        else:
            text = f"{where}: {str(error) or 'no usable answer'}"
        if text not in words:
            words.append(text)
    return (Status.SERVFAIL if servfail else Status.ERROR), "; ".join(words) or "no server answered"


async def lookup_all(resolver: dns.asyncresolver.Resolver, queries: Iterable[tuple[str, str]]) -> list[Lookup]:
    """All queries at once: a domain's policy costs a round trip, not one per record."""
    return list(await asyncio.gather(*(lookup(resolver, name, rtype) for name, rtype in queries)))


def policy_resolver(spec: str | None, timeout: float) -> dns.asyncresolver.Resolver:
    """A resolver asking with DO and CD: the answers carry RRSIGs, and bogus data is not hidden."""
    resolver = make_resolver(spec, timeout)
    resolver.use_edns(0, dns.flags.DO, EDNS_PAYLOAD)
    resolver.flags = dns.flags.RD | dns.flags.CD
    resolver.timeout = timeout / 2  # one retry over UDP within the query's budget
    return resolver


def domain_queries(domain: str, selectors: Iterable[str]) -> list[tuple[str, str]]:
    queries = [(domain, "MX"), (domain, "TXT"), (domain, "DNSKEY"), (f"_dmarc.{domain}", "TXT"),
               (f"_smtp._tls.{domain}", "TXT"), (f"_mta-sts.{domain}", "TXT"), (f"mta-sts.{domain}", "A"),
               (f"mta-sts.{domain}", "AAAA")]
    queries += [(f"{srv}.{domain}", "SRV") for srv in SRV_NAMES]
    queries += [(f"{selector}._domainkey.{domain}", "TXT") for selector in selectors]
    return queries


def host_queries(host: str) -> list[tuple[str, str]]:
    return [(host, "A"), (host, "AAAA"), (f"_25._tcp.{host}", "TLSA")]


def mx_hosts_of(mx: Lookup) -> tuple[str, ...]:
    """MX targets in preference order; the null MX ('.') is not a host."""
    if mx.rrset is None:
        return ()
    ordered = sorted((r.preference, _key(r.exchange.to_text())) for r in mx.rrset)
    return tuple(host for _, host in ordered if host)


async def probe_domain(domain: str, resolver_spec: str | None = None, *, selectors: Iterable[str] = (),
                       timeout: float = 5.0) -> Attempt[DomainRecords]:
    """The domain's policy records and its MX hosts' records, in two concurrent rounds."""
    where = resolver_spec or "system"
    domain = _key(domain)
    try:
        resolver = policy_resolver(resolver_spec, timeout)
    except ValueError as exc:
        return Attempt(f"dns {domain}", Outcome.LOCAL_ERROR, None, str(exc))
    started = time.monotonic()
    first = await lookup_all(resolver, domain_queries(domain, selectors))
    mx = first[0]
    hosts = mx_hosts_of(mx)
    if mx.status is Status.NODATA:  # no MX: the domain itself is the implicit MX (RFC 5321 §5.1)
        hosts = (domain,)
    second = await lookup_all(resolver, [q for h in hosts for q in host_queries(h)])
    found = {(lk.name, lk.rtype): lk for lk in [*first, *second]}
    records = DomainRecords(domain, where, found, hosts, time.monotonic() - started)
    notes = tuple(f"-- {lk.describe()}" for lk in found.values())
    return Attempt(f"dns {domain}", Outcome.COMPLETED, records, transcript=(f"-- via {where}", *notes))


def probe_domain_sync(domain: str, resolver_spec: str | None = None, *, selectors: Iterable[str] = (),
                      timeout: float = 5.0) -> Attempt[DomainRecords]:
    return asyncio.run(probe_domain(domain, resolver_spec, selectors=selectors, timeout=timeout))
