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
from conformance.probes.outbound.scenarios import SCENARIOS, Scenario, Sts, Tlsa, mx_addresses, report_address

SIGNATURE_LIFETIME = 7 * 24 * 3600


def tlsa_owner(host: str, port: int) -> str:
    """Where a DANE client looks for ``host``'s TLSA records: ``_<port>._tcp.<host>`` (RFC 6698 §3), so an MX
    port other than 25 moves them."""
    return f"_{port}._tcp.{host}."


def records(domain: str, address: str, leaves: dict[str, bytes],
            scenarios: tuple[Scenario, ...] = SCENARIOS, policy_id: str = "1", port: int = 25) -> list[str]:
    """Zone-file lines; ``leaves`` maps each MX host name to the DER certificate it serves on ``port``. The
    MTA-STS policy hosts live on ``address`` (beside the lab DNS); ``policy_id`` changes per run (RFC 8461 §3.1)."""
    lines = [f"@ {TTL} IN SOA ns.{domain}. hostmaster.{domain}. 1 3600 600 86400 {TTL}",
             f"@ {TTL} IN NS ns.{domain}.", f"ns {TTL} IN A {address}"]
    addresses = mx_addresses(address, scenarios)
    for scenario in scenarios:
        lines.append(f'_smtp._tls.{scenario.domain(domain)}. {TTL} IN TXT "v=TLSRPTv1; rua=mailto:{report_address(domain)}"')
        if scenario.sts is not Sts.NONE:
            lines.append(f'_mta-sts.{scenario.domain(domain)}. {TTL} IN TXT "v=STSv1; id={policy_id}"')
            lines.append(f"mta-sts.{scenario.domain(domain)}. {TTL} IN A {address}")
        for index, host in enumerate(scenario.hosts(domain)):
            lines.append(f"{scenario.domain(domain)}. {TTL} IN MX {10 * (index + 1)} {host}.")
            lines.append(f"{host}. {TTL} IN A {addresses[(scenario.name, index)]}")
            if scenario.tlsa is not Tlsa.NONE:
                digest = (spki_sha256(leaves[host]) if scenario.tlsa is Tlsa.MATCH
                          else hashlib.sha256(b"a key this host never served").hexdigest())
                lines.append(f"{tlsa_owner(host, port)} {TTL} IN TLSA 3 1 1 {digest}")
    return lines


def build_zone(domain: str, address: str, pki: LabPki, leaves: dict[str, bytes],
               scenarios: tuple[Scenario, ...] = SCENARIOS, policy_id: str = "1", port: int = 25) -> dns.zone.Zone:
    text = "\n".join(records(domain, address, leaves, scenarios, policy_id, port)) + "\n"
    zone = dns.zone.from_text(text, origin=domain + ".", relativize=False)
    dns.dnssec.sign_zone(zone, keys=[(pki.zone_key, pki.dnskey)], lifetime=SIGNATURE_LIFETIME, dnskey_ttl=TTL)
    for scenario in scenarios:
        if scenario.bogus:
            _corrupt(zone, scenario.domain(domain) + ".", dns.rdatatype.MX)
            for host in scenario.hosts(domain):
                _corrupt(zone, tlsa_owner(host, port), dns.rdatatype.TLSA)
    return zone


def _corrupt(zone: dns.zone.Zone, name: str, covered: dns.rdatatype.RdataType) -> None:
    """Flip one bit of the RRSIG over ``name``/``covered``: the data no longer verifies."""
    with zone.writer() as txn:
        sigs = txn.get(name, dns.rdatatype.RRSIG, covered)
        if sigs is None:
            return
        broken = [sig.replace(signature=bytes([sig.signature[0] ^ 1]) + sig.signature[1:]) for sig in sigs]
        txn.replace(name, dns.rdataset.from_rdata_list(sigs.ttl, broken))
