"""The mail domain's DNS: MX set, SPF, DMARC, TLS-RPT, DKIM keys, client autoconfiguration (SRV), DNSSEC
and DANE (TLSA held against the certificates the TLS family's handshakes saw: no extra connection).

Opt-in by naming the domain (``[target] domain``); every record is fetched once per run, concurrently,
from the target's resolver. A lookup the resolver could not answer (SERVFAIL, timeout) makes the check
inconclusive with the resolver's words; NXDOMAIN and NODATA are answers and are judged.
"""

from __future__ import annotations

import ipaddress

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.dns import DomainPolicy, ServedAt, dnssec_relied_on
from conformance.probes.dns.dane import (
    UNUSABLE_FOR_SMTP,
    Tlsa,
    Usage,
    chain_matches,
    spki_sha256,
    tlsa_records,
)
from conformance.probes.dns.dnssec import Security
from conformance.probes.dns.policy import (
    DkimKey,
    Dmarc,
    RecordError,
    parse_dkim_key,
    parse_dmarc,
    parse_tlsrpt,
)
from conformance.probes.dns.records import DomainRecords, Lookup, Status
from conformance.probes.wire.outcome import Outcome
from conformance.target import Service, Target
from conformance.verdict import Inconclusive

IMPLICIT_PORTS = {"submissions": 465, "imaps": 993}


def _records(policy: DomainPolicy, evidence: Evidence) -> DomainRecords:
    return evidence.require(policy.records)


def _answered(found: Lookup) -> Lookup:
    """The lookup, if the resolver answered it (records, NXDOMAIN or NODATA); inconclusive otherwise."""
    if not found.decisive:
        raise Inconclusive(f"DNS: {found.describe()}")
    return found


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@pytest.mark.requirement("DNS-MX-01")
def test_mx_set_is_usable(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """Senders deliver to MX hosts by name: an alias, an address in its place or a host without an address
    loses mail at some senders (RFC 2181 §10.3), and a null MX beside real ones makes delivery undefined."""
    records = _records(domain_policy, evidence)
    mx = _answered(records.get(mail_domain, "MX"))
    evidence.add("mx", mx.texts or str(mx.status))
    assert mx.status is Status.ANSWER, f"domain@{mail_domain}: no MX set ({mx.status}): senders cannot find its mail hosts"
    if records.mx_hosts == () and len(mx.texts) == 1:
        return  # the null MX alone: the domain states that it takes no mail (RFC 7505)
    null_beside_others = len(records.mx_hosts) < len(mx.texts)
    problems = ["a null MX ('0 .') beside other MX records (RFC 7505 §3)"] if null_beside_others else []
    for host in records.mx_hosts:
        problems += _host_problems(records, host)
    assert not problems, f"domain@{mail_domain}: MX set: " + "; ".join(problems)


def _host_problems(records: DomainRecords, host: str) -> list[str]:
    if _is_ip_literal(host):
        return [f"MX {host} is an IP address, not a host name (RFC 5321 §5.1)"]
    a, aaaa = _answered(records.get(host, "A")), _answered(records.get(host, "AAAA"))
    alias = a.cname or aaaa.cname
    if alias:
        return [f"MX {host} is an alias (CNAME to {alias}); MX targets must not be aliases (RFC 2181 §10.3)"]
    if a.void and aaaa.void:
        return [f"MX {host} has no A or AAAA address ({a.status})"]
    return []


@pytest.mark.requirement("DNS-SPF-01")
def test_spf_is_valid_and_within_its_lookup_limits(mail_domain: str, domain_policy: DomainPolicy,
                                                   evidence: Evidence) -> None:
    """A receiver that meets two records, a syntax error or more than 10 lookups returns permerror: the
    domain's SPF then protects nothing, and some receivers reject its mail outright."""
    _records(domain_policy, evidence)
    report = domain_policy.spf
    assert report is not None
    if report.unresolved:
        raise Inconclusive(f"domain@{mail_domain}: SPF not resolvable: {report.unresolved}")
    evidence.add("spf", report.record or "none")
    evidence.add("spf.lookups", report.lookups)
    evidence.add("spf.void_lookups", report.voids)
    assert not report.problems, f"domain@{mail_domain}: SPF permerror: " + "; ".join(report.problems)


@pytest.mark.requirement("DNS-SPF-02")
def test_spf_ends_in_a_hard_fail(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """'~all' and '?all' leave the decision about a forged sender to the receiver's mood."""
    _records(domain_policy, evidence)
    report = domain_policy.spf
    assert report is not None
    if report.unresolved:
        raise Inconclusive(f"domain@{mail_domain}: SPF not resolvable: {report.unresolved}")
    if report.record is None or (report.problems and report.all_qualifier is None):
        pytest.skip(f"domain@{mail_domain}: no single valid SPF record to judge (see DNS-SPF-01)")
    evidence.add("spf", report.record)
    assert report.all_qualifier == "-", (
        f"domain@{mail_domain}: SPF ends in {(report.all_qualifier or '') + 'all' if report.all_qualifier else 'no all'} "
        f"({report.record!r}): unauthorised senders are not refused; end the record with -all")


def _dmarc(records: DomainRecords, domain: str, evidence: Evidence) -> Dmarc:
    """The one DMARC record, parsed; AssertionError says what is wrong with it."""
    found, texts = records.txt(f"_dmarc.{domain}", "v=DMARC1")
    _answered(found)
    evidence.add("dmarc", texts or str(found.status))
    assert texts, f"domain@{domain}: no DMARC record at _dmarc.{domain} ({found.status if found.void else 'none'})"
    assert len(texts) == 1, f"domain@{domain}: {len(texts)} DMARC records at _dmarc.{domain}: receivers apply none"
    try:
        return parse_dmarc(texts[0])
    except RecordError as exc:
        raise AssertionError(f"domain@{domain}: DMARC record at _dmarc.{domain} is invalid: {exc}") from None


@pytest.mark.requirement("DNS-DMARC-01")
def test_dmarc_record_is_valid(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """An invalid record is no policy at all; reports sent to a domain that did not ask for them are
    dropped by honest receivers (RFC 7489 §7.1), so the owner never sees them."""
    dmarc = _dmarc(_records(domain_policy, evidence), mail_domain, evidence)
    refused = []
    for destination, consent in sorted(domain_policy.dmarc_consent.items()):
        _answered(consent)
        if not any(t.lower().startswith("v=dmarc1") for t in consent.texts):
            refused.append(f"{destination} (no 'v=DMARC1' TXT at {consent.name}: {consent.status})")
    evidence.add("dmarc.rua", dmarc.rua)
    assert not refused, (f"domain@{mail_domain}: DMARC reports go to domains that have not authorised them: "
                         + "; ".join(refused))


@pytest.mark.requirement("DNS-DMARC-02")
def test_dmarc_policy_is_enforced(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """p=none only watches forged mail arrive; reject (or quarantine) stops it."""
    dmarc = _dmarc(_records(domain_policy, evidence), mail_domain, evidence)
    evidence.add("dmarc.policy", dmarc.policy)
    if dmarc.policy == "quarantine":
        evidence.add("dmarc.note", "p=quarantine: accepted at SHOULD level; p=reject is the stronger policy")
    assert dmarc.policy in ("reject", "quarantine"), (
        f"domain@{mail_domain}: DMARC policy is p={dmarc.policy}: forged mail is delivered; publish p=reject")


@pytest.mark.requirement("DNS-TLSRPT-01")
def test_tlsrpt_record_is_published(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """Without TLS-RPT the domain never hears that senders fail to reach it securely (RFC 8460)."""
    found, texts = _records(domain_policy, evidence).txt(f"_smtp._tls.{mail_domain}", "v=TLSRPTv1")
    _answered(found)
    evidence.add("tlsrpt", texts or str(found.status))
    assert len(texts) == 1, (f"domain@{mail_domain}: {len(texts)} TLS-RPT records at _smtp._tls.{mail_domain} "
                             "(exactly one 'v=TLSRPTv1; rua=...' needed, RFC 8460 §3)")
    try:
        parse_tlsrpt(texts[0])
    except RecordError as exc:
        raise AssertionError(f"domain@{mail_domain}: TLS-RPT record is invalid: {exc}") from None


@pytest.mark.requirement("DNS-TLSRPT-02")
def test_tlsrpt_reports_go_to_mailto_only(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """BSI TR-03108 takes reports by mail only: an https: destination is a web endpoint outside the mail
    system's own protection (bsi profile only)."""
    found, texts = _records(domain_policy, evidence).txt(f"_smtp._tls.{mail_domain}", "v=TLSRPTv1")
    _answered(found)
    try:
        rua = parse_tlsrpt(texts[0]).rua if len(texts) == 1 else None
    except RecordError:
        rua = None
    if rua is None:
        pytest.skip(f"domain@{mail_domain}: no single valid TLS-RPT record to judge (see DNS-TLSRPT-01)")
    evidence.add("tlsrpt.rua", rua)
    https = [u for u in rua if not u.lower().startswith("mailto:")]
    assert not https, (f"domain@{mail_domain}: TLS-RPT sends reports to {', '.join(https)}: BSI TR-03108 4.1.10 "
                       "allows mailto: destinations only")


def _dkim_keys(target: Target, records: DomainRecords, domain: str, evidence: Evidence) -> dict[str, DkimKey | str]:
    """selector -> its key, or the reason it has none."""
    if not target.dkim_selectors:
        pytest.skip("target names no dkim_selectors: the selectors are the signer's choice and cannot be guessed")
    keys: dict[str, DkimKey | str] = {}
    for selector in target.dkim_selectors:
        found = _answered(records.get(f"{selector}._domainkey.{domain}", "TXT"))
        texts = [t for t in found.texts if "p=" in t]
        if len(texts) != 1:
            keys[selector] = f"{len(texts)} key records ({found.status})"
            continue
        try:
            keys[selector] = parse_dkim_key(texts[0])
        except RecordError as exc:
            keys[selector] = str(exc)
    evidence.add("dkim", [f"{s}: {k.describe() if isinstance(k, DkimKey) else k}" for s, k in keys.items()])
    return keys


@pytest.mark.requirement("DNS-DKIM-01")
def test_dkim_keys_are_usable(mail_domain: str, target: Target, domain_policy: DomainPolicy,
                              evidence: Evidence) -> None:
    """Receivers ignore signatures made with keys under 1024 bits (RFC 8301 §3.2) or with revoked keys."""
    keys = _dkim_keys(target, _records(domain_policy, evidence), mail_domain, evidence)
    unusable = [f"{s}._domainkey.{mail_domain}: {k if isinstance(k, str) else k.describe()}" for s, k in keys.items()
                if isinstance(k, str) or k.revoked or (k.key_type == "rsa" and k.bits < 1024)]
    assert not unusable, f"domain@{mail_domain}: DKIM selectors without a usable key: " + "; ".join(unusable)


@pytest.mark.requirement("DNS-DKIM-02")
def test_dkim_keys_are_strong(mail_domain: str, target: Target, domain_policy: DomainPolicy,
                              evidence: Evidence) -> None:
    keys = _dkim_keys(target, _records(domain_policy, evidence), mail_domain, evidence)
    usable = {s: k for s, k in keys.items() if isinstance(k, DkimKey) and not k.revoked}
    if not usable:
        pytest.skip(f"domain@{mail_domain}: no usable DKIM key to judge (see DNS-DKIM-01)")
    weak = [f"{s}._domainkey.{mail_domain}: {k.describe()}" for s, k in usable.items()
            if (k.key_type == "rsa" and k.bits < 2048) or k.testing]
    assert not weak, (f"domain@{mail_domain}: DKIM keys below RSA 2048 bit or in test mode: " + "; ".join(weak)
                      + ". Publish a 2048-bit RSA or an Ed25519 key without t=y")


@pytest.mark.requirement("DNS-SRV-01")
def test_srv_records_point_to_implicit_tls(mail_domain: str, target: Target, domain_policy: DomainPolicy,
                                          evidence: Evidence) -> None:
    """An MUA configured from DNS uses whatever SRV names: a STARTTLS port there invites a downgrade."""
    records = _records(domain_policy, evidence)
    problems: list[str] = []
    for service, implicit in IMPLICIT_PORTS.items():
        found = _answered(records.get(f"_{service}._tcp.{mail_domain}", "SRV"))
        evidence.add(f"srv.{service}", found.texts or str(found.status))
        targets = [t.split() for t in found.texts if t.split()[3:] != ["."]]
        if not targets:
            problems.append(f"_{service}._tcp.{mail_domain} names no server ({found.status})")
        served = {(e.host.lower(), e.port) for e in target.endpoints_for(Service(service))}
        problems += [f"_{service}._tcp.{mail_domain} points at {host.rstrip('.')}:{port}, which is not an "
                     f"implicit-TLS {service} endpoint" for _, _, port, host in targets
                     if int(port) != implicit and (host.rstrip(".").lower(), int(port)) not in served]
    for plain in ("submission", "imap"):
        found = _answered(records.get(f"_{plain}._tcp.{mail_domain}", "SRV"))
        evidence.add(f"srv.{plain}", found.texts or str(found.status))
        offered = [t for t in found.texts if t.split()[3:] != ["."]]
        if offered:
            problems.append(f"_{plain}._tcp.{mail_domain} offers the STARTTLS service ({'; '.join(offered)}); "
                            "publish '0 0 0 .' or remove it")
    assert not problems, f"domain@{mail_domain}: client autoconfiguration: " + "; ".join(problems)


def _judge_dnssec(policy: DomainPolicy, records: DomainRecords, wanted: list[tuple[str, str]], where: str,
                  evidence: Evidence) -> None:
    """Fail on every RRset that is not proven; inconclusive where the resolver kept the proof from us."""
    if policy.anchor_error:
        raise Inconclusive(f"{where}: {policy.anchor_error}")
    found = [policy.dnssec[key] for key in wanted if key in policy.dnssec]
    if not found:
        pytest.skip(f"{where}: none of {', '.join(f'{t} {n}' for n, t in wanted)} exists: nothing to validate")
    evidence.add("dnssec", [v.describe() for v in found])
    undecided = [v for v in found if v.security is Security.INDETERMINATE]
    if undecided:
        raise Inconclusive(f"{where}: DNSSEC not decidable: " + "; ".join(v.describe() for v in undecided))
    domain_keys = records.get(records.domain, "DNSKEY")
    stripped = [v for v in found if v.reason.startswith("no signatures returned")]
    if stripped and domain_keys.rrset is not None and domain_keys.rrsigs is None:
        # the zone publishes DNSKEYs, yet not even they come with signatures: the resolver drops them
        raise Inconclusive(f"{where}: the resolver {records.resolver} returns DNSKEY records without their "
                           "RRSIGs: it strips DNSSEC data, so the zone cannot be validated through it")
    unproven = [v.describe() for v in found if v.security is not Security.SECURE]
    assert not unproven, f"{where}: records not proven by DNSSEC: " + "; ".join(unproven)


@pytest.mark.requirement("DNS-DNSSEC-01")
def test_domain_zone_validates(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """Unsigned or bogus MX and policy records can be forged on the path: senders then deliver elsewhere,
    and DANE is switched off for the domain (RFC 7672 §2.2.1)."""
    records = _records(domain_policy, evidence)
    wanted = [key for key in dnssec_relied_on(records, mail_domain) if key[0].endswith(mail_domain)
              and key[1] in ("MX", "TXT")]
    _judge_dnssec(domain_policy, records, wanted, f"domain@{mail_domain}", evidence)


@pytest.mark.requirement("DNS-DNSSEC-02")
def test_mx_host_zones_validate(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """A TLSA record or an address that is not proven cannot protect the connection to the MX host."""
    records = _records(domain_policy, evidence)
    wanted = [key for key in dnssec_relied_on(records, mail_domain) if key[1] in ("A", "AAAA", "TLSA")]
    _judge_dnssec(domain_policy, records, wanted, f"domain@{mail_domain} (MX hosts {', '.join(records.mx_hosts)})",
                  evidence)


def _tlsa_of(records: DomainRecords, host: str) -> Lookup:
    return _answered(records.get(f"_25._tcp.{host}", "TLSA"))


@pytest.mark.requirement("DNS-DANE-01")
def test_mx_hosts_publish_secure_tlsa(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """Without a DNSSEC-secure TLSA set, a sender's STARTTLS to the MX can be stripped or intercepted unseen."""
    records = _records(domain_policy, evidence)
    if not records.mx_hosts:
        pytest.skip(f"domain@{mail_domain}: no MX host to look up TLSA records for")
    problems = []
    for host in records.mx_hosts:
        tlsa = _tlsa_of(records, host)
        evidence.add(f"tlsa.{host}", tlsa.texts or str(tlsa.status))
        if tlsa.status is not Status.ANSWER:
            problems.append(f"_25._tcp.{host} has no TLSA record ({tlsa.status})")
            continue
        proof = domain_policy.dnssec.get((tlsa.name, "TLSA"))
        if proof is None or proof.security is not Security.SECURE:
            if proof is not None and proof.security is Security.INDETERMINATE:
                raise Inconclusive(f"domain@{mail_domain}: {proof.describe()}")
            problems.append(f"_25._tcp.{host} TLSA is not DNSSEC-secure "
                            f"({proof.describe() if proof else domain_policy.anchor_error}): senders ignore it")
    assert not problems, f"domain@{mail_domain}: DANE: " + "; ".join(problems)


def _chains_of(served: ServedAt) -> tuple[tuple[bytes, ...], ...]:
    """The chains one MX address served; skip or inconclusive when the TLS family has the finding."""
    if served.outcome is Outcome.SERVER_ERROR and not served.own:
        pytest.skip(f"{served.endpoint}: no TLS handshake, so no certificate to hold the TLSA set against "
                    "(see STARTTLS-OFFER-01)")
    if served.outcome is Outcome.INCONCLUSIVE or served.outcome is Outcome.LOCAL_ERROR:
        raise Inconclusive(f"{served.where}: {served.reason}")
    return served.chains


@pytest.mark.requirement("DNS-DANE-02")
def test_tlsa_matches_the_served_certificate(mail_domain: str, domain_policy: DomainPolicy,
                                            mx_served: list[ServedAt], evidence: Evidence) -> None:
    """A TLSA set that matches nothing makes every DANE-validating sender defer mail to the domain: judged on
    every A/AAAA address of every MX host, since a sender may pick any of them."""
    records = _records(domain_policy, evidence)
    problems, judged = [], 0
    for served in mx_served:
        tlsa = _tlsa_of(records, served.host)
        if not tlsa.texts:
            continue
        usable = [r for r in tlsa_records(tlsa.rrset or ()) if r.usage not in UNUSABLE_FOR_SMTP]
        chains = _chains_of(served)
        if not chains:
            problems.append(f"{served.where}: no certificate to match ({served.reason or 'no TLS handshake'})")
        for chain in chains:
            judged += 1
            matched = chain_matches(usable, chain)
            evidence.add(f"dane.{served.host}.{served.address}", f"leaf SPKI SHA-256 {spki_sha256(chain[0])}; "
                                                                f"matched by {matched.text if matched else 'nothing'}")
            if matched is None:
                problems.append(f"{served.where}: no usable TLSA record of _25._tcp.{served.host} "
                                f"({'; '.join(tlsa.texts)}) matches the certificate served "
                                f"(leaf SPKI SHA-256 {spki_sha256(chain[0])})")
    if not judged and not problems:
        pytest.skip(f"domain@{mail_domain}: no TLSA record and served certificate to hold together (see DNS-DANE-01)")
    assert not problems, f"domain@{mail_domain}: DANE mismatch: " + "; ".join(problems)


@pytest.mark.requirement("DNS-DANE-03")
def test_no_pkix_tlsa_usages(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    records = _records(domain_policy, evidence)
    found = [(host, r) for host in records.mx_hosts for r in tlsa_records(_tlsa_of(records, host).rrset or ())]
    if not found:
        pytest.skip(f"domain@{mail_domain}: no TLSA records to judge (see DNS-DANE-01)")
    evidence.add("tlsa", [f"_25._tcp.{h}: {r.text}" for h, r in found])
    pkix = [f"_25._tcp.{h}: {r.text}" for h, r in found if r.usage in UNUSABLE_FOR_SMTP]
    assert not pkix, (f"domain@{mail_domain}: TLSA records with PKIX usages (0/1), which SMTP senders cannot use: "
                      + "; ".join(pkix) + ". Publish DANE-EE (3 1 1) or DANE-TA (2 x x) records instead")


def _rollover_ready(records: list[Tlsa]) -> bool:
    """RFC 7671 §8.1: the set still matches after the leaf key changes: a trust-anchor record, or a second
    DANE-EE record already naming the next key."""
    ee = {(r.selector, r.mtype, r.data) for r in records if r.usage == Usage.DANE_EE}
    return any(r.usage == Usage.DANE_TA for r in records) or len(ee) >= 2


@pytest.mark.requirement("DNS-DANE-04")
def test_tlsa_set_is_rollover_ready(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """With one DANE-EE record, the next key breaks delivery from every DANE sender until caches expire."""
    records = _records(domain_policy, evidence)
    sets = {host: tlsa_records(_tlsa_of(records, host).rrset or ()) for host in records.mx_hosts}
    sets = {host: found for host, found in sets.items() if found}
    if not sets:
        pytest.skip(f"domain@{mail_domain}: no TLSA records to judge (see DNS-DANE-01)")
    evidence.add("tlsa", [f"_25._tcp.{h}: {r.text}" for h, found in sets.items() for r in found])
    single = [f"_25._tcp.{h} ({'; '.join(r.text for r in found)})" for h, found in sets.items()
              if not _rollover_ready([r for r in found if r.usage not in UNUSABLE_FOR_SMTP])]
    assert not single, (f"domain@{mail_domain}: TLSA sets not ready for a key rollover: " + "; ".join(single)
                        + ". Publish a DANE-TA (2 0 1 / 2 1 1) record for the issuing CA, or a second 3 1 1 for "
                          "the next key, at least two TTLs before changing keys")
