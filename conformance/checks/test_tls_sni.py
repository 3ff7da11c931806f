"""A handshake without SNI: many SMTP senders send no server_name (its use is local policy, RFC 9325 3.7),
so an MX that refuses such a hello, or answers it with another host's certificate, loses their mail or
their authenticated TLS.
"""

from __future__ import annotations

import pytest

from conformance.checks.test_tls import ALL_SERVICES
from conformance.evidence import Evidence
from conformance.fixtures.tls import Certificates, scans_of
from conformance.probes.tls.scan import TlsScan
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint
from conformance.verdict import Inconclusive


@pytest.mark.requirement("TLS-SNI-01")
@pytest.mark.service(*ALL_SERVICES)
def test_no_sni_needed(endpoint: Endpoint, certificates: dict[str, Certificates],
                       tls_scans: dict[str, Attempt[TlsScan]], evidence: Evidence) -> None:
    found = certificates[endpoint.id]
    if found.default.outcome is Outcome.SERVER_ERROR:
        pytest.skip(f"{endpoint}: no TLS handshake at all: {found.default.reason}")
    with_sni = evidence.require(found.default)
    # The raw scan's hello without server_name tells a refusal apart from a lost connection.
    for scan in (s.result for s in scans_of(tls_scans, endpoint) if s.result is not None):
        assert not scan.sni_refusal, (f"{endpoint} [{scan.address}]: refuses a hello without server_name (SNI), "
                                      f"which senders need not send: {scan.sni_refusal}")
    if found.without_sni is None:
        raise Inconclusive(f"{endpoint}: no handshake without SNI was tried")
    evidence.attach(found.without_sni)  # type: ignore[arg-type]
    if found.without_sni.outcome is Outcome.SERVER_ERROR:
        pytest.fail(f"{endpoint}: refuses a handshake without server_name (SNI), which senders need not send: "
                    f"{found.without_sni.reason}", pytrace=False)
    without = evidence.require(found.without_sni)
    same = without.peer_chain_der[:1] == with_sni.peer_chain_der[:1]
    evidence.add("certificate_without_sni", "the same as with SNI" if same else "a different one")
    if same:
        return
    names = [n for n in without.cert.names if not n.matched] if without.cert else []
    assert without.cert is not None and not names, (
        f"{endpoint}: without SNI the server presents another certificate, not valid for {endpoint.host}: "
        + ("; ".join(n.reason for n in names) or without.verify_error or "unparsable"))
