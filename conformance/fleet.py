"""Fleets: several targets in one run, and pytest-xdist dividing the work instead of multiplying it.

Every check of one target runs on one worker (``--dist loadgroup``, the default for a conformance run
under ``-n``/``--tx``, with one ``xdist_group`` per target). The session fixtures are per target, so a
worker probes only the targets whose checks it was given, each endpoint once, within the target's
per-host budget. Targets that share a host share a group: the budget is per host, whoever names it.
A target is the unit, not a host, because FAIL-PARITY-01 and DNS-DANE-02 judge one node by what the
probes of its siblings found: splitting a target's hosts over workers would probe them twice.

Within a worker, targets overlap (fixtures/prefetch.py): when a target's checks start, the passive session
probes of the worker's next K targets (``--mail-prefetch``, default 16) run in background threads, and their
session fixtures take the results. Why this design: the time of a target is almost all waiting on the
network (round trips within the per-host budget, logins one at a time), so a worker is idle on the CPU; the
session fixtures already compute each value once per target, so computing it earlier, in a thread of its own,
changes neither what is sent nor the verdicts, only when. A thread per target keeps one event loop on each
target's connection limiter; a target is claimed (its prefetch finished or cancelled) before the worker
touches it, so active checks never overlap their own target's probes; targets sharing a host are never
prefetched (the budget is per host); values go at the target's fixture teardown, so memory holds at most K+1
targets. ``FleetScheduling`` gives each worker all its target groups at the start (pytest-xdist's loadgroup
sends the next group only when one is nearly done), so a worker knows which targets come next. A dead
worker's replacement has a new index: the dead one's unfinished groups go to whichever worker asks.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from conformance.target import Target, TargetError, load_target

# the targets of this run, put here by the plugin once it has read them (the plugin imports this module)
TARGETS_KEY = pytest.StashKey[tuple[Target, ...]]()

GROUP_PREFIX = "mailconform"
# a param of the pytest-xdist "dist" option: one scope per xdist_group, each sent whole to one worker
LOADGROUP = "loadgroup"
WORKER_KEY = "mailconform_loadgroup"


def target_files(given: Iterable[str | Path]) -> list[Path]:
    """Each ``--mail-target`` value as files: a directory stands for the ``*.toml`` files in it."""
    files: list[Path] = []
    for value in given:
        path = Path(value)
        if path.is_dir():
            found = sorted(path.glob("*.toml"))
            if not found:
                raise TargetError(f"{path}: a directory of target files, but it holds no *.toml file")
            files += found
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def load_targets(given: Iterable[str | Path]) -> tuple[Target, ...]:
    """Every target file read and validated before anything is sent: TargetError (one line) on the first
    bad one, or on two files naming the same target (test IDs and reports tell targets apart by name)."""
    targets = tuple(load_target(path) for path in target_files(given))
    seen: dict[str, Target] = {}
    for target in targets:
        if target.name in seen:
            raise TargetError(f"{target.source}: target name {target.name!r} is also the name of "
                              f"{seen[target.name].source}: give each target its own [target] name")
        seen[target.name] = target
    return targets


def host_groups(targets: Sequence[Target]) -> list[int]:
    """For each target, the index of its group: targets that share a host (directly or through others)
    are one group, so one worker keeps that host's connection budget."""
    parent = list(range(len(targets)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for index, target in enumerate(targets):
        for endpoint in target.endpoints:
            host = endpoint.connect_host.lower()
            if host in owner:
                parent[root(index)] = root(owner[host])
            owner.setdefault(host, index)
    return [root(i) for i in range(len(targets))]


def item_target(item: pytest.Item) -> Target | None:
    """The target a check was parametrized with (several targets), else None."""
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("target") if callspec is not None else None
    return value if isinstance(value, Target) else None


def distributing(config: pytest.Config) -> bool:
    return bool(config.getoption("numprocesses", None) or config.getoption("tx", None))


def default_dist(config: pytest.Config) -> None:
    """A conformance run under -n or --tx distributes with loadgroup unless --dist says otherwise ("load",
    pytest-xdist's default, sends any check anywhere: every worker would probe every target)."""
    if hasattr(config, "workerinput"):
        return  # a worker: pytest-xdist has already turned the controller's --dist into option.loadgroup
    if config.getoption("mail_target", None) and distributing(config) and config.getoption("dist", "no") == "no":
        config.option.dist = LOADGROUP


def grouping(config: pytest.Config) -> bool:
    """Whether checks go to workers by xdist_group: the controller's --dist, or what it told a worker."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return bool(workerinput.get(WORKER_KEY) or config.getoption("loadgroup", False))
    return config.getoption("dist", "no") == LOADGROUP


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    # a worker parses the original command line, where --dist may be unset: tell it what the controller chose
    node.workerinput[WORKER_KEY] = grouping(node.config)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Generator[None, Any, Any]:
    targets = config.stash.get(TARGETS_KEY, ())
    if targets and grouping(config):
        config.option.loadgroup = True  # read by pytest-xdist's worker hook, which runs after this part
        _group(items, targets)  # before pytest-xdist's worker hook reads the groups into the node IDs
    result = yield
    if len(targets) > 1:
        # after pytest's own reordering: a target's checks one after another, so its session fixtures
        # (the probes) are set up once and torn down before the next target's
        position = {id(t): i for i, t in enumerate(targets)}
        items.sort(key=lambda item: position.get(id(item_target(item)), -1))
    return result


def _group(items: list[pytest.Item], targets: Sequence[Target]) -> None:
    """One xdist group per host group, replacing any group a check declared itself (the active families'
    "active"): a target's active checks then run on its worker, in the serial order, as in a serial run."""
    groups = host_groups(targets)
    group_of = {id(t): f"{GROUP_PREFIX}-{targets[g].name}" for t, g in zip(targets, groups)}
    single = f"{GROUP_PREFIX}-{targets[0].name}"
    for item in items:
        if "target" not in getattr(item, "fixturenames", ()):
            continue  # not a conformance check (a project's own test): scheduled as pytest-xdist likes
        target = item_target(item)
        name = group_of[id(target)] if target is not None else single
        for node in item.listchain():  # the lockout module declares its group module-wide
            node.own_markers[:] = [m for m in node.own_markers if m.name != "xdist_group"]
        item.add_marker(pytest.mark.xdist_group(name))



class StableIds:
    """On the pytest-xdist controller: reports keep the test ID a serial run gives. pytest-xdist carries
    the group in the node ID ("…[east:mx@node1]@mailconform-east"); JUnit, the summary and CI history
    key on the test ID, which must not depend on whether the run was distributed."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        at = report.nodeid.rfind(f"@{GROUP_PREFIX}-")
        if at > report.nodeid.rfind("]"):
            report.nodeid = report.nodeid[:at]


def _worker_slot(config: pytest.Config) -> tuple[int, int] | None:
    """This worker's index and the number of workers, or None outside pytest-xdist."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    return int(str(workerinput["workerid"]).removeprefix("gw")), int(workerinput["workercount"])


def group_owner(group: str, groups: Sequence[str], workers: int) -> int | None:
    """The index of the worker that runs a target group: fixed from the start, so a worker knows all its
    targets (and can probe the next ones ahead); None for a group that is not a target's, or when there
    are no more groups than workers (pytest-xdist's own loadgroup order then gives each worker one)."""
    if group not in groups or len(groups) <= workers:
        return None
    return groups.index(group) % workers


def target_group_names(nodeids: Iterable[str]) -> list[str]:
    """The target groups in collection order, from pytest-xdist node IDs ("…@mailconform-east")."""
    found: dict[str, None] = {}
    for nodeid in nodeids:
        at = nodeid.rfind(f"@{GROUP_PREFIX}-")
        if at > nodeid.rfind("]"):
            found[nodeid[at + 1:]] = None
    return list(found)


def own_targets(config: pytest.Config, items: Sequence[pytest.Item], targets: Sequence[Target]) -> list[Target]:
    """The targets this process runs, in the order it runs them: all of them in a serial run; under
    pytest-xdist those of the groups ``FleetScheduling`` gives this worker (none when it does not decide)."""
    order: dict[int, Target] = {}
    for item in items:
        target = item_target(item)
        if target is not None:
            order.setdefault(id(target), target)
    slot = _worker_slot(config)
    if slot is None:
        return list(order.values())
    index, workers = slot
    groups = target_group_names(item.nodeid for item in items)
    group_of = {id(item_target(item)): item.nodeid[item.nodeid.rfind("@") + 1:] for item in items
                if item_target(item) is not None}
    return [t for t in order.values() if group_owner(group_of.get(id(t), ""), groups, workers) == index]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.stash.get(TARGETS_KEY, ()) and grouping(config) and len(config.stash[TARGETS_KEY]) > 1:
        return _fleet_scheduling()(config, log)
    return None


def _node_index(node: Any) -> int:
    return int(str(node.workerinput["workerid"]).removeprefix("gw"))


def _fleet_scheduling() -> type:
    from xdist.scheduler import LoadGroupScheduling  # only under pytest-xdist

    class FleetScheduling(LoadGroupScheduling):  # type: ignore[misc]
        """Loadgroup, but each target group goes to the worker ``group_owner`` names, all at the start:
        pytest-xdist's own order sends a worker its next group only when the last is nearly done, so a
        worker could never probe its next targets while it judges the current one."""

        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            self._left: dict[str, int] = {}  # work unit (a target's group) -> its tests not yet done

        def _assign_work_unit(self, node: Any) -> None:
            groups = target_group_names(self.collection or ())
            # a crashed worker's replacement gets a new index: the dead one's groups have no owner and go to
            # whoever asks, one at a time, as pytest-xdist's own order gives them
            live = {_node_index(n) for n in self.nodes}
            owners = {scope: owner if owner in live else None
                      for scope, owner in ((s, group_owner(s, groups, self.numnodes)) for s in self.workqueue)}
            if all(owner is None for owner in owners.values()):
                super()._assign_work_unit(node)
                return
            index = _node_index(node)
            mine = [s for s, o in owners.items() if o == index] or [s for s, o in owners.items() if o is None][:1]
            assigned = self.assigned_work.setdefault(node, {})
            position = {nodeid: i for i, nodeid in enumerate(self.registered_collections[node])}
            for scope in mine:
                work_unit = self.workqueue.pop(scope)
                assigned[scope] = work_unit
                node.send_runtest_some([position[nodeid] for nodeid, done in work_unit.items() if not done])

        def remove_node(self, node: Any) -> str | None:
            """A worker gone: its unfinished target groups go back in the queue for the others (or its
            replacement), less the check it died in. That one is reported as the crash, as pytest-xdist's
            load mode does: run again it would give a second, contradicting case of the same name in the
            report, and it could kill the next worker the same way."""
            workload = self.assigned_work.pop(node)
            crashed = next((nodeid for unit in workload.values() for nodeid, done in unit.items() if not done), None)
            if crashed is None:
                return None
            scope = self._split_scope(crashed)
            workload[scope][crashed] = True
            if scope in self._left:
                self._left[scope] -= 1
            self.workqueue.update((s, unit) for s, unit in workload.items() if not all(unit.values()))
            for other in self.assigned_work:
                self._reschedule(other)
            return crashed

        # pytest-xdist counts every worker's pending tests item by item after each event (tests_finished):
        # with all of a fleet's groups assigned at the start, that is checks x checks over a run. A count
        # per work unit, kept as tests complete, makes it a sum over the units.
        def _pending_of(self, workload: dict[str, dict[str, bool]]) -> int:
            for scope, unit in workload.items():
                if scope not in self._left:
                    self._left[scope] = list(unit.values()).count(False)
            return sum(self._left[scope] for scope in workload)

        def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
            nodeid = self.registered_collections[node][item_index]
            scope = self._split_scope(nodeid)
            if self.assigned_work[node][scope].get(nodeid) is False and scope in self._left:
                self._left[scope] -= 1
            super().mark_test_complete(node, item_index, duration)

    return FleetScheduling
