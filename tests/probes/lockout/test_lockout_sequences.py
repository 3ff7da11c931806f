"""Lockout sequences against a small server with a lockout engine (tests/lockout_server.py), good and
with each flaw: the probes record what happened; judging is the checks' job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import run
from lockout_server import ACCOUNTS, LockoutServer, lockout_server

from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.lockout.outage import outage_sequence
from conformance.probes.lockout.sequences import (
    Episode,
    LockoutDriver,
    LockoutPlan,
    LoginRun,
    burst,
    lock_episode,
    reset_sequence,
    stale_sequence,
)
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.connect import HostLimiter
from conformance.probes.wire.outcome import Outcome
from conformance.target import Account, Endpoint, Policy, Secret, Service, load_target

pytestmark = pytest.mark.unit

LOCKY = Account("lockout", "locky@example.test", Secret(ACCOUNTS["locky@example.test"], "test"), "locky@example.test")
ALICE = Account("test", "alice@example.test", Secret(ACCOUNTS["alice@example.test"], "test"), "alice@example.test")
POLICY = Policy(lockout_threshold=3, lockout_window=1.0, lockout_duration=1.0)


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LockoutServer]:
    flaws = getattr(request, "param", ())
    with lockout_server(tmp_path, flaws=frozenset(flaws)) as srv:
        yield srv


def endpoint(server: LockoutServer, service: str, node: str = "node1") -> Endpoint:
    return Endpoint(Service(service), node, f"mx{node[-1]}.example.test", server.ports[(node, service)], "127.0.0.1")


def driver(server: LockoutServer) -> LockoutDriver:
    assert server.anchor is not None
    cfg = ProbeConfig(timeout=5, trust_anchors=(server.anchor,), use_system_store=False,
                      secrets=tuple(ACCOUNTS.values()), limiter=HostLimiter(4))
    return LockoutDriver(cfg, LockoutPlan.from_policy(POLICY), LOCKY)


def episode(server: LockoutServer) -> Episode:
    others = [endpoint(server, "imap"), endpoint(server, "submission", "node2"), endpoint(server, "imap", "node2")]
    attempt = run(lock_episode(driver(server), endpoint(server, "submission"), others, ALICE))
    assert attempt.outcome is Outcome.COMPLETED, attempt.reason
    assert isinstance(attempt.result, Episode)
    return attempt.result


def test_plan_from_policy_is_bounded() -> None:
    plan = LockoutPlan.from_policy(Policy(lockout_threshold=500, lockout_duration=900, lockout_window=60))
    assert plan.threshold == 100 and plan.budget == 101
    assert plan.unlock_bound == 900 + 225 and plan.poll_interval == 30
    quick = LockoutPlan.from_policy(POLICY)
    assert quick.threshold == 3 and quick.unlock_bound == 3.0 and quick.poll_interval == 0.1


def test_episode_against_a_good_server(server: LockoutServer) -> None:
    ep = episode(server)
    assert len(ep.failures) == len(ep.unknown) == 6  # the episode budget: threshold + 3
    assert [f.code for f in ep.failures] == ["535 5.7.8"] * 3 + ["454 4.7.0"] * 3
    assert [f.code for f in ep.unknown] == ["535 5.7.8"] * 3 + ["454 4.7.0"] * 3
    assert ep.locked and ep.locked_correct.outcome is LoginOutcome.TEMPORARY
    assert {e.code for e in ep.elsewhere} == {"454 4.7.0", "NO [UNAVAILABLE]"}
    assert ep.collateral is not None and ep.collateral.accepted
    assert ep.unlock.unlocked and ep.unlock.seconds is not None and 0.9 < ep.unlock.seconds < 2.0
    assert not any(login.says_wrong_password for login in ep.answers_while_locked)
    # every wrong password was a throwaway; the real one never reaches a transcript
    text = "\n".join(line for f in (*ep.failures, ep.locked_correct) for line in f.transcript)
    assert ACCOUNTS["locky@example.test"] not in text and "AUTH PLAIN <redacted>" in text


@pytest.mark.parametrize("server", [("per_protocol_lockout",)], indirect=True)
def test_episode_per_protocol_lock_is_bypassed_over_imap(server: LockoutServer) -> None:
    ep = episode(server)
    assert ep.locked
    assert {e.endpoint for e in ep.elsewhere if e.accepted} == {"imap@node1", "imap@node2"}


@pytest.mark.parametrize("server", [("locked_says_wrong_password",)], indirect=True)
def test_episode_locked_says_wrong_password(server: LockoutServer) -> None:
    ep = episode(server)
    assert ep.locked and ep.locked_correct.says_wrong_password


@pytest.mark.parametrize("server", [("permanent_lockout",)], indirect=True)
def test_episode_permanent_lock_is_reported_within_the_bound(server: LockoutServer) -> None:
    ep = episode(server)
    assert not ep.unlock.unlocked and ep.unlock.bound == 3.0 and len(ep.unlock.polls) >= 10


@pytest.mark.parametrize("server", [("lockout_oracle",)], indirect=True)
def test_episode_oracle_unknown_user_never_locks(server: LockoutServer) -> None:
    ep = episode(server)
    assert ep.failures[-1].code == "454 4.7.0" and ep.unknown[-1].code == "535 5.7.8"


@pytest.mark.parametrize("server", [("lockout_collateral",)], indirect=True)
def test_episode_collateral(server: LockoutServer) -> None:
    ep = episode(server)
    assert ep.collateral is not None and not ep.collateral.accepted


def test_episode_refuses_to_start_on_a_locked_account(server: LockoutServer) -> None:
    d = driver(server)
    server.engine.locked_until["locky@example.test"] = float("inf")
    attempt = run(lock_episode(d, endpoint(server, "submission"), [], start_bound=0.3))
    assert attempt.outcome is Outcome.INCONCLUSIVE
    assert "454 4.7.0" in attempt.reason and "still locked" in attempt.reason
    assert not any(v == "wrong" for _, _, v in server.engine.log)  # no failure was sent


@pytest.mark.parametrize(("server", "accepted"), [((), True), (("stale_password_counted",), False)],
                         indirect=["server"])
def test_stale_password(server: LockoutServer, accepted: bool) -> None:
    attempt = run(stale_sequence(driver(server), endpoint(server, "imap")))
    result = attempt.result
    assert isinstance(result, LoginRun) and len(result.logins) == 4
    assert result.final_accepted is accepted
    assert (result.unlock is None) is accepted


@pytest.mark.parametrize(("server", "accepted"), [((), True), (("success_no_reset",), False)],
                         indirect=["server"])
def test_reset_after_success(server: LockoutServer, accepted: bool) -> None:
    attempt = run(reset_sequence(driver(server), endpoint(server, "submission")))
    result = attempt.result
    assert isinstance(result, LoginRun)
    assert [x.label for x in result.logins] == ["wrong", "wrong", "reset", "wrong", "wrong"]
    assert result.final_accepted is accepted


@pytest.mark.parametrize(("server", "accepted"), [((), True), (("burst_login_limit",), False)],
                         indirect=["server"])
def test_burst(server: LockoutServer, accepted: bool) -> None:
    attempt = run(burst(driver(server), [endpoint(server, "submission"), endpoint(server, "imap")]))
    result = attempt.result
    assert isinstance(result, LoginRun) and len(result.logins) == 10
    assert all(x.accepted for x in result.logins) is accepted
    assert result.notes == ("10 of 10 logins reached the barrier",)
    if not accepted:  # the burst locked the account; the probe waited until it was usable again
        assert result.unlock is not None and result.unlock.unlocked


@pytest.mark.parametrize(("server", "accepted"), [((), True), (("outage_counts_failures",), False)],
                         indirect=["server"])
def test_outage(server: LockoutServer, accepted: bool, tmp_path: Path) -> None:
    target = load_target(server.write_target(tmp_path / "target.toml"))
    d = driver(server)
    eps = [endpoint(server, "submission"), endpoint(server, "imap")]
    attempt = outage_sequence(d.cfg, d.plan, LOCKY, [target.node("node1")], eps, max_outage=30, recovery_bound=5)
    result = attempt.result
    assert result is not None, attempt.reason
    assert {x.code for x in result.during} == {"454 4.7.0", "NO [UNAVAILABLE]"} and result.outage_seen
    assert result.after_accepted is accepted
    # after a clean recovery every client reconnects at once; after a bad one there is no burst to make
    assert (result.burst is not None and result.burst.final_accepted
            and all(x.accepted for x in result.burst.logins)) is accepted
    assert [line.split(" (")[0] for line in result.hooks] == ["down hook for auth on node1", "up hook for auth on node1"]
    assert not (tmp_path / "auth-down").exists()


def test_a_server_echoing_the_password_does_not_get_it_into_the_record(server: LockoutServer) -> None:
    secret = ACCOUNTS["locky@example.test"]
    server.engine.answer = lambda protocol, verdict: (  # type: ignore[method-assign]
        f"454 4.7.0 {secret} is locked" if protocol == "smtp" else f"NO [{secret}] locked")
    d = driver(server)
    logins = [run(d.correct(endpoint(server, "submission"))), run(d.correct(endpoint(server, "imap")))]
    for login in logins:
        text = " ".join((login.code, login.reply, login.brief(), *login.transcript))
        assert secret not in text and "<redacted>" in login.reply


def test_waiting_for_the_lock_to_lift_says_so_on_the_terminal(server: LockoutServer) -> None:
    """A quiet run waits minutes in a real lockout: the driver says what it waits for, with the time left."""
    lines: list[str] = []
    lock = driver(server)
    lock.progress = lines.append
    for _ in range(POLICY.lockout_threshold):
        run(lock.wrong(endpoint(server, "submission")))
    unlock = run(lock.wait_unlocked(endpoint(server, "submission")))
    assert unlock.unlocked and len(lines) == 1, lines  # one line, not one per poll
    assert lines[0].startswith("lockout: waiting for the lock to lift, ") and lines[0].endswith(" of at most 3 s left")
