"""A dead endpoint costs a run one timeout, not one per check: the shipped suite, run as a vendor's CI runs
it, against servers that never greet or greet one byte a second, opens few connections to each endpoint
and reports every check of it inconclusive with the same reason (counted in the servers, not timed)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from conformance.target import Service
from tests.hostile import BackgroundServers, Behaviour, mute, trickle
from tests.suite_runner import SuiteRun, run_suite

pytestmark = pytest.mark.unit

TARGET = """
[target]
name = "dead"
timeout = 2

[[node]]
name = "node1"
host = "mx1.example.test"
address = "127.0.0.1"
services = {{ {services} }}

[accounts.test]
username = "alice@example.test"
password_file = "alice.pw"
"""
PLAINTEXT_GREETING = (Service.MX, Service.SUBMISSION, Service.IMAP)
CASES = {
    "silent": (mute, tuple(Service)),
    # a banner is plaintext: on an implicit-TLS port the same bytes are a finding (TLS-IMPLICIT-01), not silence
    "one-byte-a-second": (trickle(b"220 slow.example.test ESMTP\r\n", interval=1.0), PLAINTEXT_GREETING),
}
MAX_CONNECTIONS_PER_ENDPOINT = 4


def run_against(behaviour: Behaviour, services: tuple[Service, ...], workdir: Path,
                *extra: str) -> tuple[SuiteRun, BackgroundServers]:
    (workdir / "alice.pw").write_text("not-the-password\n")
    with BackgroundServers(behaviour, services) as servers:
        ports = ", ".join(f"{service} = {port}" for service, port in servers.ports.items())
        target = workdir / "target.toml"
        target.write_text(TARGET.format(services=ports))
        run = run_suite(target, workdir, extra=extra, timeout=300)
    return run, servers


def reasons_by_endpoint(run: SuiteRun) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for case in run.with_verdict("inconclusive"):
        found[case.reason.partition(":")[0]].add(case.reason)
    return found


@pytest.mark.parametrize("name", CASES)
def test_dead_endpoint_costs_one_timeout(name: str, tmp_path: Path) -> None:
    behaviour, services = CASES[name]
    run, servers = run_against(behaviour, services, tmp_path)
    assert max(servers.connections.values()) <= MAX_CONNECTIONS_PER_ENDPOINT, servers.connections
    assert not run.with_verdict("pass"), run.describe(("pass",))
    assert run.failing_requirements <= {"FAIL-REDUNDANT-01"}, run.describe()  # one node: judged from the file
    reasons = reasons_by_endpoint(run)
    assert set(reasons) == {f"{service}@node1" for service in services}, run.describe()
    assert all(len(texts) == 1 for texts in reasons.values()), reasons
