"""Real Postfix as a sender (tests/real/sender_rig.py): what Debian's Postfix 3.7 does with DANE, MTA-STS (through
postfix-mta-sts-resolver) and DKIM (through OpenDKIM), resolving the lab zone through a validating Unbound.

Every sender sends one message to every scenario's domain at once; each message ends delivered (and how) or
deferred (and why). The good sender's table is the one a conforming gateway shows; each weak sender differs
from it exactly in the scenarios its weakness names, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import dkim
import dns.flags
import dns.message
import dns.query
import pytest

from tests.real.outbound_lab import SCENARIOS
from tests.real.processes import postfix_pid_file, read_pid
from tests.real.sender_rig import (
    RESOLVER_ADDRESS,
    SENDER_CONFIGS,
    SENDER_DOMAIN,
    Outcome,
    SenderConfig,
    SenderRig,
    config_values,
    unavailable_reason,
)
from tests.real.servers import FIXTURES, render
from tests.real.servers import unavailable_reason as servers_unavailable

pytestmark = pytest.mark.real

Outcomes = dict[tuple[str, str], Outcome]

# What the good sender does per scenario: "tls" delivered over TLS, "plaintext" delivered without it,
# or the start of Postfix's reason for deferring it.
GOOD = {
    "dane-match": "tls",                                          # RFC 7672 §2.2: a matching TLSA delivers
    "dane-mismatch": "Server certificate not verified",           # ...and a mismatching one does not
    "dane-no-starttls": "TLS is required, but was not offered",   # TLSA published, no STARTTLS: nothing
    "sts-enforce": "tls",                                         # RFC 8461 §5: policy MX, PKIX-valid
    "sts-enforce-badcert": "Server certificate not verified",     # §4.2: fails PKIX validation
    "sts-enforce-other-mx": "Server certificate not verified",    # §4.1: the MX is outside the policy
    "sts-testing-badcert": "tls",                                 # §5: "testing" delivers anyway
    "opportunistic": "tls",                                       # RFC 7435: unverified, still encrypted
}
# Where each weak sender differs from the good one (and nowhere else). The senders without DKIM and with
# Postfix's TLS client defaults differ in no delivery: test_real_outbound_checks.py judges them.
WEAK = {
    "good": {},
    "dane-off": {"dane-mismatch": "tls", "dane-no-starttls": "plaintext"},
    "no-mta-sts": {"sts-enforce-badcert": "tls", "sts-enforce-other-mx": "tls"},
}
CONFIGS = [c for c in SENDER_CONFIGS if c.name in WEAK]
# The main.cf settings each weak sender changes (and no other).
WEAKNESS_SETTINGS = {
    "dane-off": {"smtp_tls_security_level"},
    "no-mta-sts": {"smtp_tls_policy_maps"},
    "no-dkim": {"non_smtpd_milters"},
    "postfix-defaults": {"smtp_tls_protocols", "smtp_tls_mandatory_protocols", "smtp_tls_ciphers",
                         "smtp_tls_mandatory_ciphers", "tls_high_cipherlist", "smtp_tls_exclude_ciphers",
                         "smtp_tls_servername"},
}


@pytest.fixture(scope="module")
def rig() -> Iterator[tuple[SenderRig, Outcomes]]:
    reason = servers_unavailable() or unavailable_reason()
    if reason:
        pytest.skip(reason)
    with SenderRig(CONFIGS) as running:
        running.send_all()
        yield running, running.outcomes()


def test_expectations_cover_every_sender_and_scenario() -> None:
    assert set(GOOD) == {s.label for s in SCENARIOS}
    assert set(WEAK) == {c.name for c in CONFIGS}


@pytest.mark.parametrize("config", [c for c in SENDER_CONFIGS if c.name != "good"], ids=lambda c: c.name)
def test_weak_sender_differs_from_good_only_in_its_weakness(config: SenderConfig) -> None:
    def main_cf(sender: SenderConfig) -> set[str]:
        values = config_values(sender, {"sender_domain": SENDER_DOMAIN, "mx_port": "25", "lab_ca": "/lab/ca.pem",
                                        "backoff_block": "", "config": "c", "queue_directory": "/q",
                                        "data_directory": "/d", "postfix_log": "/l", "log_dir": "/ld"}, 1, 2)
        return set(render(FIXTURES / "postfix" / "sender-main.cf.in", values).splitlines())

    good = next(c for c in SENDER_CONFIGS if c.name == "good")
    changed = {line.split(" =")[0] for line in main_cf(good) ^ main_cf(config)}
    assert changed == WEAKNESS_SETTINGS[config.name]


def test_postfix_resolves_through_the_lab_resolver_and_the_host_file_is_untouched(
        rig: tuple[SenderRig, Outcomes]) -> None:
    running, _ = rig
    host_view = Path("/etc/resolv.conf").read_text()
    assert RESOLVER_ADDRESS not in host_view
    for sender in running.senders.values():
        pid = read_pid(postfix_pid_file(sender.workdir))
        assert pid is not None, f"{sender.config.name}: no Postfix master PID"
        # /proc/PID/root resolves paths in that process's mount namespace: what Postfix's resolver reads
        assert Path(f"/proc/{pid}/root/etc/resolv.conf").read_text() == f"nameserver {RESOLVER_ADDRESS}\noptions trust-ad\n"


@pytest.mark.parametrize("config", list(WEAK))
@pytest.mark.parametrize("scenario", [s.label for s in SCENARIOS])
def test_delivery_verdict(rig: tuple[SenderRig, Outcomes], config: str, scenario: str) -> None:
    running, outcomes = rig
    expected = WEAK[config].get(scenario, GOOD[scenario])
    outcome = outcomes[(config, scenario)]
    context = f"{config} -> {scenario}: {outcome.describe()}\n{running.log_tail(config)}"
    if expected in ("tls", "plaintext"):
        assert outcome.arrival is not None, context
        assert (outcome.arrival.tls_version is not None) == (expected == "tls"), context
        assert outcome.deferred is None, context
    else:
        assert outcome.arrival is None, context
        assert outcome.deferred is not None and expected in outcome.deferred, context


def test_dane_and_mta_sts_deliveries_were_verified(rig: tuple[SenderRig, Outcomes]) -> None:
    """The good sender's TLS to the DANE and MTA-STS MX hosts was authenticated (TLSA match / PKIX with the
    lab CA), not merely encrypted: Postfix logs "Verified TLS connection" only then."""
    running, _ = rig
    log = running.senders["good"].log.read_text(errors="replace")
    for host in ("mx.dane-match.outbound.test", "mx.sts-enforce.outbound.test"):
        assert f"Verified TLS connection established to {host}" in log, running.log_tail("good")


def _lab_txt(name: bytes | str, timeout: int = 5) -> bytes | None:
    """dkimpy's DNS hook: the TXT record from the lab Unbound, only if DNSSEC-validated (AD)."""
    query = dns.message.make_query(name.decode() if isinstance(name, bytes) else name, "TXT", want_dnssec=True)
    reply = dns.query.udp(query, RESOLVER_ADDRESS, timeout=timeout)
    if not reply.flags & dns.flags.AD or not reply.answer:
        return None
    return b"".join(b"".join(rdata.strings) for rdata in reply.answer[0])


@pytest.mark.parametrize("config", list(WEAK))
def test_dkim_signature(rig: tuple[SenderRig, Outcomes], config: str) -> None:
    """OpenDKIM signs for the sender's domain with rsa-sha256, a 2048-bit key, no l= (RFC 6376, RFC 8301); the
    key is the one in the sender's zone."""
    _, outcomes = rig
    delivered = [o.arrival for (c, _), o in outcomes.items() if c == config and o.arrival is not None]
    assert delivered
    for arrival in delivered:
        header = message_from_bytes(arrival.content).get("DKIM-Signature")
        assert header is not None, arrival.content.decode(errors="replace")
        tags = {k.strip(): v.strip() for k, _, v in (t.partition("=") for t in header.split(";"))}
        assert (tags["a"], tags["d"]) == ("rsa-sha256", SENDER_DOMAIN) and "l" not in tags, header
        verifier = dkim.DKIM(arrival.content)
        assert verifier.verify(dnsfunc=_lab_txt), f"{config} -> {arrival.scenario}: signature does not verify"
        assert verifier.keysize == 2048
