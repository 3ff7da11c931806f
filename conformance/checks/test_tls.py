"""TLS protocol versions, cipher suites and extensions, from one raw scan per endpoint address.

The scan writes its own ClientHellos, so a version or suite the local OpenSSL refuses to offer is
still found if the server accepts it: a refusal in these checks is always the server's.
"""

from __future__ import annotations

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.tls import scans_of
from conformance.probes.tls.scan import TlsScan
from conformance.probes.tls.suites import Grade
from conformance.probes.tls.wire import TlsVersion
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint
from conformance.verdict import Inconclusive

ALL_SERVICES = ("mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
LEGACY_VERSIONS = frozenset({TlsVersion.SSL2, TlsVersion.SSL3, TlsVersion.TLS1_0, TlsVersion.TLS1_1})
BEFORE_TLS_1_3 = LEGACY_VERSIONS | {TlsVersion.TLS1_2}


def _completed_scans(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> list[TlsScan]:
    """Every address's scan, with its summary as evidence; inconclusive if any address could not be scanned.
    A server that never reaches a TLS handshake is the finding of STARTTLS-OFFER-01 / TLS-IMPLICIT-01."""
    attempts = scans_of(tls_scans, endpoint)
    for failed in (a for a in attempts if a.outcome is Outcome.SERVER_ERROR):
        evidence.attach(failed)  # type: ignore[arg-type]
        pytest.skip(f"{endpoint}: no TLS to judge ({failed.reason}); see STARTTLS-OFFER-01 / TLS-IMPLICIT-01")
    scans = [evidence.require(a) for a in attempts]
    if not scans:
        pytest.skip(f"{endpoint}: no scan")
    for scan in scans:
        evidence.add(f"scan[{scan.address}]", scan.summary())
        evidence.add(f"versions[{scan.address}]", [str(v) for v in scan.accepted_versions])
        evidence.add(f"suites[{scan.address}]", [s.name for s in scan.all_suites])
    if not any(scan.accepted_versions for scan in scans):
        for scan in scans:
            _unsettled(scan)  # answered, but no handshake completed: not the same as "no TLS"
        pytest.skip(f"{endpoint}: no TLS at all (see STARTTLS-OFFER-01 / TLS-IMPLICIT-01)")
    return scans


def _undetermined(scan: TlsScan, what: str) -> None:
    raise Inconclusive(f"{scan.endpoint_id} [{scan.address}]: could not determine {what}: "
                       + ("; ".join(scan.inconclusive) or "no answer"))


def _unsettled(scan: TlsScan, versions: frozenset[TlsVersion] | None = None, *, suites: bool = False) -> None:
    """Inconclusive if a version in scope (all if None), or with ``suites`` a version's suite list, is not
    settled: a pass needs evidence for its whole scope, a ServerHello without a completed handshake is none."""
    doubts = [f"{v}: {why}" for v, why in sorted(scan.unsettled_versions.items())
              if versions is None or v in versions]
    doubts += [f"{v} suites: {why}" for v, why in sorted(scan.unsettled_suites.items()) if suites]
    if doubts:
        raise Inconclusive(f"{scan.endpoint_id} [{scan.address}]: not settled by a completed handshake: "
                           + "; ".join(doubts))


def _only_tls13(scan: TlsScan) -> bool:
    """Nothing but TLS 1.3 is accepted, and no older version is left unsettled."""
    return scan.accepted_versions <= {TlsVersion.TLS1_3} and not set(scan.unsettled_versions) - {TlsVersion.TLS1_3}


def _versions(versions: frozenset[TlsVersion]) -> str:
    return ", ".join(str(v) for v in sorted(versions))


@pytest.mark.requirement("TLS-VER-01")
@pytest.mark.service(*ALL_SERVICES)
def test_no_protocol_below_tls_1_2(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]],
                                   evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        legacy = scan.accepted_versions & LEGACY_VERSIONS
        assert not legacy, (f"{endpoint} [{scan.address}]: accepts {_versions(legacy)}; disable every protocol "
                            f"below TLS 1.2 (RFC 8996)")
        _unsettled(scan, LEGACY_VERSIONS)


@pytest.mark.requirement("TLS-VER-02")
@pytest.mark.service(*ALL_SERVICES)
def test_tls_1_2_supported(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        if TlsVersion.TLS1_2 not in scan.accepted_versions:
            _unsettled(scan, frozenset({TlsVersion.TLS1_2}))
        assert TlsVersion.TLS1_2 in scan.accepted_versions, (
            f"{endpoint} [{scan.address}]: does not accept TLS 1.2 (accepts {_versions(scan.accepted_versions)}); "
            f"senders without TLS 1.3 will fall back to cleartext or fail")


@pytest.mark.requirement("TLS-VER-03")
@pytest.mark.service(*ALL_SERVICES)
def test_tls_1_3_supported(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        # Post-quantum readiness is reported, not judged: no stack here can serve ML-KEM yet (issue 16).
        evidence.add(f"post_quantum[{scan.address}]", scan.post_quantum or "not probed: no TLS 1.3 answer")
        if TlsVersion.TLS1_3 not in scan.accepted_versions:
            _unsettled(scan, frozenset({TlsVersion.TLS1_3}))
        assert TlsVersion.TLS1_3 in scan.accepted_versions, (
            f"{endpoint} [{scan.address}]: does not accept TLS 1.3 (accepts {_versions(scan.accepted_versions)})")


@pytest.mark.requirement("TLS-SUITE-01")
@pytest.mark.service(*ALL_SERVICES)
def test_no_broken_cipher_suites(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]],
                                 evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        broken = sorted((s for s in scan.all_suites if s.grade is Grade.INSECURE), key=lambda s: s.name)
        assert not broken, (f"{endpoint} [{scan.address}]: accepts broken suites: "
                            + "; ".join(f"{s.name} ({', '.join(w.value for w in s.weaknesses)})" for s in broken))
        _unsettled(scan, suites=True)


@pytest.mark.requirement("TLS-SUITE-02")
@pytest.mark.service(*ALL_SERVICES)
def test_only_forward_secret_aead(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]],
                                  evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        # Broken suites are TLS-SUITE-01's finding: one weakness, one failing check.
        legacy = sorted((s for s in scan.all_suites if s.grade is Grade.WEAK), key=lambda s: s.name)
        assert not legacy, (f"{endpoint} [{scan.address}]: accepts suites without forward-secret AEAD: "
                            + "; ".join(f"{s.name} ({', '.join(w.value for w in s.weaknesses)})" for s in legacy))
        _unsettled(scan, suites=True)


@pytest.mark.requirement("TLS-COMP-01")
@pytest.mark.service(*ALL_SERVICES)
def test_no_tls_compression(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        if _only_tls13(scan):
            continue  # TLS 1.3 has no compression at all
        if scan.compression is None:
            _undetermined(scan, "whether TLS compression is accepted")
        evidence.add(f"compression[{scan.address}]", scan.compression)
        assert not scan.compression, f"{endpoint} [{scan.address}]: accepts TLS compression (CRIME); disable it"
        _unsettled(scan, BEFORE_TLS_1_3)


@pytest.mark.requirement("TLS-RENEG-01")
@pytest.mark.service(*ALL_SERVICES)
def test_secure_renegotiation(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        if _only_tls13(scan):
            continue  # TLS 1.3 has no renegotiation
        if scan.secure_renegotiation is None:
            _undetermined(scan, "secure renegotiation support")
        evidence.add(f"secure_renegotiation[{scan.address}]", scan.secure_renegotiation)
        assert scan.secure_renegotiation, (
            f"{endpoint} [{scan.address}]: no renegotiation_info in the ServerHello (RFC 5746): "
            f"open to renegotiation prefix injection (CVE-2009-3555)")
        _unsettled(scan, BEFORE_TLS_1_3)
