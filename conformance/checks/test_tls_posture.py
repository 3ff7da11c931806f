"""TLS posture beyond versions and suites, from the same raw scan: downgrade protection, who orders the
cipher suites and how, and the strength of the key exchange.
"""

from __future__ import annotations

import pytest

from conformance.checks.test_tls import (
    ALL_SERVICES,
    BEFORE_TLS_1_3,
    _completed_scans,
    _undetermined,
    _unsettled,
)
from conformance.evidence import Evidence
from conformance.probes.tls.groups import KNOWN_WEAK_PRIMES, group_bits, is_finite_field
from conformance.probes.tls.scan import TlsScan
from conformance.probes.tls.suites import CipherSuite, Grade
from conformance.probes.tls.wire import TlsVersion
from conformance.probes.wire.outcome import Attempt
from conformance.target import Endpoint
from conformance.verdict import Inconclusive

MIN_CURVE_BITS = 224   # RFC 9325 4.5
MIN_FFDHE_BITS = 2048  # RFC 9325 4.5


def _names(suites: list[CipherSuite] | tuple[CipherSuite, ...]) -> str:
    return ", ".join(s.name for s in suites)


@pytest.mark.requirement("TLS-FALLBACK-01")
@pytest.mark.service(*ALL_SERVICES)
def test_fallback_scsv_honoured(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]],
                                evidence: Evidence) -> None:
    judged = False
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        tls_versions = {v for v in scan.accepted_versions if v >= TlsVersion.SSL3}
        if len(tls_versions) < 2:
            _unsettled(scan)  # an unsettled second version could still be a downgrade target
            continue
        if scan.fallback_scsv is None:
            _undetermined(scan, "whether TLS_FALLBACK_SCSV is honoured")
        evidence.add(f"fallback_scsv[{scan.address}]", scan.fallback_scsv)
        below = sorted(tls_versions)[-2]
        assert scan.fallback_scsv, (
            f"{endpoint} [{scan.address}]: a {below} hello carrying TLS_FALLBACK_SCSV was answered with a "
            f"handshake instead of the inappropriate_fallback alert (RFC 7507): downgrades go unnoticed")
        judged = True
    if not judged:
        pytest.skip(f"{endpoint}: one protocol version only, nothing to fall back to")


@pytest.mark.requirement("TLS-PREF-01")
@pytest.mark.service(*ALL_SERVICES)
def test_server_orders_suites_strong_first(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]],
                                           evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        firsts = {v: suites[0] for v, suites in scan.suites.items() if suites}
        evidence.add(f"first_choice[{scan.address}]", {str(v): s.name for v, s in firsts.items()})
        weak_first = {v: s for v, s in firsts.items()
                      if s.grade is not Grade.STRONG and any(o.grade is Grade.STRONG for o in scan.suites[v])}
        assert not weak_first, (f"{endpoint} [{scan.address}]: picks a suite without forward-secret AEAD although "
                                "it accepts one: " + "; ".join(f"{v}: {s.name}" for v, s in weak_first.items()))
        if any(len(suites) > 1 for suites in scan.suites.values()):
            if scan.server_preference is None:
                _undetermined(scan, "whether the server enforces its cipher-suite order")
            evidence.add(f"server_preference[{scan.address}]", scan.server_preference)
            assert scan.server_preference, (
                f"{endpoint} [{scan.address}]: follows the client's cipher-suite order; enforce the server's "
                "order with forward-secret AEAD suites first (RFC 9325 4.1, 4.2.1)")
        _unsettled(scan, suites=True)


@pytest.mark.requirement("TLS-PREF-02")
@pytest.mark.service(*ALL_SERVICES)
def test_legacy_suites_rank_last(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]],
                                 evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        for version, suites in sorted(scan.suites.items()):
            legacy = [s for s in suites if s.grade is not Grade.STRONG]
            strong = [s for s in suites if s.grade is Grade.STRONG]
            if not legacy or not strong:
                continue
            if scan.server_preference is False:
                pytest.fail(f"{endpoint} [{scan.address}]: {version} accepts {_names(legacy)} and lets the client "
                            "choose: any sender can get a legacy suite first", pytrace=False)
            rank = scan.legacy_rank.get(version)
            if rank is None:
                _undetermined(scan, f"where {version}'s legacy suites rank")
            evidence.add(f"legacy_rank[{scan.address}][{version}]", [s.name for s in rank or ()])
            assert not rank, (f"{endpoint} [{scan.address}]: {version} ranks {rank[0].name if rank else ''} above "
                              f"{_names(rank[1:] if rank else ())}; put every suite without forward-secret AEAD last")
        _unsettled(scan, suites=True)


def _weak_groups(scan: TlsScan) -> list[str]:
    found = [f"{g} ({group_bits(g)} bit)" for g in sorted(scan.groups)
             if group_bits(g) < (MIN_FFDHE_BITS if is_finite_field(g) else MIN_CURVE_BITS)]
    if scan.dhe_bits is not None and scan.dhe_bits < MIN_FFDHE_BITS:
        found.append(f"a {scan.dhe_bits}-bit DHE prime")
    found += [f"the DHE prime is {why}" for prime, why in KNOWN_WEAK_PRIMES.items() if prime in scan.dhe_primes]
    return found


@pytest.mark.requirement("TLS-KEX-01")
@pytest.mark.service(*ALL_SERVICES)
def test_key_exchange_strength(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]],
                               evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        evidence.add(f"groups[{scan.address}]", [str(g) for g in sorted(scan.groups)])
        evidence.add(f"dhe_bits[{scan.address}]", scan.dhe_bits)
        weak = _weak_groups(scan)
        assert not weak, (f"{endpoint} [{scan.address}]: weak key exchange: {'; '.join(weak)}; use curves of at "
                          f"least {MIN_CURVE_BITS} bits and DHE primes of at least {MIN_FFDHE_BITS} bits "
                          "(RFC 9325 4.5)")
        if not scan.groups and scan.dhe_bits is None:
            raise Inconclusive(f"{endpoint} [{scan.address}]: no key-exchange group was seen in any answer")
        _unsettled(scan, suites=True)


@pytest.mark.requirement("TLS-EMS-01")
@pytest.mark.service(*ALL_SERVICES)
def test_extended_master_secret(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]],
                                evidence: Evidence) -> None:
    judged = False
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        if TlsVersion.TLS1_2 not in scan.accepted_versions:
            _unsettled(scan, frozenset({TlsVersion.TLS1_2}))
            continue  # TLS 1.3 always binds the master secret to the handshake
        ems = scan.extended_master_secret.get(TlsVersion.TLS1_2)
        if ems is None:
            _undetermined(scan, "whether TLS 1.2 uses the extended master secret")
        evidence.add(f"extended_master_secret[{scan.address}]", ems)
        assert ems, (f"{endpoint} [{scan.address}]: TLS 1.2 ServerHello does not answer the extended_master_secret "
                     "extension (RFC 7627): open to the triple-handshake attack")
        judged = True
    if not judged:
        pytest.skip(f"{endpoint}: no TLS 1.2, so no extended master secret to negotiate")


@pytest.mark.requirement("TLS-ETM-01")
@pytest.mark.service(*ALL_SERVICES)
def test_encrypt_then_mac_for_cbc(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]],
                                  evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        cbc = sorted(s for s in scan.all_suites if "_CBC" in s.cipher)
        evidence.add(f"cbc_suites[{scan.address}]", [s.name for s in cbc])
        without = sorted(scan.cbc_without_etm)
        assert not without, (f"{endpoint} [{scan.address}]: CBC suites negotiated without encrypt-then-MAC "
                             f"(RFC 7366): {_names(without)}")
        _unsettled(scan, suites=True)


@pytest.mark.requirement("TLS-TRUNC-01")
@pytest.mark.service(*ALL_SERVICES)
def test_no_truncated_hmac(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    for scan in _completed_scans(endpoint, tls_scans, evidence):
        if scan.accepted_versions <= {TlsVersion.TLS1_3}:
            _unsettled(scan)
            continue  # TLS 1.3 has no truncated_hmac extension
        if scan.truncated_hmac is None:
            _undetermined(scan, "whether truncated HMAC is accepted")
        evidence.add(f"truncated_hmac[{scan.address}]", scan.truncated_hmac)
        assert not scan.truncated_hmac, (f"{endpoint} [{scan.address}]: accepts the truncated_hmac extension "
                                         "(RFC 9325 4.6 forbids it: 80-bit MACs)")
        _unsettled(scan, BEFORE_TLS_1_3)
