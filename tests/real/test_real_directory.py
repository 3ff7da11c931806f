"""The directory and auth-backend outage checks against real Postfix and Dovecot whose users live in a
private PostgreSQL (``tests/real/directory_db.py``, configuration ``SQL_DIRECTORY``): Postfix's
``virtual_mailbox_maps = pgsql:...`` and Dovecot's passdb and userdb ``driver = sql``. The outage hook
is the operator's own ``pg_ctl stop -m fast`` (``outage_hook.py directory-stop``), ``up`` its
``pg_ctl start``; the same hooks serve both outage kinds, since one database is both backends.

What really happens while PostgreSQL is down, found on the live servers (Postfix 3.7.11, Dovecot
2.3.19.1, PostgreSQL 15, Debian 12):

- Directory down (FAIL-DIR-01): the MX answers ``RCPT 451 4.3.0 <alice@example.test>: Temporary lookup
  failure`` (Postfix logs "pgsql:... lookup error"): pass. Submission and submissions never get to RCPT:
  Postfix asks Dovecot SASL, whose passdb is the same database, and answers ``AUTH 535 5.7.8 Error:
  authentication failed: (reason unavailable)``; the check is inconclusive there ("the transaction
  stopped before RCPT"), since AUTH is not a mail stage (the 535 is FAIL-AUTHDOWN-01's finding).
- Auth backend down (FAIL-AUTHDOWN-01): Dovecot IMAP and IMAPS answer ``NO [UNAVAILABLE] Temporary
  authentication failure. [host:time]``, and its POP3 and POP3S ``-ERR [SYS/TEMP] Temporary authentication
  failure. [host:time]`` (RFC 3206's code for a temporary system problem): pass. Postfix submission and
  submissions (Dovecot SASL) answer ``535 5.7.8 Error: authentication failed: (reason unavailable)``, a
  "wrong password", although
  Dovecot itself knows the failure is temporary: fail on both. The 454 4.7.0 the check asks for is not
  what Postfix 3.7 makes of Dovecot's temporary failure.
- After ``pg_ctl start`` Dovecot's auth reconnects at once (the next login works). Postfix's pgsql
  client marks a host it could not reach as down for 60 s (hard-wired in dict_pgsql.c, no
  pgsql_table(5) setting): the MX that saw the outage kept answering 451 for 62 s after the database
  was back (measured, RCPT every 2 s), then 250. Still a 4xx: senders retry.
"""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real.configs import SQL_DIRECTORY
from tests.real.directory_db import pg_bin
from tests.real.failover_rig import hook_argv, outage_target, run_checks
from tests.real.servers import LOOPBACK, MailServers, unavailable_reason

pytestmark = pytest.mark.real

SMTP = ("mx", "submission", "submissions")
AUTH = ("submission", "submissions", "imap", "imaps", "pop3", "pop3s")


@pytest.fixture(scope="module")
def servers() -> Iterator[MailServers]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    if pg_bin() is None:
        pytest.skip("PostgreSQL not installed (no /usr/lib/postgresql/*/bin/pg_ctl); install it, postfix-pgsql "
                    "and dovecot-pgsql with `bash ci/install-real-servers.sh`")
    with MailServers(SQL_DIRECTORY, auth_throttle=False) as running:  # a rig setting: see MailServers
        yield running


@pytest.fixture(scope="module")
def target(servers: MailServers) -> Path:
    """The real-server target plus directory and auth outage hooks, both stopping the one database."""
    both = ("directory-stop", "directory-start")
    return outage_target(servers, "directory.toml", {"directory": both, "auth": both})


def test_directory_down_postfix_answers_451_for_a_valid_recipient(servers: MailServers, target: Path,
                                                                  tmp_path: Path) -> None:
    cases, props, output = run_checks(target, tmp_path, "directory_outage")
    found = {c.name: c for c in cases if c.requirement == "FAIL-DIR-01"}
    assert set(found) == {f"test_directory_outage_keeps_valid_recipients[{s}@node1]" for s in SMTP}, output[-3000:]
    verdicts = {name: (case.verdict, case.reason) for name, case in found.items()}
    mx = "test_directory_outage_keeps_valid_recipients[mx@node1]"
    assert found[mx].verdict == "pass", verdicts
    replies = props[mx].get("evidence.replies", "")
    assert "RCPT 451 4.3.0 <alice@example.test>: Temporary lookup failure" in replies, replies
    for service in ("submission", "submissions"):  # Dovecot SASL shares the database: AUTH fails first
        case = found[f"test_directory_outage_keeps_valid_recipients[{service}@node1]"]
        assert case.verdict == "inconclusive", verdicts
        assert "the transaction stopped before RCPT" in case.reason, verdicts
        assert "AUTH 535 5.7.8 Error: authentication failed: (reason unavailable)" in case.reason, verdicts


def test_auth_backend_down_dovecot_says_unavailable_postfix_says_535(servers: MailServers, target: Path,
                                                                     tmp_path: Path) -> None:
    cases, props, output = run_checks(target, tmp_path, "auth_outage")
    found = {c.name: c for c in cases if c.requirement == "FAIL-AUTHDOWN-01"}
    assert set(found) == {f"test_auth_outage_is_temporary[{s}@node1]" for s in AUTH}, output[-3000:]
    seen = {name: (case.verdict, case.reason, props[name].get("evidence.answer", "")) for name, case in found.items()}
    # Dovecot's auth process queues logins behind its pgsql reconnect back-off, so which login of the four
    # meets the back-off depends on timing: a login held past the session budget is inconclusive (no
    # answer), never a pass or a fail; every answer that did come is judged as the server gave it.
    # Dovecot's own protocols say "temporary" in each protocol's words (RFC 5530 §3, RFC 3206 §4)
    for services, temporary in ((("imap", "imaps"), "NO [UNAVAILABLE] Temporary authentication failure."),
                                (("pop3", "pop3s"), "-ERR [SYS/TEMP] Temporary authentication failure.")):
        names = [f"test_auth_outage_is_temporary[{service}@node1]" for service in services]
        answered = [n for n in names if not _held_past_the_budget(found[n].verdict, found[n].reason)]
        assert answered and all(found[n].verdict == "pass" for n in answered), seen
        assert all(temporary in props[n].get("evidence.answer", "") for n in answered), seen
    smtp_judged = 0
    for service in ("submission", "submissions"):
        name = f"test_auth_outage_is_temporary[{service}@node1]"
        if _held_past_the_budget(found[name].verdict, found[name].reason):
            continue
        if props[name].get("evidence.answer", "").startswith("454 4.7.0"):
            # Postfix lost its own connection to Dovecot's auth socket first and said 454 (temporary): a pass
            assert found[name].verdict == "pass", seen
            smtp_judged += 1
            continue
        assert found[name].verdict == "fail", seen
        smtp_judged += 1
        assert ("the correct password got '535 5.7.8 Error: authentication failed: (reason unavailable)'"
                in found[name].reason), seen
        assert "answer 454 4.7.0" in found[name].reason, seen  # the failure message says what to fix
    assert smtp_judged, seen
    hooks = props[next(iter(found))].get("evidence.hooks", "")
    assert "directory-stop" in hooks and "directory-start" in hooks and "exit 0" in hooks, hooks


def _held_past_the_budget(verdict: str, reason: str) -> bool:
    """No answer to the login within the budget: the per-read timeout or the session's overall deadline."""
    unanswered = "no complete line within" in reason or "passed before reading the response" in reason
    return verdict == "inconclusive" and unanswered


def test_account_logs_in_again_after_the_outage(servers: MailServers, target: Path) -> None:
    """The hooks' own down-and-up cycle (as the suite runs it), then a real login on IMAPS and
    submissions: ``up`` brought the database back and Dovecot reconnected to it."""
    for action in ("directory-stop", "directory-start"):
        proc = subprocess.run(hook_argv(action, servers.workdir), capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, (action, proc.stdout[-2000:], proc.stderr[-2000:])
    assert (servers.workdir / "pgsql" / "data" / "postmaster.pid").exists()
    account = servers.accounts["test"]
    context = ssl.create_default_context(cafile=str(servers.ca_path))
    context.check_hostname = False  # the certificate names mx1.example.test; we connect to the address
    with imaplib.IMAP4_SSL(LOOPBACK, servers.ports["imaps"], ssl_context=context, timeout=10) as imap:
        assert imap.login(account.username, account.password)[0] == "OK"
    with smtplib.SMTP_SSL(LOOPBACK, servers.ports["submissions"], context=context, timeout=10) as smtp:
        assert smtp.login(account.username, account.password)[0] == 235
