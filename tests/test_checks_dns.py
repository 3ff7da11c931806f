"""The dns checks as users run them (pytest in a subprocess, JUnit read back) against loopback responders
holding zones the reference gateway does not publish: a null MX, an IP literal, a resolver that fails."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import dns.dnssec
import dns.zone
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from conformance.probes.dns.dane import spki_sha256
from conformance.reference.dns import DnsResponder
from conformance.report import CaseResult, read_junit
from tests.hostile import HostileDns
from tests.tls_servers import openssl_server, rsa_leaf

pytestmark = pytest.mark.unit

CHECKS = Path(__file__).parent.parent / "conformance" / "checks" / "test_dns.py"
MTASTS_CHECKS = CHECKS.with_name("test_dns_mtasts.py")
NODE = '[[node]]\nname = "n1"\nhost = "mx1.example.test"\naddress = "127.0.0.1"\nservices = { submission = 1 }\n'
GOOD_POLICY = {
    ("example.test", "TXT"): ['"v=spf1 -all"'],
    ("_dmarc.example.test", "TXT"): ['"v=DMARC1; p=quarantine"'],
    ("_smtp._tls.example.test", "TXT"): ['"v=TLSRPTv1; rua=https://tlsrpt.example.test/v1"'],
}


def run_checks(tmp: Path, records: Mapping[tuple[str, str], Sequence[str]], *, domain: bool = True,
               servfail: tuple[str, ...] = (), zone: dns.zone.Zone | None = None, anchors: str = "",
               strip: bool = False, node: str = NODE, extra: tuple[str, ...] = (),
               responder: DnsResponder | None = None) -> dict[str, CaseResult]:
    """requirement -> its case, for a target whose resolver serves ``records`` (or ``zone``)."""
    with responder or DnsResponder(records) as serving:
        serving.servfail.update(servfail)
        serving.strip_signatures = strip
        if zone is not None:
            serving.load_zone(zone)
        target = tmp / "target.toml"
        head = f'domain = "example.test"\nresolver = "{serving.address}"\n' if domain else ""
        if anchors:
            (tmp / "anchors.txt").write_text(anchors)
            head += 'dnssec_trust_anchors = ["anchors.txt"]\n'
        target.write_text(f'[target]\n{head}timeout = 2\n{node}')
        junit = tmp / "junit.xml"
        proc = subprocess.run([sys.executable, "-m", "pytest", str(CHECKS), str(MTASTS_CHECKS), "--mail-target", str(target),
                               "--junitxml", str(junit), "-p", "no:cacheprovider", "-q", "-o", "addopts=",
                               "-o", "testpaths=", *extra], check=False, capture_output=True, text=True, timeout=120, cwd=tmp)
        serving.check_errors()
    assert junit.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return {c.requirement: c for c in read_junit(junit)}


def test_null_mx_beside_an_ip_literal_fails_and_quarantine_passes(tmp_path: Path) -> None:
    cases = run_checks(tmp_path, {("example.test", "MX"): ["0 .", "10 192.0.2.1."], **GOOD_POLICY})
    mx = cases["DNS-MX-01"]
    assert mx.verdict == "fail" and "null MX" in mx.reason and "192.0.2.1 is an IP address" in mx.reason
    assert cases["DNS-DMARC-02"].verdict == "pass"                      # quarantine: the SHOULD-level choice
    assert cases["DNS-TLSRPT-01"].verdict == "pass"                     # https: destinations are allowed
    assert cases["DNS-DKIM-01"].verdict == "skipped" and "dkim_selectors" in cases["DNS-DKIM-01"].reason
    assert cases["DNS-SRV-01"].verdict == "fail" and "names no server" in cases["DNS-SRV-01"].reason


def test_a_null_mx_alone_is_a_usable_statement(tmp_path: Path) -> None:
    assert run_checks(tmp_path, {("example.test", "MX"): ["0 ."]})["DNS-MX-01"].verdict == "pass"


def test_a_failing_resolver_is_inconclusive_in_words(tmp_path: Path) -> None:
    cases = run_checks(tmp_path, {("example.test", "MX"): ["10 mx1.example.test."], **GOOD_POLICY},
                       servfail=("_dmarc.example.test.", "mx1.example.test."))
    for requirement in ("DNS-DMARC-01", "DNS-DMARC-02", "DNS-MX-01"):
        case = cases[requirement]
        assert case.verdict == "inconclusive" and "SERVFAIL" in case.reason, case
        assert "Error" not in case.reason.split(":")[0]
    assert cases["DNS-SPF-01"].verdict == "pass" and cases["DNS-SPF-02"].verdict == "pass"


def test_without_a_domain_every_dns_check_skips_and_says_why(tmp_path: Path) -> None:
    cases = run_checks(tmp_path, {}, domain=False)
    assert len(cases) == 19
    assert all(c.verdict == "skipped" and "[target] domain" in c.reason for c in cases.values())


def _signed_zone() -> tuple[dns.zone.Zone, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(private.public_key(), "ECDSAP256SHA256", flags=257)
    zone = dns.zone.from_text("@ 300 IN SOA ns h 1 3600 600 86400 300\n@ 300 IN NS ns\nns 300 IN A 127.0.0.1\n"
                              "@ 300 IN MX 10 mx1\nmx1 300 IN A 127.0.0.1\n", origin="example.test.")
    dns.dnssec.sign_zone(zone, keys=[(private, dnskey)], lifetime=3600)
    return zone, f"example.test. IN DS {dns.dnssec.make_ds('example.test.', dnskey, 'SHA256')}\n"


def test_a_resolver_that_strips_signatures_is_blamed_not_the_zone(tmp_path: Path) -> None:
    zone, anchor = _signed_zone()
    cases = run_checks(tmp_path, {}, zone=zone, anchors=anchor)
    assert cases["DNS-DNSSEC-01"].verdict == "pass" and cases["DNS-DNSSEC-02"].verdict == "pass"
    stripped = run_checks(tmp_path, {}, zone=zone, anchors=anchor, strip=True)
    for requirement in ("DNS-DNSSEC-01", "DNS-DNSSEC-02"):
        assert stripped[requirement].verdict == "inconclusive" and "strips DNSSEC" in stripped[requirement].reason


def test_the_iana_root_is_the_default_anchor(tmp_path: Path) -> None:
    zone, _ = _signed_zone()
    case = run_checks(tmp_path, {}, zone=zone)["DNS-DNSSEC-01"]   # no DS for example.test under the root
    assert case.verdict == "fail" and "not signed" in case.reason, case


def test_dane_is_held_against_every_address_of_an_mx(tmp_path: Path) -> None:
    """mx1 resolves to 127.0.0.1 and 127.0.0.2; the target pins the first, where the TLS family's handshakes
    go. The second serves another key: the TLSA set made for the first must fail there, named by address."""
    first, second = rsa_leaf(), rsa_leaf()
    digest = spki_sha256(first.der)
    with openssl_server(lambda ctx: None, smtp=True, leaf=first) as good, \
            openssl_server(lambda ctx: None, smtp=True, leaf=second, address="127.0.0.2", port=good.endpoint.port):
        records = {("example.test", "MX"): ["10 mx1.example.test."],
                   ("mx1.example.test", "A"): ["127.0.0.1", "127.0.0.2"],
                   ("_25._tcp.mx1.example.test", "TLSA"): [f"3 1 1 {digest}"]}
        node = NODE.replace("submission = 1", f"mx = {good.endpoint.port}")
        case = run_checks(tmp_path, records, node=node)["DNS-DANE-02"]
    assert case.verdict == "fail", case
    assert "at 127.0.0.2" in case.reason and f"3 1 1 {digest}" in case.reason, case.reason
    assert spki_sha256(second.der) in case.reason and "at 127.0.0.1" not in case.reason, case.reason


def test_tlsrpt_mailto_only_is_a_bsi_rule(tmp_path: Path) -> None:
    """GOOD_POLICY's TLS-RPT reports go to https: fine for RFC 8460, a failed MUST in the bsi profile only."""
    records = {("example.test", "MX"): ["10 mx1.example.test."], **GOOD_POLICY}
    baseline = run_checks(tmp_path, records)["DNS-TLSRPT-02"]
    assert baseline.verdict == "skipped" and "not part of the baseline profile" in baseline.reason
    bsi = run_checks(tmp_path, records, extra=("--mail-profile", "bsi"))
    assert bsi["DNS-TLSRPT-01"].verdict == "pass"
    case = bsi["DNS-TLSRPT-02"]
    assert case.verdict == "fail" and "https://tlsrpt.example.test/v1" in case.reason and "mailto:" in case.reason


def test_the_bsi_profile_takes_the_sensitive_data_levels() -> None:
    from conformance.requirements import CATALOGUE
    from conformance.verdict import FailOn, default_fail_on

    assert all(r.level_in("bsi") == r.level_in("sensitive-data") for r in CATALOGUE.values() if r.profiles != ("bsi",))
    assert default_fail_on("bsi") is FailOn.MUST_PROVEN


MX_AND_POLICY = {("example.test", "MX"): ["10 mx1.example.test."], ("mx1.example.test", "A"): ["127.0.0.1"],
                 **GOOD_POLICY}


def test_truncated_udp_answers_are_completed_over_tcp(tmp_path: Path) -> None:
    hostile = HostileDns(MX_AND_POLICY, truncate_udp=True)
    cases = run_checks(tmp_path, MX_AND_POLICY, responder=hostile)
    assert hostile.tcp_answers > 10
    assert all(cases[r].verdict == "pass" for r in ("DNS-MX-01", "DNS-SPF-01", "DNS-DMARC-01", "DNS-TLSRPT-01"))


def test_truncation_without_tcp_is_inconclusive_in_words(tmp_path: Path) -> None:
    cases = run_checks(tmp_path, MX_AND_POLICY, responder=HostileDns(MX_AND_POLICY, truncate_udp=True, no_tcp=True))
    for requirement in ("DNS-MX-01", "DNS-DMARC-01", "DNS-TLSRPT-01"):
        case = cases[requirement]
        assert case.verdict == "inconclusive" and "answered truncated (TC)" in case.reason, case
        assert "over TCP: connection" in case.reason and "Errno" not in case.reason, case.reason


def test_a_mute_resolver_is_inconclusive_not_a_hang(tmp_path: Path) -> None:
    """Every query times out (the target's budget bounds each); nothing is judged on an answer never given."""
    cases = run_checks(tmp_path, MX_AND_POLICY, responder=HostileDns(MX_AND_POLICY, mute=True))
    judged = [c for c in cases.values() if c.verdict in ("pass", "fail")]
    assert not judged, judged
    for requirement in ("DNS-MX-01", "DNS-SPF-01", "DNS-DMARC-02", "DNS-MTASTS-01"):
        assert cases[requirement].verdict == "inconclusive" and "timeout" in cases[requirement].reason.lower()
