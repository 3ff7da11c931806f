"""The failover checks against real Postfix and Dovecot, with operator hooks a real operator would write
(``tests/real/outage_hook.py``: Postfix's and Dovecot's own stop and start commands, SIGSTOP/SIGCONT).

What really happens, found on the live servers, and the verdict the suite must give for it:

- Dovecot stopped (delivery, IMAP and SASL down) while Postfix keeps running: the MX answers 250 and
  queues; after Dovecot is back (and the queue flushed) everything accepted is delivered once.
  FAIL-TEMP-01 passes on the MX, FAIL-NOLOSS-01 passes.
- Dovecot stopped makes Postfix submission drop some sessions at EHLO or AUTH (no SASL): never a 5xx.
- The whole node stopped in an orderly way (``postfix stop``, then Dovecot's stop) while sessions are
  open: Postfix 3.7 ends every smtpd session without a word, even in the middle of DATA, so
  FAIL-SHUTDOWN-01 fails on mx, submission and submissions; Dovecot says ``* BYE Shutting down`` to
  every IMAP session and ``-ERR Shutting down`` to every POP3 session (pass). After `up` every endpoint answers within a second and a burst of
  concurrent correct logins all get in: FAIL-RECOVER-01 passes.
- Dovecot frozen (SIGSTOP on its master and children: a stalled backend): the MX queues and answers
  DATA at once, FAIL-DATA-01 passes there; submission cannot reach SASL and stops before DATA
  (inconclusive, with Postfix's words).
- Only delivery down (Dovecot's LMTP socket unreachable; SASL and IMAP up): the six tagged messages
  submitted before, during and after are all accepted, queued, and after `up` and a queue flush each
  arrives once: FAIL-NOLOSS-01 passes with every phase exercised.
- Outage weaknesses (``OUTAGE_CONFIGS``, invisible to every passive check): Postfix asking Dovecot's
  quota-status policy service at the end of DATA (with Dovecot frozen the MX's reply to DATA waits for
  the policy timeout: FAIL-DATA-01 fails on the MX); and ``maximal_queue_lifetime = 0`` (mail accepted
  while LMTP is unreachable is bounced after one try: FAIL-NOLOSS-01 fails, "never arrived").
- Postfix itself refuses the classic way to reject for good in an outage: a 5xx
  ``unverified_recipient_defer_code`` stops smtpd ("invalid ... parameter value 550 > 499"), and its
  default ``unverified_recipient_reject_code`` is 450.

The user directory outage (FAIL-DIR-01) and the auth backend outage (FAIL-AUTHDOWN-01) need a directory
that can be down: ``test_real_directory.py`` runs them against a PostgreSQL directory. A passwd-file that
disappears is no such outage: Dovecot 2.3.19 re-reads it at most once a second and then alternates
between "unknown user" and its stale copy (seen with ``doveadm auth lookup`` every 0.5 s: found, missing,
found, missing), so what a login gets depends on the second it lands in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real.failover_rig import outage_target, run_checks
from tests.real.servers import GOOD, OUTAGE_CONFIGS, MailServers, unavailable_reason

pytestmark = pytest.mark.real

@pytest.fixture(scope="module")
def servers() -> Iterator[MailServers]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with MailServers(GOOD) as running:
        yield running


@pytest.fixture(scope="module")
def target(servers: MailServers) -> Path:
    return failover_target(servers)


def failover_target(servers: MailServers) -> Path:
    return outage_target(servers, "failover.toml", {"delivery": ("dovecot-stop", "dovecot-start"),
                                                    "node": ("node-stop", "node-start"),
                                                    "stall": ("dovecot-freeze", "dovecot-thaw")})


# Only delivery down: Postfix cannot reach Dovecot's LMTP while SASL and IMAP work, so submissions go on.
LMTP_DOWN = {"delivery": ("lmtp-hide", "lmtp-restore")}
# outage configuration -> (-k selection, requirement that must fail, on which service, a phrase of its
# message, the outage hooks)
OUTAGE_FINDINGS = {
    "data-waits-for-policy": ("data_reply", "FAIL-DATA-01", "mx", "no reply to DATA",
                              {"stall": ("dovecot-freeze", "dovecot-thaw")}),
    "bounce-on-first-failure": ("no_mail_lost", "FAIL-NOLOSS-01", "submission", "never arrived", LMTP_DOWN),
}


def test_outage_findings_name_every_outage_configuration() -> None:
    assert set(OUTAGE_FINDINGS) == set(OUTAGE_CONFIGS)


def test_dovecot_stopped_postfix_queues_and_loses_nothing(servers: MailServers, target: Path,
                                                          tmp_path: Path) -> None:
    cases, props, output = run_checks(target, tmp_path, "delivery_outage or no_mail_lost")
    verdicts = {c.name: c.verdict for c in cases}
    assert verdicts["test_delivery_outage_answers_4xx[mx@node1]"] == "pass", output[-3000:]
    replies = props["test_delivery_outage_answers_4xx[mx@node1]"].get("evidence.replies", "")
    assert "DATA 250" in replies, replies  # Postfix takes the message into its queue
    for case in cases:  # submission needs Dovecot SASL: whatever Postfix does then, never a 5xx to mail
        if case.requirement == "FAIL-TEMP-01":
            assert case.verdict in ("pass", "inconclusive"), (case.name, case.reason)
    noloss = [c for c in cases if c.requirement == "FAIL-NOLOSS-01"]
    assert noloss and all(c.verdict == "pass" for c in noloss), [(c.name, c.verdict, c.reason) for c in noloss]
    counts = props[noloss[0].name].get("evidence.counts", "")
    assert "lost 0, duplicated 0, late 0" in counts, counts
    assert servers.dovecot_conf.exists() and (servers.workdir / "run" / "master.pid").exists()  # up ran


def test_node_stop_postfix_drops_sessions_dovecot_says_bye(servers: MailServers, target: Path, tmp_path: Path) -> None:
    """`postfix stop` ends every open smtpd session without a word, even in the middle of DATA; Dovecot's
    stop says ``* BYE`` to every IMAP session and ``-ERR`` to every POP3 session. After `up` everything answers within the objective and a
    burst of concurrent correct logins gets in."""
    cases, props, output = run_checks(target, tmp_path, "shutdown or recovery")
    verdicts = {c.name: c for c in cases}
    for service in ("mx", "submission", "submissions"):
        case = verdicts[f"test_shutdown_says_421_not_reset[{service}@node1]"]
        assert case.verdict == "fail", (case.name, case.verdict, case.reason, output[-2000:])
        assert "ended with closed (connection closed without a reply)" in case.reason, case.reason
    assert "in the middle of DATA" in verdicts["test_shutdown_says_421_not_reset[mx@node1]"].reason
    for service in ("imap", "imaps"):
        name = f"test_shutdown_says_421_not_reset[{service}@node1]"
        assert verdicts[name].verdict == "pass", (name, verdicts[name].reason)
        assert props[name]["evidence.ending"] == "bye: * BYE Shutting down", props[name]
    for service in ("pop3", "pop3s"):  # RFC 1939 has no 421 or BYE: Dovecot's -ERR, then the close
        name = f"test_shutdown_says_421_not_reset[{service}@node1]"
        assert verdicts[name].verdict == "pass", (name, verdicts[name].reason)
        assert props[name]["evidence.ending"] == "-err: -ERR Shutting down", props[name]
    recovery = [c for c in cases if c.requirement == "FAIL-RECOVER-01"]
    assert len(recovery) == 7 and all(c.verdict == "pass" for c in recovery), [(c.name, c.reason) for c in recovery]
    burst = props["test_recovery_within_objective[imaps@node1]"]["evidence.burst"]
    assert burst.endswith("concurrent logins accepted") and burst.split()[0] == burst.split()[2], burst
    for service in ("pop3", "pop3s"):  # POP3 clients reconnect too: the burst reaches Dovecot's POP3 (AUTH PLAIN)
        here = props[f"test_recovery_within_objective[{service}@node1]"]["evidence.burst_here"]
        accepted, _, total = here.split()[:3]
        assert int(total) >= 1 and accepted == total, here


def test_dovecot_frozen_postfix_queues_at_once(servers: MailServers, target: Path, tmp_path: Path) -> None:
    """Dovecot stopped with SIGSTOP (a stalled backend): the MX queues and answers DATA at once; submission
    cannot reach Dovecot's SASL (it closes at the greeting or EHLO, or answers AUTH 454 4.7.0), which
    stops the probe before DATA: inconclusive, with Postfix's own words as the reason."""
    cases, props, output = run_checks(target, tmp_path, "data_reply")
    verdicts = {c.name: c for c in cases}
    mx = "test_data_reply_in_time_while_backend_stalls[mx@node1]"
    assert verdicts[mx].verdict == "pass", (verdicts[mx].reason, output[-2000:])
    assert "DATA 250 2.0.0 Ok: queued" in props[mx]["evidence.replies"], props[mx]
    for service in ("submission", "submissions"):
        case = verdicts[f"test_data_reply_in_time_while_backend_stalls[{service}@node1]"]
        assert case.verdict == "inconclusive", (case.name, case.verdict, case.reason)
        # A fresh smtpd cannot greet without Dovecot's mechanism list; one that already had an auth
        # connection says so at AUTH. Either way the probe never reaches DATA.
        assert "closed the connection" in case.reason or "AUTH 454 4.7.0" in case.reason, case.reason


@pytest.mark.parametrize("name", list(OUTAGE_CONFIGS))
def test_outage_weakness_is_caught(name: str, tmp_path: Path) -> None:
    """Weaknesses every passive check misses: only the outage shows them."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    selection, requirement, service, phrase, hooks = OUTAGE_FINDINGS[name]
    with MailServers(OUTAGE_CONFIGS[name]) as weak:
        cases, _, output = run_checks(outage_target(weak, "weak.toml", hooks), tmp_path, selection)
    case = next(c for c in cases if c.requirement == requirement and c.name.endswith(f"[{service}@node1]"))
    assert case.verdict == "fail" and phrase in case.reason, (case.verdict, case.reason, output[-2000:])
    assert all(c.verdict != "pass" for c in cases if c.requirement == requirement), [
        (c.name, c.verdict, c.reason) for c in cases]


def test_lmtp_unreachable_mail_submitted_meanwhile_arrives_once(servers: MailServers, tmp_path: Path) -> None:
    """Delivery alone down (the good configuration, LMTP_DOWN): submissions during the outage are accepted
    and queued, and after `up` (and a queue flush) every one arrives exactly once."""
    target = outage_target(servers, "lmtp.toml", LMTP_DOWN)
    cases, props, output = run_checks(target, tmp_path, "no_mail_lost")
    noloss = [c for c in cases if c.requirement == "FAIL-NOLOSS-01"]
    assert noloss and all(c.verdict == "pass" for c in noloss), [(c.name, c.verdict, c.reason) for c in noloss] + [
        output[-2000:]]
    counts = props[noloss[0].name]["evidence.counts"]
    assert "sent 6, accepted 6, deferred 0, delivered 6, lost 0, duplicated 0, late 0" in counts, counts
