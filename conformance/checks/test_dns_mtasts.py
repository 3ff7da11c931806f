"""MTA-STS (RFC 8461) of the mail domain: the STS record, the policy its HTTPS host serves, and that policy held
against the MX set and the certificates the TLS family's handshakes saw on each MX (no extra connection).

Part of the dns family: opt-in by naming the domain (``[target] domain``); ``mta_sts_address`` sends the
policy fetch to a lab address while the name (SNI, certificate) stays ``mta-sts.<domain>``.
"""

from __future__ import annotations

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.dns import DomainPolicy
from conformance.fixtures.tls import Certificates
from conformance.probes.dns.dane import spki_sha256
from conformance.probes.dns.mtasts import StsPolicy, mx_matches, parse_policy, parse_sts_record
from conformance.probes.dns.policy import RecordError
from conformance.probes.dns.records import DomainRecords
from conformance.probes.wire.outcome import Outcome
from conformance.target import Service, Target
from conformance.verdict import Inconclusive


def _records(policy: DomainPolicy, evidence: Evidence) -> DomainRecords:
    return evidence.require(policy.records)


def _sts_record(records: DomainRecords, domain: str, evidence: Evidence) -> str | None:
    """The one STS record's id; None when the domain publishes none. AssertionError when it is broken."""
    found, texts = records.txt(f"_mta-sts.{domain}", "v=STSv1")
    if not found.decisive:
        raise Inconclusive(f"domain@{domain}: DNS: {found.describe()}")
    evidence.add("mta-sts.record", texts or str(found.status))
    if not texts:
        return None
    assert len(texts) == 1, (f"domain@{domain}: {len(texts)} STS records at _mta-sts.{domain}: senders then "
                             "assume no MTA-STS at all (RFC 8461 §3.1)")
    try:
        return parse_sts_record(texts[0])
    except RecordError as exc:
        raise AssertionError(f"domain@{domain}: STS record at _mta-sts.{domain} is invalid: {exc}") from None


def _policy(domain_policy: DomainPolicy, domain: str, evidence: Evidence, *, judge: bool = False) -> StsPolicy:
    """The fetched and parsed policy. ``judge``: a broken fetch or policy fails (DNS-MTASTS-01 does that);
    otherwise it skips, pointing there. No STS record skips; no answer in time is inconclusive."""
    records = _records(domain_policy, evidence)
    if _sts_record(records, domain, evidence) is None or domain_policy.mta_sts is None:
        pytest.skip(f"domain@{domain}: no MTA-STS record, so no policy to judge (see DNS-MTASTS-01)")
    fetch = domain_policy.mta_sts
    if fetch.outcome is Outcome.SERVER_ERROR and not judge:
        pytest.skip(f"domain@{domain}: no usable MTA-STS policy (see DNS-MTASTS-01): {fetch.reason}")
    fetched = evidence.require(fetch)
    try:
        policy = parse_policy(fetched.body)
    except RecordError as exc:
        if not judge:
            pytest.skip(f"domain@{domain}: the MTA-STS policy is malformed (see DNS-MTASTS-01): {exc}")
        raise AssertionError(f"domain@{domain}: the policy at {fetched.url} is malformed: {exc}") from None
    evidence.add("mta-sts.policy", " | ".join(policy.lines))
    return policy


@pytest.mark.requirement("DNS-MTASTS-01")
def test_mta_sts_policy_is_published(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """Without a policy senders fall back to opportunistic TLS that an attacker on the path can strip."""
    records = _records(domain_policy, evidence)
    policy_id = _sts_record(records, mail_domain, evidence)
    assert policy_id is not None, (f"domain@{mail_domain}: no 'v=STSv1; id=...' TXT record at _mta-sts.{mail_domain}: "
                                   "senders do not look for an MTA-STS policy (RFC 8461 §3.1)")
    _policy(domain_policy, mail_domain, evidence, judge=True)


@pytest.mark.requirement("DNS-MTASTS-02")
def test_mta_sts_policy_covers_every_mx(mail_domain: str, target: Target, domain_policy: DomainPolicy,
                                        certificates: dict[str, Certificates], evidence: Evidence) -> None:
    """A policy-conforming sender refuses an MX the policy does not name, or one whose certificate is not
    valid for its name (RFC 8461 §4.1, §4.2): in enforce mode that mail is not delivered."""
    policy = _policy(domain_policy, mail_domain, evidence)
    records = domain_policy.records.result
    assert records is not None
    if not records.mx_hosts:
        pytest.skip(f"domain@{mail_domain}: no MX host to hold the policy against")
    mx_line = " | ".join(f"mx: {p}" for p in policy.mx) or "no mx line"
    problems = [f"MX {host} matches no mx pattern of the policy ({mx_line})"
                for host in records.mx_hosts if not any(mx_matches(p, host) for p in policy.mx)]
    for host in records.mx_hosts:
        problems += _certificate_problems(host, target, certificates, evidence)
    assert not problems, f"domain@{mail_domain}: MTA-STS: " + "; ".join(problems)


def _certificate_problems(host: str, target: Target, certificates: dict[str, Certificates],
                          evidence: Evidence) -> list[str]:
    problems = []
    for endpoint in (e for e in target.endpoints_for(Service.MX) if e.host.rstrip(".").lower() == host):
        found = certificates[endpoint.id]
        if found.default.outcome is Outcome.SERVER_ERROR:
            pytest.skip(f"{endpoint}: no TLS handshake, so no certificate to judge (see STARTTLS-OFFER-01)")
        result = found.default.result
        if result is None or not result.peer_chain_der:
            raise Inconclusive(f"{endpoint}: {found.default.reason or 'no certificate seen'}")
        where = f"MX {host} ({endpoint} at {endpoint.address or endpoint.host})"
        spki = spki_sha256(result.peer_chain_der[0])
        evidence.add(f"mta-sts.cert.{endpoint.id}", f"SPKI SHA-256 {spki}; "
                                                    f"{'valid' if result.verified else result.verify_error}")
        if not result.verified:
            problems.append(f"{where} serves a certificate not valid for its name ({result.verify_error}; "
                            f"SPKI SHA-256 {spki})")
    return problems


@pytest.mark.requirement("DNS-MTASTS-03")
def test_mta_sts_policy_is_enforced(mail_domain: str, domain_policy: DomainPolicy, evidence: Evidence) -> None:
    """In testing mode senders only report failures and deliver anyway: the policy protects nothing yet."""
    policy = _policy(domain_policy, mail_domain, evidence)
    assert policy.mode == "enforce", (f"domain@{mail_domain}: the MTA-STS policy says '{policy.line_for('mode')}': "
                                      "senders deliver even when TLS to the MX fails; switch to 'mode: enforce' "
                                      "(RFC 8461 §5)")
