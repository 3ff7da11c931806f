"""The outbound lab's zone: TLSA records sit where a DANE sender looks for them, ``_<port>._tcp.<host>``
(RFC 6698 §3), for the port the lab MX hosts really listen on."""

from __future__ import annotations

import pytest

from conformance.probes.outbound.pki import LabPki
from conformance.probes.outbound.scenarios import BY_NAME
from conformance.probes.outbound.zone import records

pytestmark = pytest.mark.unit

DOMAIN = "lab.test"


@pytest.mark.parametrize("port", [25, 2525])
def test_tlsa_owner_names_follow_the_mx_port(port: int) -> None:
    scenarios = (BY_NAME["dane-match"], BY_NAME["dane-mismatch"])
    pki = LabPki.load_or_create(None, DOMAIN)
    leaves = {host: pki.issue(host).leaf_der for s in scenarios for host in s.hosts(DOMAIN)}
    tlsa = [line.split()[0] for line in records(DOMAIN, "127.0.0.10", leaves, scenarios, port=port)
            if " TLSA " in line]
    assert tlsa == [f"_{port}._tcp.mx1.{s.name}.{DOMAIN}." for s in scenarios]
