"""The suite's own zone for the outbound lab: per scenario an MX set, the hosts' addresses and TLSA records,
signed with the lab's zone key (dnspython's ``sign_zone``, NSEC chain included); the ``bogus`` scenarios
get RRSIGs that no longer verify."""

from __future__ import annotations

import hashlib

import dns.dnssec
import dns.name
import dns.rdataset
import dns.rdatatype
import dns.zone

from conformance.probes.dns.dane import spki_sha256
from conformance.probes.outbound.pki import TTL, LabPki
from conformance.probes.outbound.scenarios import SCENARIOS, Scenario, Tlsa, mx_addresses

SIGNATURE_LIFETIME = 7 * 24 * 3600


def records(domain: str, address: str, leaves: dict[str, bytes],
            scenarios: tuple[Scenario, ...] = SCENARIOS) -> list[str]:
    """Zone-file lines; ``leaves`` maps each MX host name to the DER certificate it serves."""
    lines = [f"@ {TTL} IN SOA ns.{domain}. hostmaster.{domain}. 1 3600 600 86400 {TTL}",
             f"@ {TTL} IN NS ns.{domain}.", f"ns {TTL} IN A {address}"]
    addresses = mx_addresses(address, scenarios)
    for scenario in scenarios:
        for index, host in enumerate(scenario.hosts(domain)):
            lines.append(f"{scenario.domain(domain)}. {TTL} IN MX {10 * (index + 1)} {host}.")
            lines.append(f"{host}. {TTL} IN A {addresses[(scenario.name, index)]}")
            if scenario.tlsa is not Tlsa.NONE:
                digest = (spki_sha256(leaves[host]) if scenario.tlsa is Tlsa.MATCH
                          else hashlib.sha256(b"a key this host never served").hexdigest())
                lines.append(f"_25._tcp.{host}. {TTL} IN TLSA 3 1 1 {digest}")
    return lines


def build_zone(domain: str, address: str, pki: LabPki, leaves: dict[str, bytes],
               scenarios: tuple[Scenario, ...] = SCENARIOS) -> dns.zone.Zone:
    text = "\n".join(records(domain, address, leaves, scenarios)) + "\n"
    zone = dns.zone.from_text(text, origin=domain + ".", relativize=False)
    dns.dnssec.sign_zone(zone, keys=[(pki.zone_key, pki.dnskey)], lifetime=SIGNATURE_LIFETIME, dnskey_ttl=TTL)
    for scenario in scenarios:
        if scenario.bogus:
            _corrupt(zone, scenario.domain(domain) + ".", dns.rdatatype.MX)
            for host in scenario.hosts(domain):
                _corrupt(zone, f"_25._tcp.{host}.", dns.rdatatype.TLSA)
    return zone


def _corrupt(zone: dns.zone.Zone, name: str, covered: dns.rdatatype.RdataType) -> None:
    """Flip one bit of the RRSIG over ``name``/``covered``: the data no longer verifies."""
    with zone.writer() as txn:
        sigs = txn.get(name, dns.rdatatype.RRSIG, covered)
        if sigs is None:
            return
        broken = [sig.replace(signature=bytes([sig.signature[0] ^ 1]) + sig.signature[1:]) for sig in sigs]
        txn.replace(name, dns.rdataset.from_rdata_list(sigs.ttl, broken))
