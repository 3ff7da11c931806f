"""Parity: every node of a service has the same security posture. Attackers pick the weakest MX.

Passive: compares what the session probes already found (one TLS scan, one capability probe and one
set of handshakes per endpoint) between the endpoints of one service on different nodes. An endpoint
fails when it is weaker than a sibling: it accepts a TLS version or suite the sibling refuses, lacks
TLS 1.2/1.3 the sibling has, offers no STARTTLS where the sibling does, treats cleartext
authentication worse, or presents a certificate that does not verify where the sibling's does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.tls import Certificates, scans_of
from conformance.probes.imap.session import ImapCapabilities
from conformance.probes.pop3.session import Pop3Capabilities
from conformance.probes.smtp.session import SmtpCapabilities
from conformance.probes.tls.scan import TlsScan
from conformance.probes.tls.wire import TlsVersion
from conformance.probes.wire.config import CleartextAuth
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint, Target
from conformance.verdict import Inconclusive

ALL = ("mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
MODERN = frozenset({TlsVersion.TLS1_2, TlsVersion.TLS1_3})
# Worse is higher: how a server treated AUTH/LOGIN with throwaway credentials before TLS.
_CLEARTEXT_RANK = {CleartextAuth.NOT_TRIED: 0, CleartextAuth.REFUSED_FOR_TLS: 0, CleartextAuth.REFUSED: 1,
                   CleartextAuth.CREDENTIALS_CHECKED: 2, CleartextAuth.ACCEPTED: 3}


@dataclass(frozen=True)
class Posture:
    versions: frozenset[TlsVersion]
    suites: frozenset[str]
    starttls: bool | None          # None: implicit TLS (not applicable)
    cleartext_auth: CleartextAuth | None
    logindisabled: bool | None     # IMAP before TLS
    cert_verified: bool | None


def _unknown(attempt: Attempt[Any]) -> bool:
    """Could not connect, timed out, rate-limited: the posture is unknown. A server that broke the
    protocol has shown its posture (it is judged by what it did)."""
    return attempt.outcome not in (Outcome.COMPLETED, Outcome.SERVER_ERROR)


def _posture(endpoint: Endpoint, tls_scans: dict[str, Attempt[TlsScan]], capabilities: Mapping[str, Attempt[Any]],
             certs: dict[str, Certificates]) -> Posture | str:
    """The endpoint's posture, or why it cannot be known."""
    scans = scans_of(tls_scans, endpoint)
    unknown = [a for a in scans if _unknown(a)]
    if not scans or unknown:
        return unknown[0].reason if unknown else "no TLS scan"
    # A server that broke off before any TLS (no STARTTLS, plaintext on an implicit-TLS port) has a
    # posture too: no TLS at all, which is the same on every node or weaker than a sibling's.
    completed = [a.result for a in scans if a.result is not None]
    versions = frozenset(v for scan in completed for v in scan.accepted_versions)
    suites = frozenset(s.name for scan in completed for s in scan.all_suites)
    starttls = cleartext = logindisabled = None
    caps_attempt = capabilities.get(endpoint.id)
    if caps_attempt is None or _unknown(caps_attempt):
        return caps_attempt.reason if caps_attempt else "no capability probe"
    caps = caps_attempt.result  # None: the server broke the dialogue, compared by TLS alone
    if isinstance(caps, SmtpCapabilities):
        starttls = None if endpoint.implicit_tls else caps.starttls_offered
        cleartext = caps.cleartext_auth
    elif isinstance(caps, ImapCapabilities):
        starttls = None if endpoint.implicit_tls else caps.starttls_offered
        cleartext = caps.cleartext_login
        logindisabled = None if endpoint.implicit_tls else caps.logindisabled_before_tls
    elif isinstance(caps, Pop3Capabilities):
        starttls = None if endpoint.implicit_tls else caps.stls_offered
        cleartext = max((caps.cleartext.user_verdict, caps.cleartext.apop_verdict, caps.cleartext.auth_verdict),
                        key=_CLEARTEXT_RANK.__getitem__)
    cert = certs.get(endpoint.id)
    verified = cert.default.result.verified if cert and cert.default.result is not None else None
    return Posture(versions, suites, starttls, cleartext, logindisabled, verified)


def weaker_than(mine: Posture, other: Posture, other_name: str) -> list[str]:
    """How ``mine`` is weaker than ``other``, one phrase each ("accepts TLS 1.0, mx@node1 does not")."""
    found = []
    extra = mine.versions - other.versions
    if extra:
        found.append(f"accepts {', '.join(str(v) for v in sorted(extra))}, {other_name} does not")
    missing = (other.versions - mine.versions) & MODERN
    if missing:
        found.append(f"does not accept {', '.join(str(v) for v in sorted(missing))}, {other_name} does")
    extra_suites = mine.suites - other.suites
    if extra_suites:
        shown = sorted(extra_suites)
        found.append(f"accepts suite(s) {', '.join(shown[:6])}{' …' if len(shown) > 6 else ''}, {other_name} does not")
    if mine.starttls is False and other.starttls:
        found.append(f"does not offer STARTTLS, {other_name} does")
    if (mine.cleartext_auth is not None and other.cleartext_auth is not None
            and _CLEARTEXT_RANK[mine.cleartext_auth] > _CLEARTEXT_RANK[other.cleartext_auth]):
        found.append(f"treats authentication before TLS as '{mine.cleartext_auth}', {other_name} as "
                     f"'{other.cleartext_auth}'")
    if mine.logindisabled is False and other.logindisabled:
        found.append(f"does not advertise LOGINDISABLED before TLS, {other_name} does")
    if mine.cert_verified is False and other.cert_verified:
        found.append(f"presents a certificate that does not verify, {other_name}'s does")
    return found


@pytest.mark.requirement("FAIL-PARITY-01")
@pytest.mark.service(*ALL)
def test_no_weaker_node(endpoint: Endpoint, target: Target, tls_scans: dict[str, Attempt[TlsScan]],
                        smtp_capabilities: dict[str, Attempt[SmtpCapabilities]],
                        imap_capabilities: dict[str, Attempt[ImapCapabilities]],
                        pop3_capabilities: dict[str, Attempt[Pop3Capabilities]],
                        certificates: dict[str, Certificates], evidence: Evidence) -> None:
    capabilities: dict[str, Attempt[Any]] = {**smtp_capabilities, **imap_capabilities, **pop3_capabilities}
    siblings = [e for e in target.endpoints_for(endpoint.service) if e.node != endpoint.node]
    if not siblings:
        pytest.skip(f"only one node serves {endpoint.service}: nothing to compare (see FAIL-REDUNDANT-01)")
    mine = _posture(endpoint, tls_scans, capabilities, certificates)
    if isinstance(mine, str):
        raise Inconclusive(f"{endpoint}: posture unknown: {mine}")
    evidence.add("versions", [str(v) for v in mine.versions])
    evidence.add("suites", len(mine.suites))
    problems: list[str] = []
    compared = []
    for sibling in siblings:
        theirs = _posture(sibling, tls_scans, capabilities, certificates)
        if isinstance(theirs, str):
            evidence.add(f"not_compared.{sibling.id}", theirs)
            continue
        compared.append(sibling.id)
        problems += weaker_than(mine, theirs, f"{sibling.id} ({sibling.host})")
    if not compared:
        raise Inconclusive(f"{endpoint}: no sibling node's posture is known to compare with")
    evidence.add("compared_with", compared)
    assert not problems, f"{endpoint.host} ({endpoint.id}) is weaker than its sibling node: " + "; ".join(problems)
