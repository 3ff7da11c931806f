"""DKIM on what arrived at the lab: verified with dkimpy (a well-kept, independent implementation),
the key fetched from the target's resolver, and the signature's algorithm, key size and l= read out."""

from __future__ import annotations

from dataclasses import dataclass

import dkim
import dns.exception
import dns.resolver

from conformance.probes.dns.mx import parse_resolver


@dataclass(frozen=True)
class DkimVerdict:
    signed: bool
    valid: bool
    domain: str | None = None
    algorithm: str | None = None
    key_bits: int | None = None
    body_length: str | None = None    # the l= tag, if any
    error: str | None = None


def _txt_lookup(resolver_spec: str | None, timeout: float) -> object:
    """A dkimpy ``dnsfunc`` that asks the target's resolver (dkimpy's own one asks the system's)."""
    resolver = dns.resolver.Resolver(configure=resolver_spec is None)
    if resolver_spec is not None:
        host, port = parse_resolver(resolver_spec)
        resolver.nameservers, resolver.port = [host], port
    resolver.lifetime = timeout

    def get_txt(name: bytes | str, timeout: float = timeout) -> bytes | None:
        qname = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(qname, "TXT", raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.exception.DNSException as exc:
            raise dkim.DnsTimeoutError(f"no answer for {qname}: {exc}") from None
        for rrset in answer.response.answer:
            for rdata in rrset:
                return b"".join(rdata.strings)
        return None
    return get_txt


def verify_dkim(message: bytes, resolver_spec: str | None, timeout: float) -> DkimVerdict:
    """Verify the first DKIM-Signature of ``message`` (blocking: a few DNS queries)."""
    if b"dkim-signature:" not in message.lower():
        return DkimVerdict(signed=False, valid=False, error="the message carries no DKIM-Signature")
    checker = dkim.DKIM(message)
    try:
        valid = bool(checker.verify(dnsfunc=_txt_lookup(resolver_spec, timeout)))
        error = None if valid else "the signature does not verify"
    except dkim.DKIMException as exc:
        valid, error = False, str(exc)
    fields = {k.decode(): v.decode(errors="replace") for k, v in (checker.signature_fields or {}).items()}
    return DkimVerdict(signed=True, valid=valid, domain=fields.get("d"), algorithm=fields.get("a"),
                       key_bits=checker.keysize or None, body_length=fields.get("l"), error=error)
