"""MX resolution with dnspython, against the target's own resolver if it names one.

Attackers pick the weakest MX, so every MX host of the target's mail domain becomes an endpoint the
suite checks (``with_mx_endpoints``), and the MX set is the redundancy evidence.

Outcomes: an MX set (possibly the RFC 5321 §5.1 implicit MX, or a null MX, RFC 7505) is COMPLETED;
NXDOMAIN is COMPLETED with no hosts (the domain has no mail service: a finding, not a probe error);
timeouts, SERVFAIL and unreachable resolvers are INCONCLUSIVE.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint, Node, Service, Target

MX_PORT = 25
MX_QUERIES_AT_ONCE = 32  # a fleet's domains resolved together, politely for the resolver


@dataclass(frozen=True)
class MxHost:
    preference: int
    host: str                      # lower case, no trailing dot
    addresses: tuple[str, ...]     # A and AAAA; empty if the host does not resolve (a finding)


@dataclass(frozen=True)
class MxSet:
    domain: str
    hosts: tuple[MxHost, ...]      # sorted by preference, then name
    resolver: str                  # "system" or "host:port"
    implicit: bool = False         # no MX record: the domain's own A/AAAA is the MX (RFC 5321 §5.1)
    null_mx: bool = False          # "MX 0 ." (RFC 7505): the domain accepts no mail
    nxdomain: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(h.host for h in self.hosts)


def parse_resolver(spec: str) -> tuple[str, int]:
    """"host", "host:port", "[v6]:port" or a bare IPv6 address -> (address, port). ValueError if bad."""
    spec = spec.strip()
    port = 53
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"), spec)
    elif spec.count(":") == 1:
        host, _, text = spec.partition(":")
        port = _port(text, spec)
    else:
        host = spec
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"resolver {spec!r}: expected an IP address, optionally with :port") from None
    return host, port


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"resolver {spec!r}: port must be 1-65535")
    return int(text)


def make_resolver(spec: str | None, timeout: float) -> dns.asyncresolver.Resolver:
    if spec is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        host, port = parse_resolver(spec)
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


async def _addresses(resolver: dns.asyncresolver.Resolver, host: str) -> tuple[str, ...]:
    found: list[str] = []
    for rtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        found += [r.to_text() for r in answer]
    return tuple(found)


async def resolve_mx(domain: str, resolver_spec: str | None = None, *, timeout: float = 5.0) -> Attempt[MxSet]:
    """The MX set of ``domain`` and each MX host's addresses. Never raises for DNS trouble."""
    where = resolver_spec or "system"
    try:
        resolver = make_resolver(resolver_spec, timeout)
    except ValueError as exc:
        return Attempt(f"mx {domain}", Outcome.LOCAL_ERROR, None, str(exc))
    notes = [f"-- MX {domain} via {where}"]
    try:
        try:
            answer = await resolver.resolve(domain, "MX", search=False)
        except dns.resolver.NXDOMAIN:
            notes.append("-- NXDOMAIN")
            return Attempt(f"mx {domain}", Outcome.COMPLETED, MxSet(domain, (), where, nxdomain=True),
                           transcript=tuple(notes))
        except dns.resolver.NoAnswer:
            addresses = await _addresses(resolver, domain)
            notes.append(f"-- no MX record; implicit MX {domain} -> {', '.join(addresses) or 'no address'}")
            implicit = (MxHost(0, domain.rstrip(".").lower(), addresses),) if addresses else ()
            return Attempt(f"mx {domain}", Outcome.COMPLETED, MxSet(domain, implicit, where, implicit=True),
                           transcript=tuple(notes))
        records = sorted((r.preference, r.exchange.to_text().rstrip(".").lower()) for r in answer)
        if records == [(0, "")]:
            notes.append("-- null MX (RFC 7505)")
            return Attempt(f"mx {domain}", Outcome.COMPLETED, MxSet(domain, (), where, null_mx=True),
                           transcript=tuple(notes))
        resolved = await asyncio.gather(*(_addresses(resolver, host) for _, host in records))
        hosts = tuple(MxHost(pref, host, addrs) for (pref, host), addrs in zip(records, resolved))
        notes += [f"-- MX {h.preference} {h.host} -> {', '.join(h.addresses) or 'no address'}" for h in hosts]
        return Attempt(f"mx {domain}", Outcome.COMPLETED, MxSet(domain, hosts, where), transcript=tuple(notes))
    except dns.exception.Timeout:
        return Attempt(f"mx {domain}", Outcome.INCONCLUSIVE, None,
                       f"DNS: no answer for {domain} MX from {where} within {timeout:g} s", tuple(notes))
    except dns.exception.DNSException as exc:  # SERVFAIL, no nameservers, refused: not the domain's fault
        return Attempt(f"mx {domain}", Outcome.INCONCLUSIVE, None,
                       f"DNS: cannot resolve {domain} MX via {where}: {exc}", tuple(notes))


def resolve_mx_sync(domain: str, resolver_spec: str | None = None, *, timeout: float = 5.0) -> Attempt[MxSet]:
    return asyncio.run(resolve_mx(domain, resolver_spec, timeout=timeout))


def with_mx_endpoints(target: Target, mx: MxSet) -> Target:
    """The target plus an ``mx`` endpoint (port 25) for every MX host that is not already a node.
    A host that is a node (same name) keeps the node's own endpoints and ports."""
    known = {n.host.rstrip(".").lower() for n in target.nodes}
    names = {n.name for n in target.nodes}
    nodes, endpoints = list(target.nodes), list(target.endpoints)
    for mx_host in mx.hosts:
        if mx_host.host in known or mx_host.host in names:
            continue
        address = mx_host.addresses[0] if mx_host.addresses else None
        nodes.append(Node(name=mx_host.host, host=mx_host.host, address=address))
        endpoints.append(Endpoint(Service.MX, mx_host.host, mx_host.host, MX_PORT, address))
        known.add(mx_host.host)
    if len(nodes) == len(target.nodes):
        return target
    return replace(target, nodes=tuple(nodes), endpoints=tuple(endpoints))


def expand_target(target: Target) -> tuple[Target, Attempt[MxSet] | None]:
    """Resolve the target's domain (if any) and add its MX hosts as endpoints. A DNS failure leaves
    the target as it is: the attempt says why, and the redundancy check reports it."""
    found = resolve_targets([target], lambda t: t.timeout).get(target.name)
    return expanded(target, found), found


def expanded(target: Target, found: Attempt[MxSet] | None) -> Target:
    """The target with its MX hosts as endpoints, when ``found`` (its MX resolution) has them."""
    if found is None or not found.ok or found.result is None:
        return target
    return with_mx_endpoints(target, found.result)


def resolve_targets(targets: Sequence[Target], timeout_for: Callable[[Target], float]) -> dict[str, Attempt[MxSet]]:
    """Each target's MX set by target name (targets with a domain only), all of them at once: a fleet of
    hundreds of domains costs one round trip, or one timeout against a dead resolver, not one each."""
    with_domain = [t for t in targets if t.domain]
    found = asyncio.run(_resolve_each([(t.domain or "", t.resolver, min(timeout_for(t), 5.0)) for t in with_domain]))
    return {t.name: attempt for t, attempt in zip(with_domain, found)}


async def _resolve_each(queries: Sequence[tuple[str, str | None, float]]) -> list[Attempt[MxSet]]:
    limit = asyncio.Semaphore(MX_QUERIES_AT_ONCE)

    async def one(domain: str, resolver: str | None, timeout: float) -> Attempt[MxSet]:
        async with limit:
            return await resolve_mx(domain, resolver, timeout=timeout)

    return list(await asyncio.gather(*(one(*query) for query in queries)))


def attempt_to_plain(found: Attempt[MxSet]) -> dict[str, Any]:
    """An MX resolution as plain values, for pytest-xdist's workers (execnet carries no dataclasses)."""
    mx = found.result
    result = None if mx is None else {
        "domain": mx.domain, "resolver": mx.resolver, "implicit": mx.implicit, "null_mx": mx.null_mx,
        "nxdomain": mx.nxdomain, "hosts": [[h.preference, h.host, list(h.addresses)] for h in mx.hosts]}
    return {"endpoint": found.endpoint, "outcome": found.outcome.value, "reason": found.reason,
            "transcript": list(found.transcript), "result": result}


def attempt_from_plain(plain: dict[str, Any]) -> Attempt[MxSet]:
    result = plain["result"]
    mx = None if result is None else MxSet(
        result["domain"], tuple(MxHost(p, h, tuple(a)) for p, h, a in result["hosts"]), result["resolver"],
        implicit=result["implicit"], null_mx=result["null_mx"], nxdomain=result["nxdomain"])
    return Attempt(plain["endpoint"], Outcome(plain["outcome"]), mx, plain["reason"], tuple(plain["transcript"]))
