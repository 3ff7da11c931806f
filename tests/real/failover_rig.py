"""What the real tier's failover modules share: operator hooks as argv lists (``outage_hook.py``), a target
file that carries them, and a run of the shipped failover checks against it in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from conformance.report import CaseResult, read_junit
from tests.real.servers import MailServers

HOOK = Path(__file__).with_name("outage_hook.py")
CHECKS = Path(__file__).resolve().parents[2] / "conformance" / "checks" / "test_failover.py"
HOOK_TIMEOUT = 40  # seconds: each hook waits at most 20 s for a daemon to go or come, plus its commands


def hook_argv(action: str, workdir: Path) -> list[str]:
    return [sys.executable, str(HOOK), action, str(workdir)]


def outage_target(servers: MailServers, filename: str, hooks: dict[str, tuple[str, str]]) -> Path:
    """The instance's target with outage hooks: ``{"node": (down, up), "delivery": (down, up), ...}``
    (hook actions); "node" is the whole-node ``[node.hooks]``, any other kind ``[node.outages.<kind>]``."""
    path = servers.write_target(servers.workdir / filename)
    # Dovecot delays failed logins (auth_failure_delay, and an anvil penalty that grows per client IP):
    # four concurrent failures from 127.0.0.1 take longer than the generated target's 5 s timeout.
    text = path.read_text().replace("\ntimeout = 5\n", "\ntimeout = 30\n", 1)
    text += "recovery_time_objective = 20\nmax_outage = 60\n"
    for kind, (down, up) in hooks.items():
        table = "node.hooks" if kind == "node" else f"node.outages.{kind}"
        text += (f"\n[{table}]\ndown = {json.dumps(hook_argv(down, servers.workdir))}\n"
                 f"up = {json.dumps(hook_argv(up, servers.workdir))}\ntimeout = {HOOK_TIMEOUT}\n")
    path.write_text(text)
    return path


def run_checks(target: Path, tmp: Path, selection: str) -> tuple[list[CaseResult], dict[str, dict[str, str]], str]:
    """The failover checks matching ``-k selection``, with disruption allowed: their verdicts, each
    case's JUnit properties by test name, and pytest's output."""
    junit = tmp / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(CHECKS), "--mail-target", str(target),
                           "--mail-allow-disruption", "--junitxml", str(junit), "-k", selection,
                           "-p", "no:cacheprovider", "-q", "-o", "addopts=", "-o", "testpaths="],
                          check=False, capture_output=True, text=True, timeout=600, cwd=tmp)
    assert junit.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    props = {c.get("name", ""): {p.get("name", ""): p.get("value", "") for p in c.iter("property")}
             for c in ET.parse(junit).getroot().iter("testcase")}
    return read_junit(junit), props, proc.stdout + proc.stderr
