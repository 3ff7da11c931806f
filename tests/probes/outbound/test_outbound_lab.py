"""The outbound lab on loopback: its signed zone (validated with the suite's own validator), its MX hosts'
postures and what they record, and the run's bookkeeping (tagged, counted, nothing else accepted)."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import smtplib
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from cryptography import x509

from conformance.probes.dns.dnssec import Security, Validator, load_anchors
from conformance.probes.dns.records import lookup, policy_resolver
from conformance.probes.outbound.lab import Lab, LabReport, make_message, recipient
from conformance.probes.outbound.pki import ANCHOR
from conformance.probes.outbound.scenarios import BY_NAME, SCENARIOS, mx_addresses
from conformance.target import Account, Outbound, Secret

pytestmark = pytest.mark.unit

DOMAIN = "outbound.test"
ACCOUNT = Account("test", "alice@example.test", Secret("x", "test"), "alice@example.test")


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def outbound(tmp_path: Path) -> Outbound:
    address = f"127.78.{secrets.randbelow(250) + 1}.0"
    return Outbound(DOMAIN, address, dns_port=_free_port(address), mx_port=_free_port(address[:-1] + "1"),
                    lab_dir=tmp_path / "lab")


def _in_lab(outbound: Outbound, body: Callable[[Lab], Awaitable[object]]) -> object:
    async def run() -> object:
        async with Lab(outbound) as lab:
            return await body(lab)
    return asyncio.run(run())


def _smtp(outbound: Outbound, scenario: str, index: int = 0) -> smtplib.SMTP:
    address = mx_addresses(outbound.address)[(scenario, index)]
    return smtplib.SMTP(address, outbound.mx_port, local_hostname="sender.example.test", timeout=5)


def _deliver(outbound: Outbound, scenario: str, to: str, *, tls: bool = True) -> None:
    with _smtp(outbound, scenario) as smtp:
        if tls:
            context = ssl.create_default_context(cafile=str(outbound.lab_dir / "ca.pem") if outbound.lab_dir else None)
            smtp._host = f"mx1.{scenario}.{DOMAIN}"  # smtplib sends its host as SNI; the test dials the address
            smtp.starttls(context=context)
        smtp.sendmail("alice@example.test", [to], b"Subject: t\r\n\r\nhello\r\n")


def test_the_zone_validates_from_the_lab_trust_anchor_and_the_bogus_scenario_does_not(outbound: Outbound) -> None:
    async def body(lab: Lab) -> tuple[Security, Security]:
        assert outbound.lab_dir is not None
        resolver = policy_resolver(f"{outbound.address}:{outbound.dns_port}", 2)
        validator = Validator(resolver, load_anchors((outbound.lab_dir / ANCHOR,)))
        good = await validator.validate(await lookup(resolver, f"_{outbound.mx_port}._tcp.mx1.dane-match.{DOMAIN}", "TLSA"))
        bogus = await validator.validate(await lookup(resolver, f"dnssec-bogus.{DOMAIN}", "MX"))
        return good.security, bogus.security
    assert _in_lab(outbound, body) == (Security.SECURE, Security.BOGUS)


def test_the_lab_dns_answers_only_its_own_zone_and_proves_absence(outbound: Outbound) -> None:
    async def ask(name: str) -> dns.message.Message:
        query = dns.message.make_query(name, "A", want_dnssec=True)
        return await dns.asyncquery.udp(query, outbound.address, timeout=2, port=outbound.dns_port)

    async def body(lab: Lab) -> tuple[dns.message.Message, dns.message.Message]:
        return await ask("example.com"), await ask(f"nothing-here.{DOMAIN}")
    foreign, missing = _in_lab(outbound, body)  # type: ignore[misc]
    assert foreign.rcode() == dns.rcode.REFUSED and not foreign.answer
    assert missing.rcode() == dns.rcode.NXDOMAIN
    kinds = {rrset.rdtype for rrset in missing.authority}
    assert {dns.rdatatype.SOA, dns.rdatatype.NSEC, dns.rdatatype.RRSIG} <= kinds


def test_an_mx_host_records_tls_and_the_client_hello_and_refuses_other_domains(outbound: Outbound) -> None:
    async def body(lab: Lab) -> tuple[list[object], list[str], int]:
        await asyncio.to_thread(_deliver, outbound, "starttls", f"mc-1@starttls.{DOMAIN}")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            await asyncio.to_thread(_deliver, outbound, "starttls", "victim@example.com", tls=False)
        return list(lab.log.arrivals), list(lab.log.refused), lab.log.connections[f"mx1.starttls.{DOMAIN}"]
    arrivals, refused, connections = _in_lab(outbound, body)  # type: ignore[misc]
    (arrival,) = arrivals
    assert arrival.tls_version in ("TLSv1.2", "TLSv1.3") and arrival.cipher
    assert arrival.hello is not None and arrival.hello.sni == f"mx1.starttls.{DOMAIN}"
    assert arrival.recipients == (f"mc-1@starttls.{DOMAIN}",)
    assert refused == [f"mx1.starttls.{DOMAIN}: victim@example.com"] and connections == 2


def test_postures_down_no_starttls_and_451_first(outbound: Outbound) -> None:
    def down() -> int:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            _smtp(outbound, "backup", 0)
        return refused.value.smtp_code

    def no_starttls() -> bool:
        with _smtp(outbound, "dane-notls") as smtp:
            smtp.ehlo()
            return smtp.has_extn("starttls")

    def tempfail() -> list[int]:
        codes = []
        for _ in range(2):
            try:
                _deliver(outbound, "tempfail", f"mc-2@tempfail.{DOMAIN}", tls=False)
                codes.append(250)
            except smtplib.SMTPDataError as exc:
                codes.append(exc.smtp_code)
        return codes

    async def body(lab: Lab) -> tuple[int, bool, list[int]]:
        return await asyncio.to_thread(down), await asyncio.to_thread(no_starttls), await asyncio.to_thread(tempfail)
    assert _in_lab(outbound, body) == (421, False, [451, 250])


def test_a_run_counts_this_runs_copies_and_calls_older_ones_stale(outbound: Outbound) -> None:
    scenario = BY_NAME["starttls"]

    async def body(lab: Lab) -> LabReport:
        to = recipient(scenario, DOMAIN, "feedbeef")

        async def sender(rcpt: str, message: bytes) -> str:
            await asyncio.to_thread(_deliver, outbound, "starttls", rcpt)
            await asyncio.to_thread(_deliver, outbound, "starttls", rcpt)                 # a duplicate
            await asyncio.to_thread(_deliver, outbound, "starttls", f"mc-0ld@starttls.{DOMAIN}")  # an earlier run
            return "sent"
        return await lab.run("feedbeef", [(scenario, to, make_message(ACCOUNT, to, scenario, "feedbeef"))],
                             sender, window=0.2)
    report = _in_lab(outbound, body)
    assert isinstance(report, LabReport)
    result = report.results["starttls"]
    assert result.sent.accepted and len(result.arrivals) == 2 and report.stale == 1


def test_every_scenario_has_its_own_subdomain_and_addresses() -> None:
    addresses = mx_addresses("127.0.0.10")
    assert len(set(addresses.values())) == sum(len(s.mx) for s in SCENARIOS)
    assert "127.0.0.10" not in addresses.values()   # the lab DNS keeps the base address
    assert len({s.domain(DOMAIN) for s in SCENARIOS}) == len(SCENARIOS)


def test_the_policy_hosts_serve_each_scenarios_mta_sts_policy_over_verified_tls(outbound: Outbound) -> None:
    from conformance.reference.sts_fetch import StsPolicy, fetch_policy

    outbound = Outbound(outbound.domain, outbound.address, outbound.dns_port, outbound.mx_port,
                        _free_port(outbound.address), outbound.lab_dir)
    assert outbound.lab_dir is not None
    ca = outbound.lab_dir / "ca.pem"

    def fetch(scenario: str) -> StsPolicy | None:
        return fetch_policy(f"mta-sts.{scenario}.{DOMAIN}", outbound.address, outbound.https_port, ca)

    async def body(lab: Lab) -> list[StsPolicy | None]:
        return [await asyncio.to_thread(fetch, name) for name in ("sts-enforce", "sts-outside", "sts-testing",
                                                                   "starttls")]
    enforce, outside, testing, none = _in_lab(outbound, body)  # type: ignore[misc]
    assert enforce == StsPolicy("enforce", (f"mx1.sts-enforce.{DOMAIN}",))
    assert outside is not None and not outside.allows(f"mx1.sts-outside.{DOMAIN}")
    assert testing is not None and testing.mode == "testing"
    assert none is None   # no policy published for that domain: no policy host, no policy


def test_postures_expired_handshake_failure_and_454(outbound: Outbound) -> None:
    """Each advertises STARTTLS: the expired host completes the handshake with a certificate past its date, the
    failing host answers 220 and then a handshake_failure alert, the 454 host refuses STARTTLS itself."""
    def handshake(scenario: str) -> bytes | None:
        with _smtp(outbound, scenario) as smtp:
            smtp.ehlo()
            assert smtp.has_extn("starttls")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            smtp.starttls(context=context)
            assert isinstance(smtp.sock, ssl.SSLSocket)
            return smtp.sock.getpeercert(binary_form=True)

    def failure(scenario: str) -> str:
        with pytest.raises((ssl.SSLError, smtplib.SMTPResponseException)) as failed:
            handshake(scenario)
        error = failed.value
        return f"{error.smtp_code}" if isinstance(error, smtplib.SMTPResponseException) else str(error)

    async def body(lab: Lab) -> tuple[bytes | None, str, str, str]:
        return (await asyncio.to_thread(handshake, "dane-expired"), await asyncio.to_thread(failure, "dane-tlsfail"),
                await asyncio.to_thread(failure, "tlsfail"), await asyncio.to_thread(failure, "dane-tls454"))
    expired, alert, alert_too, refused = _in_lab(outbound, body)  # type: ignore[misc]
    certificate = x509.load_der_x509_certificate(expired)
    assert certificate.not_valid_after_utc < dt.datetime.now(dt.UTC)
    assert "handshake failure" in alert.lower() and "handshake failure" in alert_too.lower() and refused == "454"


def test_the_wildcard_scenario_serves_its_policy_under_a_wildcard_certificate_only(outbound: Outbound) -> None:
    """sts-wildcard's policy host answers its SNI with *.sts-wildcard.<domain>: an RFC 8461 sender accepts the
    policy (another MX host), the reference's BSI fetch refuses it; the other policy hosts keep their exact name."""
    from conformance.reference.sts_fetch import fetch_policy, names_exactly

    outbound = Outbound(outbound.domain, outbound.address, outbound.dns_port, outbound.mx_port,
                        _free_port(outbound.address), outbound.lab_dir)
    assert outbound.lab_dir is not None
    ca = outbound.lab_dir / "ca.pem"

    def served(scenario: str) -> bytes | None:
        context = ssl.create_default_context(cafile=str(ca))
        with socket.create_connection((outbound.address, outbound.https_port), 5) as raw, \
                context.wrap_socket(raw, server_hostname=f"mta-sts.{scenario}.{DOMAIN}") as tls:
            return tls.getpeercert(binary_form=True)

    def fetch(scenario: str, allow_wildcard: bool) -> object:
        return fetch_policy(f"mta-sts.{scenario}.{DOMAIN}", outbound.address, outbound.https_port, ca,
                            allow_wildcard=allow_wildcard)

    async def body(lab: Lab) -> tuple[object, ...]:
        return (await asyncio.to_thread(served, "sts-wildcard"), await asyncio.to_thread(served, "sts-enforce"),
                await asyncio.to_thread(fetch, "sts-wildcard", True), await asyncio.to_thread(fetch, "sts-wildcard", False),
                await asyncio.to_thread(fetch, "sts-enforce", False))
    wildcard_der, exact_der, accepted, refused, exact = _in_lab(outbound, body)  # type: ignore[misc]
    assert isinstance(wildcard_der, bytes) and isinstance(exact_der, bytes)
    assert not names_exactly(wildcard_der, f"mta-sts.sts-wildcard.{DOMAIN}")
    assert names_exactly(exact_der, f"mta-sts.sts-enforce.{DOMAIN}")
    assert accepted is not None and not accepted.allows(f"mx1.sts-wildcard.{DOMAIN}")  # type: ignore[attr-defined]
    assert refused is None and exact is not None
    assert BY_NAME["sts-wildcard"].deliver   # the BSI sender's outcome: the policy refused, opportunistic TLS
