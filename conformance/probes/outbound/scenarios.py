"""The scenarios of the outbound family: one subdomain of the test domain each, with its MX hosts' postures
and the DNS records a sender reads, and whether a conforming sender delivers there.

Every scenario has its own subdomain and MX addresses, so all of them run at once and the family takes
about one window (``[policy] outbound_window``), not the sum of them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum


class Posture(StrEnum):
    """How one lab MX host behaves towards the gateway."""

    GOOD = "STARTTLS with a lab-CA certificate for its name"
    SELF_SIGNED = "STARTTLS with a self-signed certificate"
    NO_STARTTLS = "no STARTTLS offered"
    TEMPFAIL_FIRST = "451 to the first DATA, then 250"
    DOWN = "421 to every connection (a host that is down)"


class Tlsa(StrEnum):
    NONE = "none"
    MATCH = "match"          # 3 1 1 of the certificate the MX host serves
    MISMATCH = "mismatch"    # 3 1 1 of some other key


@dataclass(frozen=True)
class Scenario:
    name: str
    mx: tuple[Posture, ...]             # MX hosts in preference order
    tlsa: Tlsa = Tlsa.NONE
    bogus: bool = False                 # the MX and TLSA signatures do not verify
    deliver: bool = True                # a conforming sender delivers (else: it must not)

    def domain(self, base: str) -> str:
        return f"{self.name}.{base}"

    def hosts(self, base: str) -> tuple[str, ...]:
        return tuple(f"mx{i + 1}.{self.domain(base)}" for i in range(len(self.mx)))


SCENARIOS = (
    Scenario("starttls", (Posture.GOOD,)),
    Scenario("dane-match", (Posture.GOOD,), Tlsa.MATCH),
    Scenario("dane-mismatch", (Posture.GOOD,), Tlsa.MISMATCH, deliver=False),
    Scenario("dane-notls", (Posture.NO_STARTTLS,), Tlsa.MATCH, deliver=False),
    Scenario("dnssec-bogus", (Posture.GOOD,), Tlsa.MATCH, bogus=True, deliver=False),
    Scenario("self-signed", (Posture.SELF_SIGNED,)),
    Scenario("tempfail", (Posture.TEMPFAIL_FIRST,)),
    Scenario("backup", (Posture.DOWN, Posture.GOOD)),
)
BY_NAME = {s.name: s for s in SCENARIOS}


def mx_addresses(address: str, scenarios: tuple[Scenario, ...] = SCENARIOS) -> dict[tuple[str, int], str]:
    """(scenario, MX index) -> the IPv4 address its MX host listens on: ``address`` + 1, + 2, ..."""
    base = ipaddress.IPv4Address(address)
    pairs = [(s.name, i) for s in scenarios for i in range(len(s.mx))]
    return {pair: str(base + n + 1) for n, pair in enumerate(pairs)}
