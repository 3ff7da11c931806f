"""The failover checks against real Postfix and Dovecot, with operator hooks a real operator would write
(``tests/real/outage_hook.py``: Dovecot's own stop and start commands, a passdb that goes missing).

What really happens, found on the live servers, and the verdict the suite must give for it:

- Dovecot stopped (delivery, IMAP and SASL down) while Postfix keeps running: the MX answers 250 and
  queues; after Dovecot is back (and the queue flushed) everything accepted is delivered once.
  FAIL-TEMP-01 passes on the MX, FAIL-NOLOSS-01 passes.
- Dovecot's passwd-file passdb missing while its services stay up: Dovecot 2.3 logs "unknown user"
  (a missing or unreadable passwd-file is an empty one), so IMAP answers ``NO [AUTHENTICATIONFAILED]``
  and Postfix submission (Dovecot SASL) ``535 5.7.8 Error: authentication failed``: exactly the "outage
  looks like a wrong password" failure of the seed incident. FAIL-AUTHDOWN-01 fails on every endpoint.
  (A passdb with a real backend, SQL or LDAP, can answer a temporary failure; passwd-file cannot.)
- Dovecot stopped makes Postfix submission drop some sessions at EHLO or AUTH (no SASL): never a 5xx.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.report import CaseResult, read_junit
from tests.real.servers import GOOD, MailServers, unavailable_reason

pytestmark = pytest.mark.real

HOOK = Path(__file__).with_name("outage_hook.py")
CHECKS = Path(__file__).resolve().parents[2] / "conformance" / "checks" / "test_failover.py"


@pytest.fixture(scope="module")
def servers() -> Iterator[MailServers]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with MailServers(GOOD) as running:
        yield running


def _hook(action: str, workdir: Path) -> str:
    return json.dumps([sys.executable, str(HOOK), action, str(workdir)])


@pytest.fixture(scope="module")
def target(servers: MailServers) -> Path:
    """The real-server target plus per-component outage hooks (appended tables refer to the one node)."""
    path = servers.write_target(servers.workdir / "failover.toml")
    w = servers.workdir
    # Dovecot delays failed logins (auth_failure_delay, and an anvil penalty that grows per client IP):
    # four concurrent failures from 127.0.0.1 take longer than the generated target's 5 s timeout.
    text = path.read_text().replace("\ntimeout = 5\n", "\ntimeout = 30\n", 1)
    path.write_text(text + f"""recovery_time_objective = 20
max_outage = 60

[node.outages.delivery]
down = {_hook("dovecot-stop", w)}
up = {_hook("dovecot-start", w)}
timeout = 30

[node.outages.auth]
down = {_hook("passdb-hide", w)}
up = {_hook("passdb-restore", w)}
""")
    return path


def run_checks(target: Path, tmp: Path, selection: str) -> tuple[list[CaseResult], dict[str, dict[str, str]], str]:
    junit = tmp / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(CHECKS), "--mail-target", str(target),
                           "--mail-allow-disruption", "--junitxml", str(junit), "-k", selection,
                           "-p", "no:cacheprovider", "-q", "-o", "addopts=", "-o", "testpaths="],
                          check=False, capture_output=True, text=True, timeout=600, cwd=tmp)
    assert junit.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    props = {c.get("name", ""): {p.get("name", ""): p.get("value", "") for p in c.iter("property")}
             for c in ET.parse(junit).getroot().iter("testcase")}
    return read_junit(junit), props, proc.stdout + proc.stderr


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


def test_missing_passdb_is_answered_as_a_wrong_password(servers: MailServers, target: Path, tmp_path: Path) -> None:
    cases, _, output = run_checks(target, tmp_path, "auth_outage")
    found = {c.name: c for c in cases if c.requirement == "FAIL-AUTHDOWN-01"}
    assert set(found) == {f"test_auth_outage_is_temporary[{s}@node1]"
                          for s in ("submission", "submissions", "imap", "imaps")}, output[-3000:]
    for name, case in found.items():
        assert case.verdict == "fail", (name, case.verdict, case.reason)
        expected = "535 5.7.8" if "submission" in name else "NO [AUTHENTICATIONFAILED]"
        assert expected in case.reason, case.reason
    assert (servers.workdir / "dovecot" / "passwd").exists()  # `up` restored it
