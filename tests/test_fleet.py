"""Fleets: several targets in one run, and pytest-xdist dividing the work (conformance/fleet.py).

The proof runs a small fleet, two reference gateways each on a loopback address of its own behind a
counting proxy, once serially and once under ``mailconform run -n auto``: the same verdicts, the same
connections per host, never more open at once to one host than its budget, and both workers used.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.fixtures.prefetch import TargetWork
from conformance.fleet import _fleet_scheduling, group_owner, host_groups, load_targets, target_group_names
from conformance.plugin import MailOptions
from conformance.reference.flaws import FLAWS
from conformance.reference.gateway import Gateway
from conformance.report import read_junit
from conformance.target import TargetError
from conformance.verdict import FailOn
from tests.fleet_proxy import FleetProxy, proxied_target
from tests.suite_runner import SuiteRun, run_suite

pytestmark = pytest.mark.reference

HOSTS = ("127.0.1.1", "127.0.1.2")
NORTH = "127.0.1.3"
BUDGET = 3
# the passive families, without the DNS zone's and enumeration's timing work, keep the proof short
SELECTION = ("-k", "not enumeration and not dns")
REPO = Path(__file__).resolve().parent.parent  # for the crash plugin, tests/crash_worker.py


def _target(directory: Path, name: str, host: str) -> Path:
    text = f'[target]\nname = "{name}"\n\n[[node]]\nname = "n1"\nhost = "{host}"\nservices = {{ mx = 25 }}\n'
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.unit
def test_a_directory_stands_for_its_target_files(tmp_path: Path) -> None:
    for name in ("b", "a"):
        _target(tmp_path, name, f"{name}.example.net")
    assert [t.name for t in load_targets([tmp_path])] == ["a", "b"]


@pytest.mark.unit
def test_two_files_naming_one_target_are_refused(tmp_path: Path) -> None:
    first = _target(tmp_path, "same", "a.example.net")
    other = tmp_path / "other"
    other.mkdir()
    second = _target(other, "same", "b.example.net")
    with pytest.raises(TargetError, match=r"other/same.toml: target name 'same' is also the name of .*same.toml"):
        load_targets([first, second])


@pytest.mark.unit
def test_targets_sharing_a_host_share_a_group(tmp_path: Path) -> None:
    targets = load_targets([_target(tmp_path, n, h) for n, h in
                            (("a", "one.example.net"), ("b", "two.example.net"), ("c", "one.example.net"))])
    groups = host_groups(targets)
    assert groups[0] == groups[2] != groups[1]


@dataclass(frozen=True)
class Fleet:
    proxy: FleetProxy
    gateways: tuple[Gateway, ...]
    targets: tuple[Path, ...]
    workdir: Path
    north: Path  # a third target on a third address, in front of the east gateway


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("fleet")
    with ExitStack() as stack:
        proxy = stack.enter_context(FleetProxy())
        # the second gateway has a flaw, so that a failure (and the summary line naming its target) is compared too
        gateways = [stack.enter_context(Gateway(flaws, workdir=workdir / name))
                    for name, flaws in (("east", ()), ("west", ("auth_before_tls",)))]
        targets = tuple(proxied_target(g, proxy, host, workdir / f"{name}.toml", name, BUDGET)
                        for g, host, name in zip(gateways, HOSTS, ("east", "west")))
        north = proxied_target(gateways[0], proxy, NORTH, workdir / "north.toml", "north", BUDGET)
        yield Fleet(proxy, tuple(gateways), targets, workdir, north)
        for gateway in gateways:
            gateway.check_errors()


def _verdicts(run: SuiteRun) -> dict[str, str]:
    return {c.name: c.verdict for c in run.cases}


def _mx_queries(fleet: Fleet) -> list[int]:
    return [sum(rtype == "MX" for _, rtype in g.dns_queries) for g in fleet.gateways]


def test_xdist_divides_the_fleet_and_keeps_the_totals(fleet: Fleet) -> None:
    """Serial and `mailconform run -n auto` (two targets: two workers): equal verdicts and connections per host."""
    pytest.importorskip("xdist")
    fleet.proxy.reset()
    before = _mx_queries(fleet)
    serial = run_suite(fleet.targets[0], fleet.workdir,
                       extra=(*(a for t in fleet.targets[1:] for a in ("--mail-target", str(t))), *SELECTION))
    serial_opened, serial_peak = dict(fleet.proxy.opened), dict(fleet.proxy.peak)
    serial_mx = [after - was for after, was in zip(_mx_queries(fleet), before)]
    fleet.proxy.reset()
    before = _mx_queries(fleet)
    junit = fleet.workdir / "parallel.xml"
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", *map(str, fleet.targets), "--junitxml",
                           str(junit), "-n", "auto", "-vv", *SELECTION],
                          check=False, capture_output=True, text=True, timeout=300, cwd=fleet.workdir)
    parallel = SuiteRun(proc.returncode, tuple(read_junit(junit)), proc.stdout + proc.stderr)
    parallel_mx = [after - was for after, was in zip(_mx_queries(fleet), before)]

    # each domain's MX set resolved once per run, by the controller: the workers take its answer
    assert serial_mx == parallel_mx == [1, 1], (serial_mx, parallel_mx)

    assert set(serial_opened) == set(HOSTS) and serial_opened == dict(fleet.proxy.opened), parallel.output[-2000:]
    assert max(serial_peak.values()) <= BUDGET and max(fleet.proxy.peak.values()) <= BUDGET, fleet.proxy.peak
    assert _verdicts(parallel) == _verdicts(serial) and len(serial.cases) > 300, parallel.describe()
    assert serial.failing_requirements == set(FLAWS["auth_before_tls"].fails), serial.describe()
    assert {c.name.split("[")[1].split(":")[0].rstrip("]") for c in serial.cases} == {"east", "west"}
    # each target on one worker, and the two targets on different workers
    workers = {line.split("]")[0].lstrip("[") for line in proc.stdout.splitlines() if line.startswith("[gw")}
    assert len(workers) == 2, proc.stdout[-2000:]
    summary = [line for line in proc.stdout.splitlines() if line.startswith("FAIL ")]
    assert summary and all("[west:" in line for line in summary), proc.stdout[-2000:]
    failing = sum(c.verdict == "fail" for c in serial.cases)
    assert f"mailconform: {failing} result(s) (target west) fail the run" in proc.stdout, proc.stdout[-2000:]
    # a line as each target's last check is reported: serially, and on pytest-xdist's controller
    for output in (serial.output, proc.stdout):
        done = re.findall(r"mailconform: target (\w+) done \((\d) of 2 targets, \d+m\d\ds\): (.*)", output)
        assert sorted(name for name, _, _ in done) == ["east", "west"] and done[-1][1] == "2", output[-2000:]
        west = next(counts for name, _, counts in done if name == "west")
        assert f"{failing} fail" in west, done


def test_one_bad_file_stops_the_run_before_any_traffic(fleet: Fleet) -> None:
    bad = fleet.workdir / "bad.toml"
    bad.write_text(fleet.targets[0].read_text(encoding="utf-8").replace("max_connections_per_host = 3",
                                                                         "max_connections_per_host = 0"))
    fleet.proxy.reset()
    proc = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "conformance.checks", "-p", "no:cacheprovider",
                           "-o", "addopts=", *(a for t in (*fleet.targets, bad) for a in ("--mail-target", str(t)))],
                          check=False, capture_output=True, text=True, timeout=120, cwd=fleet.workdir)
    errors = [line for line in proc.stderr.splitlines() if "bad.toml" in line]
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR and len(errors) == 1, proc.stderr[-2000:]
    assert "max_connections_per_host" in errors[0] and not fleet.proxy.opened


@pytest.mark.unit
def test_another_dist_mode_is_warned_about(tmp_path: Path) -> None:
    """`--dist load` sends a target's checks to every worker, and each probes it again: the header says so."""
    target = _target(tmp_path, "solo", "solo.example.net")
    proc = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "conformance.checks", "-p", "no:cacheprovider",
                           "-o", "addopts=", "--co", "--mail-target", str(target), "-n", "2", "--dist", "load"],
                          check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "mailconform: WARNING: --dist load runs a target's checks on several workers" in proc.stdout, proc.stdout


@pytest.mark.unit
def test_target_groups_go_to_fixed_workers_only_when_there_are_more_than_workers() -> None:
    nodeids = [f"test_a.py::test_x[{n}:mx@n1]@mailconform-{n}" for n in ("east", "west", "north")]
    groups = target_group_names([*nodeids, "tests/test_own.py::test_plain", nodeids[0]])
    assert groups == ["mailconform-east", "mailconform-west", "mailconform-north"]
    assert [group_owner(g, groups, 2) for g in groups] == [0, 1, 0]
    assert group_owner("mailconform-east", groups, 3) is None and group_owner("tests/x.py", groups, 2) is None


def test_the_scheduler_counts_pending_tests_per_unit_as_pytest_xdist_does() -> None:
    """pytest-xdist asks for every worker's pending tests after each event; FleetScheduling keeps a count per
    work unit (checks x checks otherwise). The count must be the one pytest-xdist's own walk gives."""
    pytest.importorskip("xdist")
    from xdist.scheduler import LoadScopeScheduling

    two_workers = type("Config", (), {"getvalue": lambda self, name: ["2*popen"] if name == "tx" else None})()
    scheduler = _fleet_scheduling()(two_workers)
    node = type("Worker", (), {"shutting_down": True})()  # a worker on its way out is sent no more work
    nodeids = [f"test_a.py::test_{i}[{n}:mx@n1]@mailconform-{n}" for n in ("east", "west") for i in range(3)]
    scheduler.registered_collections[node] = nodeids
    scheduler.assigned_work[node] = {g: {i: False for i in nodeids if i.endswith(g)}
                                     for g in ("mailconform-east", "mailconform-west")}

    def walked() -> int:
        return LoadScopeScheduling._pending_of(scheduler, scheduler.assigned_work[node])

    assert scheduler._pending_of(scheduler.assigned_work[node]) == walked() == 6
    for index in (0, 4, 4, 5):  # a test reported twice counts once
        scheduler.mark_test_complete(node, index)
        assert scheduler._pending_of(scheduler.assigned_work[node]) == walked()
    assert walked() == 3


# login-free checks of several families (capabilities, TLS, certificates): enough to see the probes overlap
QUICK = ("-k", "test_starttls or test_cert")


def test_a_worker_probes_its_next_target_while_it_judges_one(fleet: Fleet) -> None:
    """Three targets on two workers: the worker with two probes them at once (their connections overlap),
    with the same connections per host and verdicts as a serial run that takes one target at a time."""
    pytest.importorskip("xdist")
    targets = (*fleet.targets, fleet.north)  # east and north go to the first worker, west to the second
    fleet.proxy.reset()
    serial = run_suite(targets[0], fleet.workdir, extra=(*(a for t in targets[1:] for a in ("--mail-target", str(t))),
                                                         "--mail-prefetch", "0", *QUICK))
    serial_opened, serial_together = dict(fleet.proxy.opened), set(fleet.proxy.together)
    fleet.proxy.reset()
    parallel = run_suite(targets[0], fleet.workdir, extra=(*(a for t in targets[1:] for a in ("--mail-target", str(t))),
                                                           "-n", "2", "-vv", *QUICK))
    worker_of = {(line.split("]")[0].lstrip("["), line.split("[")[-1].split(":")[0])
                 for line in parallel.output.splitlines() if line.startswith("[gw") and "::" in line}

    assert not serial_together, serial_together  # without prefetch, one target at a time
    # one worker ran east and north (the other west), and their connections were open at the same time
    assert worker_of == {("gw0", "east"), ("gw1", "west"), ("gw0", "north")}, parallel.output[-2000:]
    assert frozenset((HOSTS[0], NORTH)) in fleet.proxy.together, (fleet.proxy.together, parallel.output[-2000:])
    assert serial_opened == dict(fleet.proxy.opened) and set(serial_opened) == {*HOSTS, NORTH}
    assert max(fleet.proxy.peak.values()) <= BUDGET, fleet.proxy.peak
    assert _verdicts(parallel) == _verdicts(serial) and len(serial.cases) > 30, parallel.describe()


def test_a_crashed_worker_is_replaced_and_the_fleet_still_finishes(fleet: Fleet) -> None:
    """A worker dies in the middle of its first target (an out-of-memory kill, say): its replacement, or the
    other worker, takes its unfinished targets; the run ends with every check reported once, the one it died
    in as the crash, and never more connections to a host than its budget."""
    pytest.importorskip("xdist")
    targets = (*fleet.targets, fleet.north)  # east and north on the first worker, which dies in east
    flag = fleet.workdir / "crashed.txt"
    flag.unlink(missing_ok=True)
    junit = fleet.workdir / "crash.xml"
    env = {**os.environ, "MAILCONFORM_CRASH": f"east:5:{flag}",
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    fleet.proxy.reset()
    proc = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "conformance.checks", "-p", "no:cacheprovider",
                           "-p", "tests.crash_worker", "-o", "addopts=", "--junitxml", str(junit), "-n", "2",
                           *(a for t in targets for a in ("--mail-target", str(t))), *QUICK],
                          check=False, capture_output=True, text=True, timeout=600, cwd=fleet.workdir, env=env)
    cases = list(read_junit(junit))
    crashed = flag.read_text(encoding="utf-8")
    crashed_name = crashed.split("::")[-1].rsplit("@mailconform-", 1)[0]

    assert "replacing crashed worker" in proc.stdout, proc.stdout[-2000:]
    # the system CA bundle's legacy root, loaded in a prefetch thread of the replacement, once leaked here
    assert "CryptographyDeprecationWarning" not in proc.stdout, proc.stdout[-2000:]
    assert len({c.name for c in cases}) == len(cases), "a check reported twice"
    checks_of = {name: {c.name.replace(f"[{name}:", "[") for c in cases if f"[{name}:" in c.name}
                 for name in ("east", "west", "north")}
    assert checks_of["east"] == checks_of["west"] == checks_of["north"] and len(checks_of["east"]) > 10, checks_of
    failed = {c.name: c.message for c in cases if c.verdict == "fail" and "[west:" not in c.name}
    assert list(failed) == [crashed_name] and "crashed while running" in failed[crashed_name], failed
    assert max(fleet.proxy.peak.values()) <= BUDGET, fleet.proxy.peak
    # the check east's worker died in counts as east's failure: east gets its progress line like the others
    done = re.findall(r"mailconform: target (\w+) done \((\d) of 3 targets, \d+m\d\ds\): (.*)", proc.stdout)
    assert sorted(name for name, _, _ in done) == ["east", "north", "west"], proc.stdout[-3000:]
    assert done[-1][1] == "3" and ", 1 fail" in {name: counts for name, _, counts in done}["east"], done


def test_oauth_refusals_use_the_per_host_budget(fleet: Fleet) -> None:
    """Random tokens log nobody in, so the endpoints are asked side by side, within the budget (not one at a time)."""
    target = load_targets([fleet.targets[0]])[0]
    options = MailOptions(target, "baseline", FailOn.NEVER, False, False, None, (target,))
    fleet.proxy.reset()
    refusals = TargetWork(target, options, ()).value("oauth_refusals")
    assert all(a.result is not None and a.result.refusals for a in refusals.values()), refusals
    assert 1 < fleet.proxy.peak[HOSTS[0]] <= BUDGET, fleet.proxy.peak
