"""Lockout: brute force is stopped, and legitimate users survive failures, outages and recoveries.

These checks lock the target's dedicated ``lockout`` account: they run only with
``--mail-allow-lockout`` (LOCK-OUTAGE-01 also with ``--mail-allow-disruption``). They share that
account, so under pytest-xdist run them with ``--dist loadgroup`` (they are one xdist group).
Every check reports what was sent and answered (attempts, answer codes, delays, unlock time).
"""

from __future__ import annotations

import statistics
from typing import TypeVar

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.lockout import LockoutContext
from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.lockout.outage import OutageRun
from conformance.probes.lockout.sequences import THROTTLE_FLOOR, Episode, Login, LoginRun, delays, summarize
from conformance.probes.wire.outcome import Attempt
from conformance.verdict import Inconclusive

pytestmark = pytest.mark.xdist_group("active")

Run = TypeVar("Run", Episode, LoginRun)

# Locked answers of an existing and an unknown account may differ in median time by at most this (seconds).
ORACLE_TIMING = 0.25


def _episode_evidence(evidence: Evidence, ep: Episode, prefix: str = "") -> None:
    evidence.add(f"{prefix}via", ep.via)
    evidence.add(f"{prefix}attempts", f"{len(ep.failures)} wrong passwords (policy threshold {ep.threshold})")
    evidence.add(f"{prefix}failure_answers", summarize(ep.failures))
    evidence.add(f"{prefix}failure_delays", delays(ep.failures))
    evidence.add(f"{prefix}correct_while_locked", ep.locked_correct.brief())
    evidence.add(f"{prefix}unlock", ep.unlock.brief())


# When another requirement's failure leaves nothing to judge (no lock, a wrong password accepted) a
# check is skipped with a pointer to that requirement: not inconclusive, since nothing was unproven.
def _failures_made(run: Episode | LoginRun) -> None:
    """A server that accepted a wrong password saw no failure to count: nothing here can be judged."""
    if run.wrong_accepted:
        pytest.skip(f"a wrong password was accepted ({_where(run.wrong_accepted[:3])}; see AUTH-WRONG-01): "
                    f"there were no failed logins to count")


def _require_lock(ep: Episode, what: str) -> None:
    if not ep.locked:
        how = "it throttles failures instead" if ep.throttled else "see LOCK-THRESHOLD-01"
        pytest.skip(f"the account did not lock after {len(ep.failures)} failures on {ep.via} (the correct "
                    f"password got {ep.locked_correct.code} after {ep.locked_correct.elapsed:.1f} s; {how}), "
                    f"so {what} cannot be judged")


def _where(logins: list[Login] | tuple[Login, ...]) -> str:
    return "; ".join(f"{x.endpoint}: {x.code}" for x in logins)


def _briefs(logins: list[Login] | tuple[Login, ...]) -> str:
    return "; ".join(x.brief() for x in logins)


def _unlock_evidence(evidence: Evidence, run: LoginRun | OutageRun) -> None:
    if run.unlock is not None:  # only a run that ended locked waited for the lock to lift
        evidence.add("unlock", run.unlock.brief())


def _with_failures(attempt: Attempt[Run], evidence: Evidence) -> Run:
    """The run's result; skipped when it made no failure to judge."""
    run = evidence.require(attempt)
    _failures_made(run)
    return run


def _judged_episode(attempt: Attempt[Episode], evidence: Evidence) -> Episode:
    """The lockout episode, with its evidence; skipped when no failure was made."""
    ep = _with_failures(attempt, evidence)
    _episode_evidence(evidence, ep)
    return ep


def _locked_episodes(forward: Attempt[Episode], reverse: Attempt[Episode] | None, evidence: Evidence,
                     what: str) -> list[Episode]:
    """The episodes (one per protocol order) that locked; skipped when none did, so ``what`` cannot be judged."""
    # both are required before either is judged: a reverse episode that failed outright outranks a skip
    episodes = [evidence.require(x) for x in (forward, reverse) if x is not None]
    for ep in episodes:
        _failures_made(ep)
    locked = [ep for ep in episodes if ep.locked]
    if not locked:
        _require_lock(episodes[0], what)
    return locked


@pytest.mark.requirement("LOCK-THRESHOLD-01")
def test_lockout_after_threshold(lockout_episode: Attempt[Episode], lockout_context: LockoutContext,
                                 evidence: Evidence) -> None:
    ep = _judged_episode(lockout_episode, evidence)
    if ep.locked:
        evidence.add("verdict_basis", "locked")
        return
    # throttling instead of a lock: acceptable when every failure past the threshold is held back
    # (a server that delays failures meets NIST SP 800-63B §5.2.2 when the delay bounds guessing)
    slowest_floor = min(x.elapsed for x in ep.failures[ep.threshold - 1:])
    evidence.add("verdict_basis", f"not locked; failures past the threshold held back at least "
                                  f"{slowest_floor * 1000:.0f} ms" + (" (throttled)" if ep.throttled else ""))
    assert ep.throttled, (
        f"{lockout_context.account.username}: after {len(ep.failures)} consecutive wrong passwords on {ep.via} "
        f"(policy threshold {ep.threshold}) the correct password is still accepted ({ep.locked_correct.code}) and "
        f"failures are answered in {delays(ep.failures)}: nothing stops password guessing. Lock the account after "
        f"the threshold (NIST SP 800-63B §5.2.2: at most 100) or delay failures by at least {THROTTLE_FLOOR:g} s")


@pytest.mark.requirement("LOCK-CROSS-01")
def test_lockout_shared_across_protocols(lockout_episode: Attempt[Episode],
                                         lockout_episode_reverse: Attempt[Episode] | None,
                                         evidence: Evidence) -> None:
    locked = _locked_episodes(lockout_episode, lockout_episode_reverse, evidence, "a lock across protocols")
    bypasses = []
    for ep in locked:
        evidence.add(f"locked_via_{ep.via}", f"{summarize(ep.failures)}; elsewhere: {_where(ep.elsewhere)}")
        open_ = [x.endpoint for x in ep.elsewhere if x.accepted]
        if open_:
            bypasses.append(f"locked via {ep.via}, the correct password still works on {', '.join(open_)}")
    assert not bypasses, (
        f"the lock does not hold across protocols, ports and nodes: {'; '.join(bypasses)}. An attacker switches "
        f"protocol or node and keeps guessing; keep one failure count per account for SMTP AUTH, IMAP and POP3")


@pytest.mark.requirement("LOCK-RECOVER-01")
def test_lock_lifts_by_itself(lockout_episode: Attempt[Episode], lockout_context: LockoutContext,
                              evidence: Evidence) -> None:
    ep = _judged_episode(lockout_episode, evidence)
    _require_lock(ep, "recovery")
    policy = lockout_context.target.policy
    evidence.add("unlock_seconds", f"{ep.unlock.seconds:.1f}" if ep.unlock.seconds is not None else "never")
    assert ep.unlock.unlocked, (
        f"{lockout_context.account.username} is {ep.unlock.brief()} (policy lockout_duration "
        f"{policy.lockout_duration:g} s): a lock that does not lift by itself turns every attack, and every "
        f"client retrying an old password, into a standing lockout of the real user")


@pytest.mark.requirement("LOCK-RESET-01")
def test_success_resets_failure_count(lockout_reset: Attempt[LoginRun], lockout_context: LockoutContext,
                                      evidence: Evidence) -> None:
    run = _with_failures(lockout_reset, evidence)
    evidence.add("sequence", summarize(run.logins))
    evidence.add("final", _briefs(run.final))
    _unlock_evidence(evidence, run)
    below = lockout_context.plan.threshold - 1
    if below < 1:
        pytest.skip("policy lockout_threshold is 1: every failure locks, there is no count for a success to reset")
    reset = next((x for x in run.logins if x.label == "reset"), None)
    if reset is not None and not reset.accepted:
        raise Inconclusive(f"the correct password was refused on {reset.endpoint} ({reset.code}) after only {below} "
                           f"failures, below the policy threshold: the target's lockout_threshold does not match "
                           f"the server")
    final = run.final[-1]
    assert run.final_accepted, (
        f"{lockout_context.account.username} on {final.endpoint}: {below} wrong passwords, a successful login, "
        f"{below} more wrong passwords, and the correct password is then refused ({final.code}). The success did "
        f"not reset the failure count, so a user who mistypes now and then is locked out over days")


@pytest.mark.requirement("LOCK-ORACLE-01")
def test_lock_reveals_no_account(lockout_episode: Attempt[Episode], evidence: Evidence) -> None:
    ep = _with_failures(lockout_episode, evidence)
    evidence.add("existing_answers", summarize(ep.failures))
    evidence.add("unknown_answers", summarize(ep.unknown))
    evidence.add("existing_delays", delays(ep.failures))
    evidence.add("unknown_delays", delays(ep.unknown))
    if not ep.unknown:
        raise Inconclusive("no unknown-user sequence was made")
    # Past the threshold both names have had the same failures; compare the answers there as sets.
    # An answer held back by throttling reflects the throttle (per client address: Postfix's 454 when
    # Dovecot's penalty runs long), not the account, so only prompt answers are compared; the delays
    # are compared below. Earlier answers for unknown users are ENUM-AUTH-01's business.
    # A login that got no answer at all (dropped, timed out) says nothing about the account either.
    existing = sorted({x.code for x in ep.failures[ep.threshold:] if x.outcome is not None and x.elapsed < THROTTLE_FLOOR})
    unknown = sorted({x.code for x in ep.unknown[ep.threshold:] if x.outcome is not None and x.elapsed < THROTTLE_FLOOR})
    assert existing == unknown, (
        f"after {ep.threshold} failures the existing account answers {', '.join(existing) or '(only slowly)'} but "
        f"a non-existent one answers {', '.join(unknown) or '(only slowly)'} on {ep.via}: the lock itself tells an attacker which accounts exist. "
        f"Count and lock unknown user names exactly like real ones")
    # the same for the time the answers take (before the threshold that is ENUM-TIMING-01's business)
    mine = [x.elapsed for x in ep.failures[ep.threshold:] if x.outcome is not None and x.elapsed < THROTTLE_FLOOR]
    theirs = [x.elapsed for x in ep.unknown[ep.threshold:] if x.outcome is not None and x.elapsed < THROTTLE_FLOOR]
    if mine and theirs:
        a, b = statistics.median(mine), statistics.median(theirs)
        evidence.add("locked_median_delay_ms", f"existing {a * 1000:.0f}, unknown {b * 1000:.0f}")
        assert abs(a - b) <= ORACLE_TIMING, (
            f"past the threshold the existing account is answered in {a * 1000:.0f} ms (median), a non-existent "
            f"one in {b * 1000:.0f} ms on {ep.via}: the timing of the lock reveals which accounts exist")


@pytest.mark.requirement("LOCK-TEMPFAIL-01")
def test_locked_correct_password_is_not_wrong_password(lockout_episode: Attempt[Episode],
                                                       lockout_episode_reverse: Attempt[Episode] | None,
                                                       evidence: Evidence) -> None:
    locked = _locked_episodes(lockout_episode, lockout_episode_reverse, evidence,
                              "the answer to the correct password while locked")
    answers = [x for ep in locked for x in ep.answers_while_locked if x.outcome is not None]
    evidence.add("answers_while_locked", summarize(answers))
    # only the wrong-password answer makes a client re-prompt; other refusals (a BAD to LOGIN on a
    # PREAUTH session, a mechanism refused) are other checks' business
    bad = [x for x in answers if x.outcome is LoginOutcome.REJECTED]
    assert not bad, (
        f"while the account was locked the correct password was answered as a failure ({_where(bad[:4])}): "
        f"a mail client takes 535 / [AUTHENTICATIONFAILED] to mean the password is wrong and asks its user for a "
        f"new one. Answer 454 4.7.0 (RFC 4954 §6) and NO [UNAVAILABLE] (RFC 5530) while locked")


@pytest.mark.requirement("LOCK-OUTAGE-01")
def test_outage_retries_not_counted(lockout_outage: Attempt[OutageRun], lockout_context: LockoutContext,
                                    evidence: Evidence) -> None:
    run = evidence.require(lockout_outage)
    evidence.add("during_outage", summarize(run.during))
    evidence.add("after_recovery", _briefs(run.after))
    evidence.add("hooks", " | ".join(run.hooks))
    evidence.add("outage", "; ".join(run.outages))
    _unlock_evidence(evidence, run)
    if not run.outage_seen:
        raise Inconclusive("every login during the outage was accepted: the auth outage hook did not take "
                           "authentication down")
    refused = [x for x in run.after if not x.accepted]
    assert not refused, (
        f"{len(run.during)} correct-password retries during an auth backend outage (answered "
        f"{summarize(run.during)}), then after recovery: {_where(refused)}. The server counted logins it could "
        f"not check as the user's failures, so every user whose client retried is locked out after the outage")


@pytest.mark.requirement("LOCK-BURST-01")
def test_burst_of_relogins_succeeds(lockout_burst: Attempt[LoginRun], evidence: Evidence) -> None:
    run = evidence.require(lockout_burst)
    evidence.add("burst", f"{len(run.logins)} concurrent logins: {summarize(sorted(run.logins, key=lambda x: x.code))}")
    evidence.add("notes", "; ".join(run.notes))
    evidence.add("after_burst", _briefs(run.final))
    _unlock_evidence(evidence, run)
    failed = [x for x in run.logins if not x.accepted]
    assert not failed and run.final_accepted, (
        f"of {len(run.logins)} concurrent logins with the correct password, {len(failed)} failed "
        f"({_where(failed[:4])}); the next login on {run.final[-1].endpoint} got {run.final[-1].code}. After an outage every client of a user "
        f"reconnects at once: they must all get in, and none may count as a failure")


@pytest.mark.requirement("LOCK-STALE-01")
def test_repeated_password_counts_once(lockout_stale: Attempt[LoginRun], evidence: Evidence) -> None:
    run = _with_failures(lockout_stale, evidence)
    evidence.add("repeats", f"{len(run.logins)} x the same wrong password: {summarize(run.logins)}")
    evidence.add("final", _briefs(run.final))
    _unlock_evidence(evidence, run)
    assert run.final_accepted, (
        f"{run.final[-1].endpoint}: the same wrong password {len(run.logins)} times (a phone still holding an old "
        f"password), then the correct one: refused ({run.final[-1].code}). Every repeat counted, so one stale device locks its user "
        f"out; count a repeat of a recent wrong password once (as Dovecot and Microsoft Entra do)")


@pytest.mark.requirement("LOCK-COLLATERAL-01")
def test_no_collateral_lock(lockout_episode: Attempt[Episode], lockout_context: LockoutContext,
                            evidence: Evidence) -> None:
    ep = _with_failures(lockout_episode, evidence)
    if ep.collateral is None and lockout_context.other_refused:
        raise Inconclusive(lockout_context.other_refused)
    if ep.collateral is None:
        pytest.skip("target has no [accounts.test] to check for collateral locking")
    _require_lock(ep, "collateral locking")
    evidence.add("locked_account", summarize(ep.failures))
    evidence.add("other_account", ep.collateral.brief())
    if ep.collateral.outcome is None:
        raise Inconclusive(f"the test account's login got no answer: {ep.collateral.reply}")
    assert ep.collateral.accepted, (
        f"while the lockout account was locked, the test account's correct password was refused on "
        f"{ep.collateral.endpoint} ({ep.collateral.code}): attacking one account locks others out")
