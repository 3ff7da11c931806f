"""SPF records: parsed, and their DNS cost counted the way RFC 7208 §4.6.4 counts it, recursively.

Written here rather than taken from a library: pyspf and checkdmarc evaluate a sender's address with
their own DNS machinery (no control over the target's resolver, timeouts or concurrency); what the suite
needs is the cost of the record itself, which the RFC defines without a sender: every ``include``,
``a``, ``mx``, ``ptr``, ``exists`` and ``redirect`` counts (at most 10), and every lookup that comes
back empty (NXDOMAIN or NODATA) is a void lookup (at most 2). Terms with macros (``%{i}``) depend on
the sender and are counted but not resolved. Lookups of one level run concurrently.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import dns.asyncresolver

from conformance.probes.dns.records import Lookup, lookup

LOOKUP_LIMIT, VOID_LIMIT = 10, 2
DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
_MECHANISM = re.compile(r"^(?P<q>[+\-~?]?)(?P<name>all|include|a|mx|ptr|ip4|ip6|exists)(?P<arg>[:/].*)?$",
                        re.IGNORECASE)
_MODIFIER = re.compile(r"^(?P<name>[a-z][a-z0-9_.\-]*)=(?P<value>.*)$", re.IGNORECASE)


class SpfSyntaxError(ValueError):
    """The record is not valid SPF (RFC 7208 §4.6: a permerror for every receiver)."""


@dataclass(frozen=True)
class Term:
    qualifier: str   # '+', '-', '~', '?' for mechanisms; '' for modifiers
    name: str        # lower case
    value: str       # the domain-spec or address, '' if none

    @property
    def queries_dns(self) -> bool:
        return self.name in DNS_MECHANISMS or self.name == "redirect"


def is_spf(text: str) -> bool:
    """RFC 7208 §4.5: a record is SPF if it is exactly 'v=spf1' or starts with 'v=spf1 '."""
    lowered = text.lower()
    return lowered == "v=spf1" or lowered.startswith("v=spf1 ")


def parse_spf(text: str) -> tuple[Term, ...]:
    """The terms of an SPF record. Raises SpfSyntaxError naming the first bad term."""
    if not is_spf(text):
        raise SpfSyntaxError(f"does not start with 'v=spf1': {text!r}")
    terms: list[Term] = []
    for word in text.split()[1:]:
        mechanism, modifier = _MECHANISM.match(word), _MODIFIER.match(word)
        if mechanism:
            arg = (mechanism["arg"] or "").removeprefix(":")
            terms.append(Term(mechanism["q"] or "+", mechanism["name"].lower(), arg))
        elif modifier:
            terms.append(Term("", modifier["name"].lower(), modifier["value"]))
        else:
            raise SpfSyntaxError(f"unknown term {word!r}")
    for unique in ("redirect", "exp"):
        if sum(t.name == unique for t in terms) > 1:
            raise SpfSyntaxError(f"'{unique}=' appears more than once (RFC 7208 §6)")
    return tuple(terms)


@dataclass(frozen=True)
class SpfReport:
    domain: str
    record: str | None                   # the domain's own SPF record
    lookups: int = 0                     # DNS-querying terms, counted through include and redirect
    voids: int = 0                       # lookups that came back NXDOMAIN or NODATA
    all_qualifier: str | None = None     # of the record that ends the evaluation ('-' is a hard fail)
    problems: tuple[str, ...] = ()       # permerrors, in words
    unresolved: str | None = None        # the resolver could not answer: no verdict
    notes: tuple[str, ...] = field(default=())


class _Unresolved(Exception):
    pass


@dataclass
class _Walk:
    resolver: dns.asyncresolver.Resolver
    lookups: int = 0
    voids: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    async def ask(self, name: str, rtype: str) -> Lookup:
        found = await lookup(self.resolver, name, rtype)
        if not found.decisive:
            raise _Unresolved(found.describe())
        self.notes.append(f"{found.describe()}")
        if found.void:
            self.voids += 1
        return found

    async def record(self, domain: str, txt: Lookup | None = None) -> tuple[Term, ...] | None:
        txt = txt if txt is not None else await self.ask(domain, "TXT")
        found = [t for t in txt.texts if is_spf(t)]
        if len(found) != 1:
            self.problems.append(f"{domain} has {len(found)} SPF records (exactly one allowed, RFC 7208 §4.5)"
                                 + (": " + " | ".join(repr(t) for t in found) if found else ""))
            return None
        try:
            return parse_spf(found[0])
        except SpfSyntaxError as exc:
            self.problems.append(f"{domain}: {exc}")
            return None

    async def walk(self, domain: str, terms: tuple[Term, ...], depth: int = 0) -> str | None:
        """Count the terms of one record and of what it includes; the 'all' qualifier that ends it."""
        dns_terms = [t for t in terms if t.name in DNS_MECHANISMS]
        final = next((t.qualifier for t in terms if t.name == "all"), None)
        self.lookups += len(dns_terms)
        if self.lookups > LOOKUP_LIMIT or depth > LOOKUP_LIMIT:
            return final
        await asyncio.gather(*(self.term(domain, t, depth) for t in dns_terms))
        redirect = next((t for t in terms if t.name == "redirect"), None)
        if final is None and redirect is not None:  # RFC 7208 §6.1: redirect applies only without 'all'
            self.lookups += 1
            if self.lookups > LOOKUP_LIMIT or "%" in redirect.value:
                return None
            target = await self.record(redirect.value)
            return await self.walk(redirect.value, target, depth + 1) if target is not None else None
        return final

    async def term(self, domain: str, term: Term, depth: int) -> None:
        target = term.value.split("/")[0] or domain
        if "%" in target:
            self.notes.append(f"{term.name}:{term.value}: a macro depends on the sender; counted, not resolved")
            return
        if term.name == "include":
            included = await self.record(target)
            if included is not None:
                await self.walk(target, included, depth + 1)
        elif term.name == "mx":
            await self.ask(target, "MX")
        elif term.name in ("a", "exists"):
            await self.ask(target, "A")
        else:
            self.notes.append("ptr: deprecated (RFC 7208 §5.5); needs the sender's address, not resolved")


async def evaluate_spf(resolver: dns.asyncresolver.Resolver, domain: str, txt: Lookup) -> SpfReport:
    """The domain's SPF record checked and counted; never raises."""
    if not txt.decisive:
        return SpfReport(domain, None, unresolved=txt.describe())
    walk = _Walk(resolver)
    record = next((t for t in txt.texts if is_spf(t)), None)
    try:
        terms = await walk.record(domain, txt)
        final = await walk.walk(domain, terms) if terms is not None else None
    except _Unresolved as exc:
        return SpfReport(domain, record, unresolved=str(exc))
    problems = list(walk.problems)
    if walk.lookups > LOOKUP_LIMIT:
        problems.append(f"more than {LOOKUP_LIMIT} DNS-querying terms through include/redirect ({walk.lookups} "
                        f"counted before stopping; RFC 7208 §4.6.4)")
    if walk.voids > VOID_LIMIT:
        problems.append(f"{walk.voids} void lookups (NXDOMAIN/NODATA; at most {VOID_LIMIT}, RFC 7208 §4.6.4)")
    return SpfReport(domain, record, walk.lookups, walk.voids, final, tuple(problems), notes=tuple(walk.notes))

