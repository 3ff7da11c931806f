"""The gateway as a sender: what arrived at the suite's lab MX hosts, over which TLS, signed how — or that
nothing arrived where nothing may.

Opt-in by the target's ``[outbound]`` section. Every scenario has its own subdomain of the suite's test
domain and its own MX hosts; the gateway gets one tagged message per scenario at once, and the lab watches
for ``[policy] outbound_window`` seconds. "Not delivered" verdicts need the positive control: a gateway that
delivers nowhere proves nothing by not delivering here (inconclusive), and fails the DANE check outright.
"""

from __future__ import annotations

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.outbound import scenario
from conformance.probes.outbound.dkim import DkimVerdict
from conformance.probes.outbound.lab import LabReport, ScenarioResult
from conformance.probes.outbound.mx import Arrival
from conformance.probes.outbound.tlsrpt import parse_report
from conformance.target import Target
from conformance.verdict import Inconclusive

# one lab per run: under pytest-xdist `--dist loadgroup` keeps every check on the worker that runs it
pytestmark = pytest.mark.xdist_group("outbound")

GOOD_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
MIN_RSA_BITS = 2048
# scenarios where a conforming sender connects, then refuses the MX host: a session failure RFC 8460 reports
REPORTED_REFUSALS = ("dane-mismatch", "dane-notls", "sts-badcert", "sts-wrongname")


def _for(arrival: Arrival) -> str:
    return arrival.recipients[0] if arrival.recipients else "a message"


def _where(arrival: Arrival) -> str:
    how = f"over {arrival.tls_version} ({arrival.cipher})" if arrival.tls_version else "in plaintext"
    return f"{arrival.host} {how}"


def _record(evidence: Evidence, report: LabReport, *results: ScenarioResult) -> None:
    evidence.add("window", f"{report.window:g} s (run tag {report.tag})")
    for result in results:
        seen = ", ".join(_where(a) for a in result.arrivals) or f"nothing within {result.waited:.1f} s"
        evidence.add(f"scenario.{result.scenario.name}", f"{result.sent.recipient}: {seen}; "
                     f"{result.connections} connection(s) to its MX hosts")
        _record_dsn(evidence, report, result)


def _record_dsn(evidence: Evidence, report: LabReport, result: ScenarioResult) -> None:
    """What the gateway reported back to the test account about this message (RFC 3464), if anything."""
    if report.dsns is None:
        return
    if report.dsns.reason:
        evidence.add("dsn", f"no DSN read: {report.dsns.reason}")
        return
    notices = report.dsns.about(result.sent.recipient)
    if notices:
        evidence.add(f"dsn.{result.scenario.name}", "the gateway reported: "
                     + " | ".join(n.describe() for n in notices))
    elif not result.delivered:
        evidence.add(f"dsn.{result.scenario.name}", f"no DSN for it in the test account's mailbox "
                     f"({report.dsns.mailbox})")


def _no_delivery_reported(report: LabReport, result: ScenarioResult, why: str) -> None:
    """A must-not-deliver message the gateway reports delivered (or relayed) went somewhere else."""
    claimed = [n for n in report.dsns.about(result.sent.recipient) if n.says_delivered] if report.dsns else []
    assert not claimed, (f"the gateway reported {result.sent.recipient} as {claimed[0].action} ({claimed[0].describe()}), "
                         f"although nothing arrived at the lab: it delivered elsewhere what {why} forbids")


def _delivered_somewhere(report: LabReport) -> None:
    """The control: the gateway delivered where a conforming sender delivers. Without it, a message that
    did not arrive proves nothing."""
    if not any(report.results[name].delivered for name in ("starttls", "dane-match")):
        raise Inconclusive(f"nothing the gateway sent arrived anywhere within {report.window:g} s, not even at "
                           f"the lab MX hosts a conforming sender delivers to: check the gateway's resolver "
                           f"(the suite's zone) and its queue")


def _tls_arrivals(report: LabReport) -> list[Arrival]:
    arrivals = [a for r in report.results.values() for a in r.arrivals if a.tls_version]
    if not arrivals:
        raise Inconclusive(f"no message arrived over TLS within {report.window:g} s: no ClientHello to judge")
    return arrivals


@pytest.mark.requirement("OUT-STARTTLS-01")
def test_uses_starttls(outbound_lab: LabReport, evidence: Evidence) -> None:
    """A sender that meets STARTTLS in EHLO uses it (opportunistic TLS at the least)."""
    result = scenario(outbound_lab, "starttls")
    _record(evidence, outbound_lab, result)
    if not result.delivered:
        raise Inconclusive(f"nothing arrived for {result.sent.recipient} within {result.waited:.1f} s")
    plain = [a for a in result.arrivals if not a.tls_version]
    assert not plain, (f"the gateway delivered {result.sent.recipient} to {plain[0].host} in plaintext although "
                       f"the host offered STARTTLS")


@pytest.mark.requirement("OUT-HELLO-01")
def test_client_hello_offers_nothing_weak(outbound_lab: LabReport, evidence: Evidence) -> None:
    """Read from the ClientHello itself: what the gateway offers, not only what one MX host picked."""
    arrivals = _tls_arrivals(outbound_lab)
    hellos = [(a, a.hello) for a in arrivals if a.hello is not None]
    if not hellos:
        raise Inconclusive(f"no ClientHello could be read at the lab MX hosts: {arrivals[0].hello_error}")
    arrival, hello = hellos[0]
    evidence.add("offered_versions", hello.legacy_versions or "TLS 1.2 and newer only")
    evidence.add("offered_suites", len(hello.suites))
    for arrival, hello in hellos:
        assert not hello.legacy_versions, (f"the gateway offered {', '.join(hello.legacy_versions)} to "
                                           f"{arrival.host} (delivering {_for(arrival)}): nothing below TLS 1.2 "
                                           f"may be offered")
        assert not hello.broken_suites, (f"the gateway offered broken cipher suites to {arrival.host} (delivering "
                                         f"{_for(arrival)}): {', '.join(s.name for s in hello.broken_suites)}")


@pytest.mark.requirement("OUT-SNI-01")
def test_sends_sni(outbound_lab: LabReport, evidence: Evidence) -> None:
    """SNI names the MX host (RFC 7672 §8.1): a server with several certificates can pick the right one."""
    hellos = [(a, a.hello) for a in _tls_arrivals(outbound_lab) if a.hello is not None]
    if not hellos:
        raise Inconclusive("no ClientHello could be read at the lab MX hosts")
    evidence.add("sni", ", ".join(f"{a.host}: {h.sni or 'none'}" for a, h in hellos))
    for arrival, hello in hellos:
        assert hello.sni, f"the gateway started TLS with {arrival.host} without SNI (delivering {_for(arrival)})"
        assert hello.sni.rstrip(".").lower() == arrival.host, (
            f"the gateway sent SNI {hello.sni!r} to {arrival.host} (delivering {_for(arrival)}): it must name "
            f"the MX host")


@pytest.mark.requirement("OUT-DANE-01")
def test_dane_enforced(outbound_lab: LabReport, evidence: Evidence) -> None:
    """Nothing to an MX whose certificate matches none of its DNSSEC-valid TLSA records; the mail, over TLS,
    to one whose certificate matches (the positive control: a gateway that never delivers cannot pass)."""
    good, bad = scenario(outbound_lab, "dane-match"), scenario(outbound_lab, "dane-mismatch")
    _record(evidence, outbound_lab, good, bad)
    assert not bad.arrivals, (f"the gateway delivered {bad.sent.recipient} to {_where(bad.arrivals[0])} although "
                              f"its certificate matches none of the host's DNSSEC-valid TLSA records")
    _no_delivery_reported(outbound_lab, bad, "a mismatching DNSSEC-valid TLSA record")
    assert good.delivered, (f"the gateway delivered nothing for {good.sent.recipient} within {good.waited:.1f} s, "
                            f"although the MX host's certificate matches its DNSSEC-valid TLSA record")
    plain = [a for a in good.arrivals if not a.tls_version]
    assert not plain, f"the gateway delivered {good.sent.recipient} in plaintext to a host with TLSA records"
    _dane_ignores_expiry(outbound_lab, evidence)


def _dane_ignores_expiry(report: LabReport, evidence: Evidence) -> None:
    """Judged once the sender has shown it does DANE (mismatch refused, match delivered): under DANE-EE(3) the
    certificate's dates are not checked (RFC 7672 §3.1.1), so an expired one that matches still gets the mail."""
    expired = scenario(report, "dane-expired")
    _record(evidence, report, expired)
    assert expired.delivered, (f"the gateway delivered nothing for {expired.sent.recipient} within "
                               f"{expired.waited:.1f} s, although the MX host's certificate matches its "
                               f"DNSSEC-valid DANE-EE TLSA record: its expiry date must not count under DANE-EE")
    plain = [a for a in expired.arrivals if not a.tls_version]
    assert not plain, f"the gateway delivered {expired.sent.recipient} in plaintext to a host with TLSA records"


# what each "TLSA published, no TLS to be had" host does: the sender must send nothing, plaintext least of all
DANE_NO_TLS = {"dane-notls": "offers no STARTTLS",
               "dane-tlsfail": "answered STARTTLS with 220 and then failed the TLS handshake",
               "dane-tls454": "answered STARTTLS with 454"}


@pytest.mark.requirement("OUT-DANE-02")
def test_dane_requires_starttls(outbound_lab: LabReport, evidence: Evidence) -> None:
    """TLSA records published and no TLS to be had (no STARTTLS offered, a 454 to it, or a handshake that fails
    after its 220: a downgrade): nothing may be sent."""
    results = [scenario(outbound_lab, name) for name in DANE_NO_TLS]
    _record(evidence, outbound_lab, *results)
    for result in results:
        assert not result.arrivals, (
            f"the gateway delivered {result.sent.recipient} to {_where(result.arrivals[0])} although the host "
            f"publishes TLSA records and {DANE_NO_TLS[result.scenario.name]}")
        _no_delivery_reported(outbound_lab, result,
                              f"a TLSA record and a host that {DANE_NO_TLS[result.scenario.name]}")
    _delivered_somewhere(outbound_lab)


@pytest.mark.requirement("OUT-DNSSEC-01")
def test_bogus_dnssec_not_used(outbound_lab: LabReport, evidence: Evidence) -> None:
    """MX and TLSA answers whose signatures do not verify are bogus: the gateway must not act on them."""
    result = scenario(outbound_lab, "dnssec-bogus")
    _record(evidence, outbound_lab, result)
    assert not result.arrivals, (f"the gateway delivered {result.sent.recipient} to {_where(result.arrivals[0])} "
                                 f"although the MX and TLSA signatures of that domain do not verify")
    _no_delivery_reported(outbound_lab, result, "bogus DNSSEC")
    _delivered_somewhere(outbound_lab)


@pytest.mark.requirement("OUT-OPPORTUNISTIC-01")
def test_opportunistic_tls(outbound_lab: LabReport, evidence: Evidence) -> None:
    """No DANE, no MTA-STS, a self-signed certificate: encrypt anyway (RFC 7435), never fall back to clear."""
    result = scenario(outbound_lab, "self-signed")
    _record(evidence, outbound_lab, result)
    _record_fallback(outbound_lab, evidence)
    plain = [a for a in result.arrivals if not a.tls_version]
    assert not plain, (f"the gateway delivered {result.sent.recipient} to {plain[0].host} in plaintext although "
                       f"the host offered STARTTLS (with a certificate it could not verify)")
    if not result.delivered:
        _delivered_somewhere(outbound_lab)
    assert result.delivered, (f"the gateway delivered nothing for {result.sent.recipient} within "
                              f"{result.waited:.1f} s: an unverifiable certificate without DANE or MTA-STS "
                              f"should still get the mail over TLS")


def _record_fallback(report: LabReport, evidence: Evidence) -> None:
    """Evidence only: after a failed handshake, with no DANE or MTA-STS policy, RFC 7435 lets a sender go on
    in cleartext or defer, and no source here makes either a MUST."""
    result = report.results["tlsfail"]
    if not result.sent.accepted:
        evidence.add("after_failed_handshake", f"not judged: {result.sent.reason}")
        return
    plain = [a for a in result.arrivals if not a.tls_version]
    what = (f"delivered in plaintext to {plain[0].host}" if plain else
            f"delivered to {_where(result.arrivals[0])}" if result.arrivals else
            f"not delivered within {result.waited:.1f} s (deferred)")
    evidence.add("after_failed_handshake", f"{result.sent.recipient}: {what} ({result.connections} connection(s)) "
                 f"at an MX host that answers STARTTLS with 220 and fails the handshake; RFC 7435 lets a sender "
                 f"go on in cleartext or defer")


@pytest.mark.requirement("OUT-RETRY-01")
def test_retries_after_4xx(outbound_lab: LabReport, evidence: Evidence) -> None:
    """The lab MX answers the first DATA with 451: the message must come again, and only once."""
    result = scenario(outbound_lab, "tempfail")
    _record(evidence, outbound_lab, result)
    if not result.delivered:
        _delivered_somewhere(outbound_lab)
    assert result.delivered, (f"the gateway did not deliver {result.sent.recipient} again within "
                              f"{result.waited:.1f} s after the MX answered 451 ({result.connections} connection(s))")
    assert len(result.arrivals) == 1, (f"the gateway delivered {result.sent.recipient} "
                                       f"{len(result.arrivals)} times after a 451")


@pytest.mark.requirement("OUT-BACKUP-01")
def test_secondary_mx(outbound_lab: LabReport, evidence: Evidence) -> None:
    """The primary MX host answers 421 to every connection: the next MX host must get the mail."""
    result = scenario(outbound_lab, "backup")
    _record(evidence, outbound_lab, result)
    if not result.delivered:
        _delivered_somewhere(outbound_lab)
    assert result.delivered, (f"the gateway did not deliver {result.sent.recipient} to the secondary MX host "
                              f"within {result.waited:.1f} s while the primary was down")
    assert len(result.arrivals) == 1, f"{result.sent.recipient} arrived {len(result.arrivals)} times"


@pytest.mark.requirement("OUT-STS-01")
def test_mta_sts_enforced(outbound_lab: LabReport, evidence: Evidence) -> None:
    """Domains with an enforce policy: one whose MX host the policy names with a lab-CA certificate (the
    positive control), one whose MX host the policy does not name, three whose MX certificates fail PKIX
    (self-signed; issued for another name; expired). Only the first may get mail."""
    good = scenario(outbound_lab, "sts-enforce")
    outside, badcerts = scenario(outbound_lab, "sts-outside"), [
        scenario(outbound_lab, name) for name in ("sts-badcert", "sts-wrongname", "sts-expired")]
    _record(evidence, outbound_lab, good, outside, *badcerts)
    assert not outside.arrivals, (f"the gateway delivered {outside.sent.recipient} to {_where(outside.arrivals[0])}, "
                                  f"an MX host its domain's MTA-STS policy (enforce) does not name")
    for bad in badcerts:
        assert not bad.arrivals, (f"the gateway delivered {bad.sent.recipient} to {_where(bad.arrivals[0])} although "
                                  f"its certificate ({bad.scenario.mx[0].value.removeprefix('STARTTLS with ')}) fails "
                                  f"PKIX validation and the domain's MTA-STS policy is in enforce mode")
    for refused in (outside, *badcerts):
        _no_delivery_reported(outbound_lab, refused, "its domain's MTA-STS policy (enforce)")
    assert good.delivered, (f"the gateway delivered nothing for {good.sent.recipient} within {good.waited:.1f} s, "
                            f"although the MX host is named by the MTA-STS policy and its certificate is valid")
    plain = [a for a in good.arrivals if not a.tls_version]
    assert not plain, f"the gateway delivered {good.sent.recipient} in plaintext under an MTA-STS enforce policy"


@pytest.mark.requirement("OUT-STS-02")
def test_mta_sts_testing_delivers(outbound_lab: LabReport, evidence: Evidence) -> None:
    """testing mode: report failures, deliver anyway (here: a self-signed MX certificate)."""
    result = scenario(outbound_lab, "sts-testing")
    _record(evidence, outbound_lab, result)
    if not result.delivered:
        _delivered_somewhere(outbound_lab)
    assert result.delivered, (f"the gateway delivered nothing for {result.sent.recipient} within "
                              f"{result.waited:.1f} s: an MTA-STS policy in testing mode must not stop delivery")


@pytest.mark.requirement("OUT-DKIM-01")
def test_dkim_signed(outbound_dkim: DkimVerdict, target: Target, evidence: Evidence) -> None:
    """Verified with dkimpy against the key in the sender's DNS."""
    dkim = outbound_dkim
    evidence.add("dkim", f"d={dkim.domain} a={dkim.algorithm} key={dkim.key_bits} bits l={dkim.body_length}")
    account = target.account("test")
    sender = account.address if account else "the test account"
    domain = sender.rpartition("@")[2].lower()
    assert dkim.signed, f"mail from {sender} left the gateway without a DKIM-Signature"
    assert dkim.valid, f"the DKIM signature on mail from {sender} does not verify: {dkim.error}"
    assert dkim.algorithm in GOOD_ALGORITHMS, (f"the gateway signs mail from {sender} with {dkim.algorithm} "
                                               f"(d={dkim.domain}): use rsa-sha256 or ed25519-sha256")
    assert not (dkim.algorithm == "rsa-sha256" and (dkim.key_bits or 0) < MIN_RSA_BITS), (
        f"the DKIM key signing mail from {sender} (d={dkim.domain}) has {dkim.key_bits} bits: at least {MIN_RSA_BITS}")
    assert dkim.body_length is None, (f"the DKIM signature on mail from {sender} has l={dkim.body_length}: content "
                                      f"can be appended under it")
    assert (dkim.domain or "").lower() == domain, (f"the DKIM signature on mail from {sender} is of "
                                                   f"d={dkim.domain}, not of the sender's domain {domain}")


@pytest.mark.requirement("OUT-TLSRPT-01")
def test_tlsrpt_sent(outbound_lab: LabReport, evidence: Evidence) -> None:
    """After the scenarios, the operator's hook makes the gateway send its reports: every domain whose MX host
    it refused for a TLSA or MTA-STS failure must be in a report, its failed sessions counted."""
    run = outbound_lab.tlsrpt
    if run is None:
        pytest.skip("no [outbound] tlsrpt_send hook: the suite cannot make the gateway send its TLS-RPT "
                    "reports within the run (they go out once a day)")
    if not run.hook_ok:
        raise Inconclusive(run.hook_reason)
    _delivered_somewhere(outbound_lab)
    refused = [r for r in (scenario(outbound_lab, name) for name in REPORTED_REFUSALS)
               if not r.delivered and r.connections]
    if not refused:
        raise Inconclusive("the gateway refused no MX host for a TLSA or MTA-STS failure (it delivered or never "
                           "connected): there was no failure to report")
    evidence.add("tlsrpt", f"{len(run.reports)} report(s) at {run.address}, {run.waited:.1f} s after the hook")
    assert run.reports, (f"no TLS-RPT report arrived at {run.address} (the rua of every scenario's _smtp._tls) "
                         f"within {outbound_lab.window:g} s after the tlsrpt_send hook ran ({run.hook_reason})")
    reports = [parse_report(message) for message in run.reports]
    problems = [r.problem for r in reports if r.problem]
    assert not problems, f"the TLS-RPT report at {run.address} is not RFC 8460's: {problems[0]}"
    for result in refused:
        domain = result.sent.recipient.rpartition("@")[2]
        named = [p for r in reports if (p := r.policy(domain)) is not None]
        assert named, (f"the TLS-RPT reports at {run.address} name no policy for {domain}, where the gateway "
                       f"refused its MX host ({result.scenario.name})")
        evidence.add("tlsrpt", ", ".join(f"{p.domain}: {p.policy_type}, {p.failures} failed {p.result_types}"
                                         for p in named))
        assert any(p.failures >= 1 for p in named), (
            f"the TLS-RPT report for {domain} at {run.address} counts no failed session, although the gateway "
            f"refused its MX host ({result.scenario.name})")


@pytest.mark.requirement("OUT-STS-03")
def test_mta_sts_wildcard_policy_host_refused(outbound_lab: LabReport, evidence: Evidence) -> None:
    """BSI profile: the policy host serves a certificate for *.<domain> and its enforce policy names another MX
    host. A sender that refuses the policy delivers over opportunistic TLS; one that accepts it delivers nothing.
    Only a sender that applies MTA-STS at all (the controls of OUT-STS-01) makes the outcome evidence."""
    result, outside = scenario(outbound_lab, "sts-wildcard"), scenario(outbound_lab, "sts-outside")
    control = scenario(outbound_lab, "sts-enforce")
    _record(evidence, outbound_lab, result, outside, control)
    pattern = f"*.{result.sent.recipient.rpartition('@')[2]}"
    if outside.delivered:
        raise Inconclusive(f"the gateway delivered {outside.sent.recipient} to an MX host its MTA-STS policy does "
                           f"not name: it does not apply MTA-STS, so delivery under the {pattern} policy proves nothing")
    if not control.delivered:
        _delivered_somewhere(outbound_lab)
        raise Inconclusive(f"nothing arrived for {control.sent.recipient} (an MX host named by a valid MTA-STS "
                           f"policy) within {control.waited:.1f} s: no delivery under the {pattern} policy proves nothing")
    assert result.delivered, (
        f"the gateway delivered nothing for {result.sent.recipient} within {result.waited:.1f} s: it accepted an "
        f"MTA-STS policy served under a wildcard certificate ({pattern}): TR-03108 4.1.8 requires refusing it "
        f"(and delivering over opportunistic TLS)")
    plain = [a for a in result.arrivals if not a.tls_version]
    assert not plain, (f"the gateway delivered {result.sent.recipient} to {plain[0].host} in plaintext although the "
                       f"host offered STARTTLS")
