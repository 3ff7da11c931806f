"""Failover: redundancy (passive) and what the gateway does while a node or a backend is down (active).

Active checks take one component of one node down at a time through the target's hooks and run only
with ``--mail-allow-disruption``; without it they are skipped and the summary says why. A node
without a hook for the component is skipped ("target has no outage hooks for delivery"). Mail goes
only to the target's own test account.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.failover import NodeOutage, NoLossRun, Recovery
from conformance.probes.auth.logins import LoginOutcome, LoginResult
from conformance.probes.dns.mx import MxSet
from conformance.probes.failover.outage import SessionEnd, Transaction
from conformance.probes.wire.outcome import Attempt
from conformance.target import Endpoint, Target
from conformance.verdict import Inconclusive

SMTP = ("mx", "submission", "submissions")
AUTH = ("submission", "submissions", "imap", "imaps", "pop3", "pop3s")
ALL = ("mx", "submission", "submissions", "imap", "imaps")
WITH_POP3 = (*ALL, "pop3", "pop3s")
ACTIVE = pytest.mark.xdist_group("active")  # outages must not overlap lockouts or each other

R = TypeVar("R")


def _outage_evidence(outage: NodeOutage[Any], endpoint: Endpoint, evidence: Evidence) -> None:
    node = endpoint.node
    for key, values in (("outage", outage.outages), ("hooks", outage.hook_output), ("recovery", outage.recovery)):
        if node in values:
            evidence.add(key, values[node])


def _outage_attempt(outage: NodeOutage[R], endpoint: Endpoint, target: Target, evidence: Evidence) -> Attempt[R]:
    """The endpoint's attempt during the outage (skipped without one), with the node's outage as evidence."""
    attempt = outage.for_endpoint(endpoint, target)
    _outage_evidence(outage, endpoint, evidence)
    return attempt


def _outage_result(outage: NodeOutage[R], endpoint: Endpoint, target: Target, evidence: Evidence) -> R:
    return evidence.require(_outage_attempt(outage, endpoint, target, evidence))


@pytest.mark.requirement("FAIL-REDUNDANT-01")
def test_every_service_has_two_nodes(target: Target, mx_set: Attempt[MxSet] | None, evidence: Evidence) -> None:
    """A single node is a single point of failure: its outage is the whole service's outage."""
    thin: list[str] = []
    for service in sorted({e.service for e in target.endpoints}):
        nodes = sorted({e.node for e in target.endpoints_for(service)})
        evidence.add(f"nodes.{service}", nodes)
        if len(nodes) < 2:
            only = target.endpoints_for(service)[0]
            thin.append(f"{service} is served by one node only ({only.id}, {only.host})")
    if mx_set is not None:
        found = evidence.require(mx_set)
        evidence.add("mx", [f"{h.preference} {h.host}" for h in found.hosts] or "none")
        if found.null_mx or found.nxdomain:
            raise Inconclusive(f"{found.domain}: {'null MX' if found.null_mx else 'NXDOMAIN'}: "
                               "the domain receives no mail, redundancy cannot be judged")
        if len(set(found.names)) < 2:
            thin.append(f"{found.domain} has {len(found.names)} MX host(s) ({', '.join(found.names) or 'none'}) "
                        f"via resolver {found.resolver}")
    assert not thin, "no redundancy: " + "; ".join(thin) + ". Run at least two nodes (and MX hosts) per service."


@pytest.mark.requirement("FAIL-TEMP-01")
@ACTIVE
@pytest.mark.service(*SMTP)
def test_delivery_outage_answers_4xx(endpoint: Endpoint, target: Target, delivery_outage: NodeOutage[Transaction],
                                     evidence: Evidence) -> None:
    """A 5xx while the store is down makes the sender bounce the message: the outage becomes data loss."""
    found = _outage_result(delivery_outage, endpoint, target, evidence)
    evidence.add("replies", found.summary())
    permanent = found.first_permanent()
    assert permanent is None, (
        f"{endpoint}: answered {permanent.code} at {permanent.stage} ({permanent.text}) while delivery on "
        f"node {endpoint.node} was down; answer 451/452/421 so senders retry (RFC 5321 4.2.5)")
    if not found.completed and found.reply("MAIL") is None:
        last = found.replies[-1] if found.replies else None
        # A 4xx greeting or EHLO is a temporary answer a sender retries on; a refused STARTTLS or AUTH
        # only means this probe could not reach the mail transaction.
        if last is None or last.code is None or last.code < 400 or last.stage in ("STARTTLS", "AUTH"):
            raise Inconclusive(f"{endpoint}: the transaction stopped before MAIL: {found.summary()}")
        assert last.code < 500, f"{endpoint}: answered {last} while delivery on node {endpoint.node} was down"


@pytest.mark.requirement("FAIL-AUTHDOWN-01")
@ACTIVE
@pytest.mark.service(*AUTH)
def test_auth_outage_is_temporary(endpoint: Endpoint, target: Target, auth_outage: NodeOutage[LoginResult],
                                  evidence: Evidence) -> None:
    """A client told 'wrong password' prompts its user and retries: that is how real users got locked out."""
    login = _outage_result(auth_outage, endpoint, target, evidence)
    evidence.add("answer", login.reply)
    expected = {"smtp": "454 4.7.0", "pop3": "-ERR [SYS/TEMP]"}.get(endpoint.protocol, "NO [UNAVAILABLE]")
    assert login.outcome is not LoginOutcome.REJECTED, (
        f"{endpoint}: the correct password got '{login.reply}' while the auth backend of node {endpoint.node} "
        f"was down; answer {expected} (a temporary failure), never 'wrong password'")
    if login.outcome is LoginOutcome.ACCEPTED:
        raise Inconclusive(f"{endpoint}: login accepted while the auth backend was down: the outage hook had "
                           "no visible effect (cached credentials?)")
    assert login.outcome is LoginOutcome.TEMPORARY, (
        f"{endpoint}: answered '{login.reply}' while the auth backend was down; expected {expected}")


@pytest.mark.requirement("FAIL-DIR-01")
@ACTIVE
@pytest.mark.service(*SMTP)
def test_directory_outage_keeps_valid_recipients(endpoint: Endpoint, target: Target,
                                                 directory_outage: NodeOutage[Transaction],
                                                 evidence: Evidence) -> None:
    """550 5.1.1 for a valid user tells every sender the mailbox does not exist: mail bounces for good."""
    found = _outage_result(directory_outage, endpoint, target, evidence)
    evidence.add("replies", found.summary())
    permanent = found.first_permanent(("greeting", "MAIL", "RCPT"))
    assert permanent is None, (
        f"{endpoint}: answered {permanent.code} at {permanent.stage} ({permanent.text}) for the valid test "
        f"account while the directory of node {endpoint.node} was down; answer 451 4.3.0 (RFC 5321 4.2.5)")
    if found.reply("RCPT") is None:
        raise Inconclusive(f"{endpoint}: the transaction stopped before RCPT: {found.summary()}")


@pytest.mark.requirement("FAIL-DATA-01")
@ACTIVE
@pytest.mark.service(*SMTP)
def test_data_reply_in_time_while_backend_stalls(endpoint: Endpoint, target: Target,
                                                 stall_outage: NodeOutage[Transaction], evidence: Evidence) -> None:
    """A reply later than the sender's patience makes it resend a message the gateway already took."""
    found = _outage_result(stall_outage, endpoint, target, evidence)
    budget = target.policy.data_reply_budget
    evidence.add("budget", f"{budget:g} s")
    evidence.add("replies", found.summary())
    data = found.reply("DATA")
    if data is None:
        raise Inconclusive(f"{endpoint}: the transaction stopped before DATA: {found.summary()}")
    evidence.add("data_latency", f"{data.seconds:.2f} s")
    assert data.code is not None, (
        f"{endpoint}: no reply to DATA within {data.seconds:.0f} s while the backend of node {endpoint.node} "
        f"stalled ({data.text}); reply (4xx or 250) within {budget:g} s")
    assert data.seconds <= budget, (
        f"{endpoint}: the reply to DATA came after {data.seconds:.1f} s while the backend of node "
        f"{endpoint.node} stalled (budget {budget:g} s): senders time out and resend; queue and answer at once")


@pytest.mark.requirement("FAIL-NOLOSS-01")
@ACTIVE
@pytest.mark.service("submission", "submissions")
def test_no_mail_lost_or_duplicated(endpoint: Endpoint, target: Target, noloss_runs: NodeOutage[NoLossRun],
                                    evidence: Evidence) -> None:
    """Every 250 is a promise (RFC 5321 6.1): the message arrives, once, within the recovery-time objective."""
    run = _outage_result(noloss_runs, endpoint, target, evidence)
    report = run.report
    if report is None:
        raise Inconclusive(f"{endpoint}: could not read the test account's mailbox back: {run.readback.reason}")
    evidence.add("counts", report.summary())
    evidence.add("replies", list(report.replies)[-20:])
    for name in ("lost", "duplicated", "late", "rejected", "given_up"):
        if getattr(report, name):
            evidence.add(f"tokens.{name}", getattr(report, name))
    if report.accepted == 0:
        raise Inconclusive(f"{endpoint}: no test message was accepted (node {endpoint.node}): {report.summary()}")
    problems = []
    if report.lost:
        problems.append(f"{len(report.lost)} accepted message(s) never arrived ({', '.join(report.lost)})")
    if report.duplicated:
        problems.append(f"{len(report.duplicated)} arrived more than once ({', '.join(report.duplicated)})")
    if report.late:
        problems.append(f"{len(report.late)} arrived after the {run.deadline:g} s recovery-time objective "
                        f"({', '.join(report.late)})")
    assert not problems, (f"node {endpoint.node} delivery outage: " + "; ".join(problems)
                          + f" [{report.summary()}]")


@pytest.mark.requirement("FAIL-SHUTDOWN-01")
@ACTIVE
@pytest.mark.service(*WITH_POP3)
def test_shutdown_says_421_not_reset(endpoint: Endpoint, target: Target, shutdown_endings: NodeOutage[SessionEnd],
                                     evidence: Evidence) -> None:
    """A reset in the middle of DATA leaves the sender guessing whether its message was taken."""
    end = _outage_result(shutdown_endings, endpoint, target, evidence)
    evidence.add("session", end.held)
    evidence.add("ending", f"{end.ending}: {end.detail}")
    if end.ending.value == "open":
        raise Inconclusive(f"{endpoint}: the session stayed open and silent after node {endpoint.node} went down "
                           f"({end.detail}): did the down hook take the node down?")
    expected = {"smtp": "421", "pop3": "-ERR [SYS/TEMP]"}.get(endpoint.protocol, "* BYE")
    assert end.orderly, (f"{endpoint}: when node {endpoint.node} went down, the {end.held} ended with "
                         f"{end.ending} ({end.detail}); answer open sessions {expected} before closing")


@pytest.mark.requirement("FAIL-RECOVER-01")
@ACTIVE
@pytest.mark.service(*WITH_POP3)
def test_recovery_within_objective(endpoint: Endpoint, target: Target, recovery_runs: NodeOutage[Recovery],
                                   evidence: Evidence) -> None:
    """After the outage every client reconnects at once: the service must be back, and let them all in."""
    found = _outage_result(recovery_runs, endpoint, target, evidence)
    seconds = found.seconds
    evidence.add("recovered_after", "never" if seconds is None else f"{seconds:.2f} s")
    assert seconds is not None and seconds <= found.objective, (
        f"{endpoint}: node {endpoint.node} answered again "
        + ("never" if seconds is None else f"{seconds:.1f} s")
        + f" after `up`, later than its recovery-time objective of {found.objective:g} s")
    if found.burst is None:
        return
    run = evidence.require(found.burst)
    mine = [x for x in run.logins if x.endpoint == endpoint.id]
    evidence.add("burst", f"{sum(x.accepted for x in run.logins)} of {len(run.logins)} concurrent logins accepted")
    refused = [x for x in mine if not x.accepted]
    evidence.add("burst_here", f"{len(mine) - len(refused)} of {len(mine)} on this endpoint accepted")
    assert not refused, (
        f"{endpoint}: {len(refused)} of {len(mine)} concurrent correct logins after node {endpoint.node} "
        f"recovered were refused ({refused[0].code}: {refused[0].reply}); reconnecting clients must get in")
    assert run.final_accepted, (f"{endpoint}: after the login burst the test account was refused "
                                f"({run.final[0].code if run.final else 'no answer'}): the burst locked it")
