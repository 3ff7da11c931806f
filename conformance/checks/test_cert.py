"""The server certificate(s): trust path, names, validity, key size, signature hashes.

Every certificate the server holds is judged (its default one, and one per key type when it also
holds RSA and ECDSA certificates). A failed handshake is a different finding (STARTTLS-OFFER-01,
TLS-IMPLICIT-01): these checks then have nothing to judge and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.tls import Certificates, scans_of
from conformance.probes.tls.certs import CertReport
from conformance.probes.tls.scan import TlsScan
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint, Target

ALL_SERVICES = ("mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
MIN_BITS = {"RSA": 2048, "EC": 256, "DSA": 2048}


def _reports(endpoint: Endpoint, certificates: dict[str, Certificates], evidence: Evidence) -> Iterator[CertReport]:
    found = certificates[endpoint.id]
    if found.default.outcome is Outcome.SERVER_ERROR:
        pytest.skip(f"{endpoint}: no TLS handshake, so no certificate to judge: {found.default.reason}")
    evidence.require(found.default)
    reports = [r.cert for r in found.distinct() if r.cert is not None]
    if not reports:
        pytest.fail(f"{endpoint}: the server presented no parsable certificate", pytrace=False)
    for report in reports:
        leaf = report.leaf
        evidence.add(f"certificate[{leaf.key_type}]",
                     f"subject {leaf.subject}; issuer {leaf.issuer}; SAN {', '.join(report.san_dns) or 'none'}; "
                     f"not after {leaf.not_after:%Y-%m-%d}; {leaf.key_type} {leaf.key_bits} bit")
    yield from reports


def _label(endpoint: Endpoint, report: CertReport) -> str:
    return f"{endpoint}: {report.leaf.key_type} certificate '{report.leaf.subject}'"


@pytest.mark.requirement("CERT-CHAIN-01")
@pytest.mark.service(*ALL_SERVICES)
def test_chain_to_trust_anchor(endpoint: Endpoint, certificates: dict[str, Certificates],
                               tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    for scan in (a.result for a in scans_of(tls_scans, endpoint) if a.result is not None):
        stapled = scan.ocsp_stapling
        evidence.add(f"ocsp_stapling[{scan.address}]", "not determined (TLS 1.3 only)" if stapled is None else stapled)
    for report in _reports(endpoint, certificates, evidence):
        assert report.chains_to_trust, (
            f"{_label(endpoint, report)} does not verify: {report.trust_reason}; serve the full chain from a CA "
            f"senders trust (or add your private CA to the target's trust_anchors)")


@pytest.mark.requirement("CERT-NAME-01")
@pytest.mark.service(*ALL_SERVICES)
def test_name_matches_host(endpoint: Endpoint, certificates: dict[str, Certificates], evidence: Evidence) -> None:
    for report in _reports(endpoint, certificates, evidence):
        misses = [n.reason for n in report.names if not n.matched]
        assert report.names and not misses, f"{_label(endpoint, report)}: " + "; ".join(misses or ["no names judged"])


@pytest.mark.requirement("CERT-EXPIRY-01")
@pytest.mark.service(*ALL_SERVICES)
def test_within_validity(endpoint: Endpoint, certificates: dict[str, Certificates], evidence: Evidence) -> None:
    for report in _reports(endpoint, certificates, evidence):
        assert not report.expired, (
            f"{_label(endpoint, report)} expired on {report.leaf.not_after:%Y-%m-%d} "
            f"({-report.days_to_expiry} days ago); renew it")
        assert not report.not_yet_valid, (
            f"{_label(endpoint, report)} is not valid before {report.leaf.not_before:%Y-%m-%d %H:%M} UTC")


@pytest.mark.requirement("CERT-EXPIRY-02")
@pytest.mark.service(*ALL_SERVICES)
def test_not_expiring_soon(endpoint: Endpoint, certificates: dict[str, Certificates], target: Target,
                           evidence: Evidence) -> None:
    warn = target.policy.cert_expiry_warning_days
    judged = 0
    for report in _reports(endpoint, certificates, evidence):
        evidence.add(f"days_to_expiry[{report.leaf.key_type}]", report.days_to_expiry)
        if report.expired or report.not_yet_valid:
            continue  # CERT-EXPIRY-01 reports it
        judged += 1
        assert report.days_to_expiry >= warn, (
            f"{_label(endpoint, report)} expires in {report.days_to_expiry} days "
            f"({report.leaf.not_after:%Y-%m-%d}), inside the {warn}-day warning period; renew it now")
    if not judged:  # no certificate inside its validity: nothing this check can vouch for
        pytest.skip(f"{endpoint}: no certificate within its validity period to judge; see CERT-EXPIRY-01")


@pytest.mark.requirement("CERT-KEY-01")
@pytest.mark.service(*ALL_SERVICES)
def test_key_strength(endpoint: Endpoint, certificates: dict[str, Certificates], evidence: Evidence) -> None:
    for report in _reports(endpoint, certificates, evidence):
        minimum = MIN_BITS.get(report.key_type.split()[0], 0)
        assert report.key_bits >= minimum, (
            f"{_label(endpoint, report)} has a {report.key_bits}-bit {report.key_type} key; "
            f"at least {minimum} bits are required")


@pytest.mark.requirement("CERT-SIG-01")
@pytest.mark.service(*ALL_SERVICES)
def test_no_weak_signature_hash(endpoint: Endpoint, certificates: dict[str, Certificates], evidence: Evidence) -> None:
    for report in _reports(endpoint, certificates, evidence):
        assert not report.weak_signatures, (
            f"{_label(endpoint, report)}: chain signed with a broken hash: {'; '.join(report.weak_signatures)}; "
            f"reissue with SHA-256 or better")
