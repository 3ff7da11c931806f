"""Known TLS implementation flaws, each probed with one hand-written exchange inside the raw scan.

A leak is its own evidence: a Heartbleed answer fails the check even when no handshake completes.
"""

from __future__ import annotations

import pytest

from conformance.checks.test_tls import ALL_SERVICES
from conformance.evidence import Evidence
from conformance.fixtures.tls import scans_of
from conformance.probes.tls.renegotiation import Renegotiation
from conformance.probes.tls.scan import TlsScan
from conformance.probes.tls.wire import TlsVersion
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint
from conformance.verdict import Inconclusive


def _scans(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> list[TlsScan]:
    attempts = scans_of(tls_scans, endpoint)
    for failed in (a for a in attempts if a.outcome is Outcome.SERVER_ERROR):
        evidence.attach(failed)  # type: ignore[arg-type]
        pytest.skip(f"{endpoint}: no TLS to judge ({failed.reason}); see STARTTLS-OFFER-01 / TLS-IMPLICIT-01")
    return [evidence.require(a) for a in attempts]


@pytest.mark.requirement("TLS-HEARTBLEED-01")
@pytest.mark.service(*ALL_SERVICES)
def test_no_heartbleed(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    scans = _scans(endpoint, tls_scans, evidence)
    for scan in scans:
        if scan.heartbleed is not None:
            evidence.add(f"heartbleed[{scan.address}]", scan.heartbleed.reason)
            assert not scan.heartbleed.vulnerable, (
                f"{endpoint} [{scan.address}]: Heartbleed (CVE-2014-0160): the server {scan.heartbleed.reason}; "
                "update OpenSSL")
    for scan in scans:
        if scan.heartbleed is None and scan.accepted_versions - {TlsVersion.TLS1_3}:
            raise Inconclusive(f"{endpoint} [{scan.address}]: the Heartbleed probe got no answer: "
                               + ("; ".join(i for i in scan.inconclusive if i.startswith("Heartbleed")) or "no hello"))
        if scan.heartbleed is not None and scan.heartbleed.vulnerable is None:
            raise Inconclusive(f"{endpoint} [{scan.address}]: {scan.heartbleed.reason}")
    if all(scan.heartbleed is None for scan in scans):
        pytest.skip(f"{endpoint}: no TLS 1.0-1.2, where heartbeats were exploitable")


@pytest.mark.requirement("TLS-CCS-01")
@pytest.mark.service(*ALL_SERVICES)
def test_no_ccs_injection(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    scans = _scans(endpoint, tls_scans, evidence)
    for scan in scans:
        if scan.ccs_injection is not None:
            evidence.add(f"ccs_injection[{scan.address}]", scan.ccs_injection.reason)
            assert not scan.ccs_injection.vulnerable, (
                f"{endpoint} [{scan.address}]: OpenSSL CCS injection (CVE-2014-0224): the server "
                f"{scan.ccs_injection.reason}; update OpenSSL")
    for scan in scans:
        if scan.ccs_injection is None and scan.accepted_versions - {TlsVersion.TLS1_3}:
            raise Inconclusive(f"{endpoint} [{scan.address}]: the CCS injection probe got no answer: "
                               + ("; ".join(i for i in scan.inconclusive if i.startswith("CCS injection"))
                                  or "no hello"))
        if scan.ccs_injection is not None and scan.ccs_injection.vulnerable is None:
            raise Inconclusive(f"{endpoint} [{scan.address}]: {scan.ccs_injection.reason}")
    if all(scan.ccs_injection is None for scan in scans):
        pytest.skip(f"{endpoint}: no TLS 1.0-1.2, where an early ChangeCipherSpec was exploitable")


@pytest.mark.requirement("TLS-ROBOT-01")
@pytest.mark.service(*ALL_SERVICES)
def test_no_robot_oracle(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    """A server refusing RSA key exchange passes on that refusal, seen by the probe's own hello."""
    scans = _scans(endpoint, tls_scans, evidence)
    for scan in scans:
        if scan.robot is not None:
            evidence.add(f"robot[{scan.address}]", scan.robot.reason)
            assert not scan.robot.vulnerable, (
                f"{endpoint} [{scan.address}]: ROBOT (Bleichenbacher oracle): the server {scan.robot.reason}; "
                "update the TLS stack or disable the TLS_RSA_* suites")
    for scan in scans:
        if scan.robot is None and scan.accepted_versions - {TlsVersion.TLS1_3}:
            raise Inconclusive(f"{endpoint} [{scan.address}]: the ROBOT probe got no answer: "
                               + ("; ".join(i for i in scan.inconclusive if i.startswith("ROBOT")) or "no hello"))
        if scan.robot is not None and scan.robot.vulnerable is None:
            raise Inconclusive(f"{endpoint} [{scan.address}]: {scan.robot.reason}")
    if all(scan.robot is None for scan in scans):
        pytest.skip(f"{endpoint}: no TLS 1.0-1.2, where RSA key exchange exists")


@pytest.mark.requirement("TLS-0RTT-01")
@pytest.mark.service(*ALL_SERVICES)
def test_no_early_data(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    """Session resumption is reported as evidence; only 0-RTT fails."""
    scans = _scans(endpoint, tls_scans, evidence)
    for scan in scans:
        if scan.session_tickets is not None:
            evidence.add(f"session_tickets[{scan.address}]", str(scan.session_tickets))
            assert not scan.session_tickets.max_early_data, (
                f"{endpoint} [{scan.address}]: TLS 1.3 0-RTT: the server's session tickets accept "
                f"{scan.session_tickets.max_early_data} bytes of early data, where mail commands are replayable "
                "(RFC 8446 E.5: no profile defines 0-RTT for SMTP, IMAP or POP3); set max_early_data to 0")
    for scan in scans:
        if scan.session_tickets is None and TlsVersion.TLS1_3 in scan.accepted_versions:
            raise Inconclusive(f"{endpoint} [{scan.address}]: the session-ticket probe got no answer: "
                               + ("; ".join(i for i in scan.inconclusive if i.startswith("TLS 1.3 session"))
                                  or "no hello"))
    if all(scan.session_tickets is None for scan in scans):
        pytest.skip(f"{endpoint}: no TLS 1.3, where 0-RTT exists")


@pytest.mark.requirement("TLS-RENEG-02")
@pytest.mark.service(*ALL_SERVICES)
def test_client_renegotiation_refused(endpoint: Endpoint, renegotiations: dict[str, Attempt[Renegotiation]],
                                      tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    """One TLS 1.2 connection asks for renegotiations; a server speaking TLS 1.3 alone passes on the scan's word."""
    probe = renegotiations[endpoint.id]
    evidence.attach(probe)  # type: ignore[arg-type]
    if probe.outcome is Outcome.COMPLETED and probe.result is not None:
        evidence.add("renegotiation", str(probe.result))
        assert not probe.result.accepted, (
            f"{endpoint.id}: the server accepted a client-initiated renegotiation ({probe.result.handshakes} "
            "handshakes on one connection): each costs it a full handshake, a DoS lever (CVE-2011-1473); "
            "refuse client-initiated renegotiation (OpenSSL 3 does unless SSL_OP_ALLOW_CLIENT_RENEGOTIATION)")
        return
    scans = scans_of(tls_scans, endpoint)
    if any(a.outcome is Outcome.SERVER_ERROR for a in scans):
        _scans(endpoint, tls_scans, evidence)  # skips: no TLS to judge
    if _tls13_only(scans):
        evidence.add("renegotiation", "TLS 1.3 only, renegotiation does not exist there")
        return
    raise Inconclusive(f"{probe.endpoint}: {probe.reason}")  # the words every check of a dead endpoint shares


def _tls13_only(attempts: list[Attempt[TlsScan]]) -> bool:
    """Every address completed TLS 1.3 and settled every older version as refused."""
    scans = [a.result for a in attempts if a.result is not None]
    return bool(scans) and len(scans) == len(attempts) and all(
        s.accepted_versions == {TlsVersion.TLS1_3} and not s.unsettled_versions for s in scans)
