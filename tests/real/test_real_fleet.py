"""Two real nodes of one service: Postfix and Dovecot on 127.0.0.2 (mx1) and again on 127.0.0.3 (mx2),
with the same accounts, as a vendor's two-node staging gateway would be scanned.

- Both nodes good: redundancy (FAIL-REDUNDANT-01) and parity (FAIL-PARITY-01) pass on every endpoint.
- mx2 in the weak-tls configuration (TLS 1.0/1.1 and legacy suites): the whole shipped suite fails exactly
  TLS-VER-01, TLS-SUITE-02 and FAIL-PARITY-01 on mx2's endpoints, the parity message names mx1 as the
  node that refuses what mx2 accepts, and mx1 passes everything: the weaker node is named, not both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.real.servers import CONFIGS, GOOD, Config, MailServers, unavailable_reason, write_fleet_target
from tests.suite_runner import SuiteRun, run_suite

pytestmark = pytest.mark.real

SECOND_ADDRESS = "127.0.0.3"  # loopback too; the client's source stays 127.0.0.1 (see servers.py)
SECOND_HOST = "mx2.example.test"
ALL = ("mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
WEAK_TLS_FAILS = {"TLS-VER-01", "TLS-SUITE-02", "FAIL-PARITY-01"}


@pytest.fixture(scope="module")
def first_node() -> Iterator[MailServers]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with MailServers(GOOD, auth_throttle=False) as running:
        yield running


@contextmanager
def _fleet(first: MailServers, second: Config, workdir: Path) -> Iterator[Path]:
    with MailServers(second, address=SECOND_ADDRESS, host=SECOND_HOST, accounts=first.accounts,
                     auth_throttle=False) as node2:
        yield write_fleet_target([first, node2], workdir / f"fleet-{second.name}.toml")


@pytest.fixture(scope="module")
def fleets(first_node: MailServers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Target files of mx1 (good) with a second node in the good and in the weak-tls configuration."""
    workdir = tmp_path_factory.mktemp("fleet")
    with ExitStack() as stack:
        yield {name: stack.enter_context(_fleet(first_node, config, workdir))
               for name, config in (("good", GOOD), ("weak-tls", CONFIGS["weak-tls"]))}


def _verdicts(run: SuiteRun, requirement: str) -> dict[str, str]:
    return {c.name.rsplit("[", 1)[-1].rstrip("]") if "[" in c.name else "": c.verdict
            for c in run.cases if c.requirement == requirement}


def test_two_good_nodes_are_redundant_and_alike(fleets: dict[str, Path], tmp_path: Path) -> None:
    run = run_suite(fleets["good"], tmp_path, extra=["-k", "every_service_has_two_nodes or no_weaker_node"])
    assert _verdicts(run, "FAIL-REDUNDANT-01") == {"": "pass"}, run.describe()
    parity = _verdicts(run, "FAIL-PARITY-01")
    assert parity == {f"{s}@{n}": "pass" for s in ALL for n in ("node1", "node2")}, run.describe()


def test_a_weaker_second_node_is_named(fleets: dict[str, Path], tmp_path: Path) -> None:
    run = run_suite(fleets["weak-tls"], tmp_path)
    failing = {(c.requirement, c.name.rsplit("[", 1)[-1].rstrip("]")) for c in run.with_verdict("fail")}
    assert failing == {(rid, f"{s}@node2") for rid in WEAK_TLS_FAILS for s in ALL}, run.describe()
    assert not run.with_verdict("inconclusive"), run.describe(("inconclusive",))
    assert _verdicts(run, "FAIL-REDUNDANT-01") == {"": "pass"}
    parity = next(c for c in run.cases if c.name.endswith("no_weaker_node[mx@node2]"))
    assert "accepts TLS 1.0, TLS 1.1, mx@node1 (mx1.example.test) does not" in parity.reason, parity.reason
