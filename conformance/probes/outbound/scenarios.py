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
    WRONG_NAME = "STARTTLS with a lab-CA certificate for another name"
    NO_STARTTLS = "no STARTTLS offered"
    TEMPFAIL_FIRST = "451 to the first DATA, then 250"
    DOWN = "421 to every connection (a host that is down)"
    EXPIRED = "STARTTLS with a lab-CA certificate for its name that has expired"
    HANDSHAKE_FAILS = "STARTTLS offered and answered 220, then a handshake_failure alert"
    STARTTLS_454 = "STARTTLS offered, then answered 454 (TLS not available)"


class Sts(StrEnum):
    """The MTA-STS policy a scenario's domain publishes (RFC 8461 §3.2)."""

    NONE = "none"
    ENFORCE = "enforce"
    ENFORCE_OTHER_MX = "enforce, naming another MX host"   # the real MX host is outside the policy
    TESTING = "testing"


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
    sts: Sts = Sts.NONE
    deliver: bool = True                # a conforming sender delivers (else: it must not)
    policy_wildcard: bool = False       # the policy host serves a lab-CA certificate for *.<scenario domain>

    def domain(self, base: str) -> str:
        return f"{self.name}.{base}"

    def hosts(self, base: str) -> tuple[str, ...]:
        return tuple(f"mx{i + 1}.{self.domain(base)}" for i in range(len(self.mx)))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("starttls", (Posture.GOOD,)),
    Scenario("dane-match", (Posture.GOOD,), Tlsa.MATCH),
    Scenario("dane-mismatch", (Posture.GOOD,), Tlsa.MISMATCH, deliver=False),
    Scenario("dane-notls", (Posture.NO_STARTTLS,), Tlsa.MATCH, deliver=False),
    Scenario("dnssec-bogus", (Posture.GOOD,), Tlsa.MATCH, bogus=True, deliver=False),
    Scenario("self-signed", (Posture.SELF_SIGNED,)),
    Scenario("tempfail", (Posture.TEMPFAIL_FIRST,)),
    Scenario("backup", (Posture.DOWN, Posture.GOOD)),
    Scenario("sts-enforce", (Posture.GOOD,), sts=Sts.ENFORCE),
    Scenario("sts-outside", (Posture.GOOD,), sts=Sts.ENFORCE_OTHER_MX, deliver=False),
    Scenario("sts-badcert", (Posture.SELF_SIGNED,), sts=Sts.ENFORCE, deliver=False),
    Scenario("sts-wrongname", (Posture.WRONG_NAME,), sts=Sts.ENFORCE, deliver=False),
    Scenario("sts-testing", (Posture.SELF_SIGNED,), sts=Sts.TESTING),
)
# issue 15's further postures, appended so the earlier scenarios keep their addresses. With DANE-EE(3) the
# certificate's dates are not checked (RFC 7672 §3.1.1, RFC 7671 §5.1); MTA-STS needs a valid one (RFC 8461 §4.2).
SCENARIOS += (
    Scenario("dane-expired", (Posture.EXPIRED,), Tlsa.MATCH),
    Scenario("dane-tlsfail", (Posture.HANDSHAKE_FAILS,), Tlsa.MATCH, deliver=False),
    Scenario("dane-tls454", (Posture.STARTTLS_454,), Tlsa.MATCH, deliver=False),
    Scenario("sts-expired", (Posture.EXPIRED,), sts=Sts.ENFORCE, deliver=False),
    # no policy: RFC 7435 lets a sender fall back to cleartext or defer, so this one is evidence, not a verdict
    Scenario("tlsfail", (Posture.HANDSHAKE_FAILS,)),
)
# BSI TR-03108 4.1.8: a policy served under a wildcard certificate is no policy. The policy names another MX
# host, so the outcome tells the two senders apart: one that accepts the policy delivers nothing, a BSI sender
# (no valid policy: opportunistic TLS) delivers over TLS. ``deliver`` is the BSI sender's outcome.
SCENARIOS = (*SCENARIOS, Scenario("sts-wildcard", (Posture.GOOD,), sts=Sts.ENFORCE_OTHER_MX, policy_wildcard=True))
BY_NAME = {s.name: s for s in SCENARIOS}
# TLS-RPT reports (RFC 8460 §3) go to the "starttls" scenario's good MX host: no extra server, a posture any
# sender delivers to
REPORT_SCENARIO = "starttls"


def report_address(base: str) -> str:
    return f"tlsrpt@{BY_NAME[REPORT_SCENARIO].domain(base)}"


def sts_policy(scenario: Scenario, base: str) -> str | None:
    """The policy file served at https://mta-sts.<scenario domain>/.well-known/mta-sts.txt (RFC 8461 §3.2)."""
    if scenario.sts is Sts.NONE:
        return None
    mode = "testing" if scenario.sts is Sts.TESTING else "enforce"
    mx = (f"elsewhere.{scenario.domain(base)}" if scenario.sts is Sts.ENFORCE_OTHER_MX
          else scenario.hosts(base)[0])
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n"


def mx_addresses(address: str, scenarios: tuple[Scenario, ...] = SCENARIOS) -> dict[tuple[str, int], str]:
    """(scenario, MX index) -> the IPv4 address its MX host listens on: ``address`` + 1, + 2, ..."""
    base = ipaddress.IPv4Address(address)
    pairs = [(s.name, i) for s in scenarios for i in range(len(s.mx))]
    return {pair: str(base + n + 1) for n, pair in enumerate(pairs)}
