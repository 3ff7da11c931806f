"""pytest11 entry point: options, markers, endpoint parametrization, verdicts, JUnit properties.

Hooks only; the work happens in probes/, the fixtures live in conformance/fixtures/.
Every value written into a report is a plain string, so pytest-xdist can carry it between workers.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import pytest

from conformance import fleet, progress, requirements
from conformance.evidence import Evidence
from conformance.requirements import Level, Requirement
from conformance.target import Service, Target, TargetError, Waiver
from conformance.verdict import (
    FLEET,
    NOTHING_REACHED,
    FailOn,
    Inconclusive,
    Verdict,
    default_fail_on,
    fails_run,
    nothing_reached,
)

if TYPE_CHECKING:
    from conformance.probes.dns.mx import MxSet
    from conformance.probes.wire.outcome import Attempt

FIXTURE_MODULES = (
    "conformance.fixtures.core",
    "conformance.fixtures.prefetch",
    "conformance.fixtures.smtp",
    "conformance.fixtures.account",
    "conformance.fixtures.tls",
    "conformance.fixtures.auth",
    "conformance.fixtures.oauth",
    "conformance.fixtures.lockout",
    "conformance.fixtures.failover",
    "conformance.fixtures.dns",
    "conformance.fixtures.outbound",
)


DEFAULT_PREFETCH = 16  # --mail-prefetch's default


@dataclass(frozen=True)
class MailOptions:
    target: Target | None            # the first (with one --mail-target, the only) target
    profile: str
    fail_on: FailOn
    allow_lockout: bool
    allow_disruption: bool
    timeout: float | None
    targets: tuple[Target, ...] = ()
    prefetch: int = DEFAULT_PREFETCH  # targets probed ahead on a worker (fixtures/prefetch.py)
    # target name -> its domain's MX resolution, once per run (on a worker: the controller's)
    mx_sets: Mapping[str, Attempt[MxSet]] = field(default_factory=dict)

    def timeout_for(self, target: Target) -> float:
        """--mail-timeout when given, else the target file's own."""
        return self.timeout or target.timeout


@dataclass(frozen=True)
class RequirementMark:
    requirement: Requirement
    level: Level | None  # None: the active profile leaves this requirement out


_ENDPOINT_PREFIX = re.compile(r"^[\w-]+@[\w.-]+(\[[^\]]*\])?: ")
OPTIONS_KEY = pytest.StashKey[MailOptions]()
REQUIREMENT_KEY = pytest.StashKey[RequirementMark]()
EVIDENCE_KEY = pytest.StashKey[Evidence]()
RECORDED_KEY = pytest.StashKey[bool]()
HEADER_TARGETS = 5  # targets named one per line in the report header; a fleet of 200 is counted
MX_WORKER_KEY = "mailconform_mx_sets"  # the controller's MX resolutions, in a pytest-xdist worker's workerinput


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mailconform", "mail gateway conformance")
    group.addoption("--mail-target", metavar="TOML", action="append",
                    help="target file describing the gateway under test; repeat it, or name a directory of "
                         "*.toml files, to check several targets in one run")
    group.addoption("--mail-profile", choices=requirements.PROFILES, default=requirements.DEFAULT_PROFILE,
                    help="requirement profile (default: %(default)s)")
    group.addoption("--mail-fail-on", choices=[f.value for f in FailOn], default=None,
                    help="exit non-zero on: must (failed MUST), must-proven (failed or inconclusive MUST; "
                         "default for sensitive-data), should (any failed requirement), never")
    group.addoption("--mail-allow-lockout", action="store_true",
                    help="run lockout checks (they lock the target's dedicated lockout account)")
    group.addoption("--mail-allow-disruption", action="store_true",
                    help="run active failover checks (they take nodes down through the target's hooks)")
    group.addoption("--mail-timeout", type=float, default=None, metavar="SECONDS",
                    help="override the target's per-operation network timeout")
    group.addoption("--mail-prefetch", type=int, default=DEFAULT_PREFETCH, metavar="K",
                    help="with several targets, probe the next K targets' passive probes while the current "
                         "one's checks run (default: %(default)s; 0: one target at a time)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(id): the catalogue requirement this check proves")
    config.addinivalue_line("markers", "service(*names): services whose endpoints the check runs against")
    # a legacy root in the system CA bundle; warnings.catch_warnings around its loading is not thread-safe,
    # so with targets probed in threads the warning could reach the user's summary
    config.addinivalue_line("filterwarnings", "ignore:Parsed a serial number which wasn't positive:"
                                              "cryptography.utils.CryptographyDeprecationWarning")
    config.stash[OPTIONS_KEY] = _read_options(config)
    config.stash[fleet.TARGETS_KEY] = config.stash[OPTIONS_KEY].targets
    for module in FIXTURE_MODULES:
        config.pluginmanager.import_plugin(module)
    config.pluginmanager.register(fleet, "mailconform-fleet")
    config.pluginmanager.import_plugin("conformance.progress")
    if not hasattr(config, "workerinput"):  # the xdist controller (or a plain run) decides the exit code
        config.pluginmanager.register(VerdictPolicy(config.stash[OPTIONS_KEY]), "mailconform-verdicts")
        config.pluginmanager.register(fleet.StableIds(), "mailconform-stable-ids")
        if len(config.stash[OPTIONS_KEY].targets) > 1:
            names = [target.name for target in config.stash[OPTIONS_KEY].targets]
            config.pluginmanager.register(progress.FleetProgress(config, names), "mailconform-progress-lines")


def _read_options(config: pytest.Config) -> MailOptions:
    profile = config.getoption("mail_profile")
    try:  # every file first: one bad file stops the run before any traffic
        targets = fleet.load_targets(config.getoption("mail_target") or ())
    except TargetError as exc:
        raise pytest.UsageError(str(exc)) from None
    timeout = config.getoption("mail_timeout")
    mx_sets = _mx_sets(config, targets, timeout)
    if mx_sets:  # every MX host of the mail domain is checked too (a DNS failure changes nothing)
        from conformance.probes.dns.mx import expanded
        targets = tuple(expanded(t, mx_sets.get(t.name)) for t in targets)
    fail_on = config.getoption("mail_fail_on")
    return MailOptions(
        target=targets[0] if targets else None,
        targets=targets,
        profile=profile,
        fail_on=FailOn(fail_on) if fail_on else default_fail_on(profile),
        allow_lockout=config.getoption("mail_allow_lockout"),
        allow_disruption=config.getoption("mail_allow_disruption"),
        timeout=timeout,
        prefetch=max(0, config.getoption("mail_prefetch")),
        mx_sets=mx_sets,
    )


def _mx_sets(config: pytest.Config, targets: tuple[Target, ...], timeout: float | None) -> dict[str, Attempt[MxSet]]:
    """Each target's MX resolution, once per run: a pytest-xdist worker takes the controller's, so every
    process sees one answer (the same endpoints, so the same checks collected) and DNS sees one query."""
    if not any(t.domain for t in targets):
        return {}
    from conformance.probes.dns import mx
    given = getattr(config, "workerinput", {}).get(MX_WORKER_KEY)
    if given is not None:
        return {name: mx.attempt_from_plain(plain) for name, plain in given.items()}
    return mx.resolve_targets(targets, lambda t: timeout or t.timeout)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    mx_sets = options(node.config).mx_sets
    if mx_sets:
        from conformance.probes.dns.mx import attempt_to_plain
        node.workerinput[MX_WORKER_KEY] = {name: attempt_to_plain(found) for name, found in mx_sets.items()}


def options(config: pytest.Config) -> MailOptions:
    return config.stash[OPTIONS_KEY]


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, Any, Any]:
    fleet.default_dist(config)  # before pytest-xdist's own hook turns an unset --dist into "load"
    return (yield)


def pytest_report_header(config: pytest.Config) -> list[str]:
    opts = options(config)
    if opts.target is None:
        return []  # not a conformance run (e.g. a project's own tests); checks still skip saying why
    optins = [name for name, on in (("lockout", opts.allow_lockout), ("disruption", opts.allow_disruption)) if on]
    return [
        *(f"mailconform: target {t.name!r} from {t.source} ({len(t.endpoints)} endpoints on {len(t.nodes)} nodes)"
          for t in opts.targets[:HEADER_TARGETS]),
        *([f"mailconform: … and {len(opts.targets) - HEADER_TARGETS} more targets"]
          if len(opts.targets) > HEADER_TARGETS else []),
        f"mailconform: profile {opts.profile}, fail-on {opts.fail_on}, opt-ins: {', '.join(optins) or 'none'}",
        *_xdist_warning(config, optins),
    ]


def _xdist_warning(config: pytest.Config, optins: list[str]) -> list[str]:
    """Only --dist loadgroup keeps each target on one worker: any other mode probes it again on every worker."""
    dist = config.getoption("dist", "no")
    if not fleet.distributing(config) or dist in ("no", fleet.LOADGROUP):
        return []
    lines = [(f"mailconform: WARNING: --dist {dist} runs a target's checks on several workers, and each probes "
             "every endpoint again (more connections than the per-host budget allows); leave --dist unset")]
    if optins:
        lines.append("mailconform: WARNING: active checks on one worker may lock or take down what passive "
                     "checks on another are probing: they then come out inconclusive")
    return lines


PER_TARGET_ARGS = ("endpoint", "mail_domain")  # what a check is parametrized over within one target


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    opts = options(metafunc.config)
    _requirement_mark(metafunc.definition, opts.profile)  # unknown ID: collection error
    names = [name for name in PER_TARGET_ARGS if name in metafunc.fixturenames]
    if len(opts.targets) <= 1 or "target" not in metafunc.fixturenames:
        for name in names:
            metafunc.parametrize(name, _params_for(name, metafunc, opts.target))
        return
    values = []
    for target in opts.targets:  # each check once per target, its ID led by the target's name
        for combo in itertools.product(*(_params_for(name, metafunc, target) for name in names)):
            values.append(pytest.param(target, *(p.values[0] for p in combo),
                                       id=":".join([target.name, *(str(p.id) for p in combo)]),
                                       marks=[m for p in combo for m in p.marks]))
    # session scope: the probes (session fixtures of the target) are set up once per target
    metafunc.parametrize(["target", *names], values, scope="session")


def _params_for(name: str, metafunc: pytest.Metafunc, target: Target | None) -> list[Any]:
    if name == "mail_domain":
        from conformance.fixtures.dns import domain_params
        return domain_params(target)
    service_mark = metafunc.definition.get_closest_marker("service")
    if service_mark is None or not service_mark.args:
        pytest.fail(f"{metafunc.definition.nodeid}: uses 'endpoint' without @pytest.mark.service(...)",
                    pytrace=False)
    services = [Service(s) for s in service_mark.args]
    if target is None:
        return [pytest.param(None, id="no-target", marks=pytest.mark.skip(reason="no --mail-target given"))]
    return [pytest.param(e, id=e.id) for e in target.endpoints_for(*services)] or [pytest.param(
        None, id="no-endpoint", marks=pytest.mark.skip(reason=f"target has no {'/'.join(services)} endpoint"))]


def _requirement_mark(definition: pytest.Function | Any, profile: str) -> RequirementMark | None:
    """Read the requirement marker once; an unknown or missing ID is a collection error naming the test."""
    marker = definition.get_closest_marker("requirement")
    if marker is None:
        return None
    if len(marker.args) != 1 or not isinstance(marker.args[0], str):
        pytest.fail(f"{definition.nodeid}: @pytest.mark.requirement takes exactly one ID string", pytrace=False)
    try:
        requirement = requirements.get(marker.args[0])
    except KeyError as exc:
        pytest.fail(f"{definition.nodeid}: {exc.args[0]} (see `mailconform requirements`)", pytrace=False)
    return RequirementMark(requirement, requirement.level_in(profile))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    profile = options(config).profile
    for item in items:
        mark = _requirement_mark(item, profile)
        if mark is None:
            continue
        item.stash[REQUIREMENT_KEY] = mark
        if mark.level is None:
            item.add_marker(pytest.mark.skip(reason=f"not part of the {profile} profile"))


def _stashed_mark(item: pytest.Item) -> RequirementMark | None:
    return item.stash.get(REQUIREMENT_KEY, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if call.excinfo is not None and call.excinfo.errisinstance(Inconclusive):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"INCONCLUSIVE: {call.excinfo.value}")
    _scrub_secrets(item, report)
    decisive = report.when == "call" or (report.when == "setup" and not report.passed)
    if decisive and not item.stash.get(RECORDED_KEY, False):
        item.stash[RECORDED_KEY] = True
        _record_properties(item, report, _verdict_of(report, call), _waiver_for(item))


def _verdict_of(report: pytest.TestReport, call: pytest.CallInfo[None]) -> Verdict:
    if report.passed:
        return Verdict.PASS
    if report.failed:
        return Verdict.FAIL
    if call.excinfo is not None and call.excinfo.errisinstance(Inconclusive):
        return Verdict.INCONCLUSIVE
    return Verdict.SKIPPED


def _reason(report: pytest.TestReport, evidence: Evidence | None, mark: RequirementMark | None) -> str:
    if report.passed:
        return _seen(evidence, mark)
    if isinstance(report.longrepr, tuple):  # the verdict property already says skipped or inconclusive
        return str(report.longrepr[2]).removeprefix("Skipped: ").removeprefix("INCONCLUSIVE: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return text.removeprefix("AssertionError: ").split("\nassert ")[0].strip()


def _seen(evidence: Evidence | None, mark: RequirementMark | None) -> str:
    """A pass's reason: what the check saw (its evidence), or at least what it proved."""
    if evidence is not None and evidence.items:
        seen = "; ".join(f"{key}: {value}" for key, value in evidence.items.items())
        return "saw " + (seen if len(seen) <= 600 else seen[:599] + "…")
    if evidence is not None and evidence.transcripts:
        return "saw " + evidence.transcripts[-1].splitlines()[-1].removeprefix("S: ").removeprefix("-- ")
    return f"met: {mark.requirement.title}" if mark is not None else "passed"


def _endpoint(item: pytest.Item) -> str:
    """The endpoint a check judged, or for a check of the whole fleet, the nodes it covers; with several
    targets, led by the target's name."""
    callspec = getattr(item, "callspec", None)
    endpoint = callspec.params.get("endpoint") if callspec is not None else None
    own = fleet.item_target(item)
    if endpoint is not None:
        where = f"{endpoint.service} {endpoint.host}:{endpoint.port} ({endpoint.node})"
        return f"{own.name}: {where}" if own is not None else where
    target = own or options(item.config).target
    if target is None:
        return FLEET
    return f"{FLEET}{f' {own.name}' if own else ''} ({', '.join(n.name for n in target.nodes)})"


def _waiver_for(item: pytest.Item) -> Waiver | None:
    target, mark = fleet.item_target(item) or options(item.config).target, _stashed_mark(item)
    if target is None or mark is None:
        return None
    callspec = getattr(item, "callspec", None)
    endpoint = callspec.params.get("endpoint") if callspec is not None else None
    return target.waiver_for(mark.requirement.id, endpoint.id if endpoint is not None else FLEET,
                             endpoint.node if endpoint is not None else None, date.today())


def _waive(report: pytest.TestReport, verdict: Verdict, reason: str,
           waiver: Waiver | None) -> tuple[Verdict, list[tuple[str, object]]]:
    """The verdict to report and the waiver's properties. A waiver in force turns a failed or inconclusive
    check into a skipped one with a WAIVED message (the run's exit code ignores it); an expired one says so."""
    if waiver is None or verdict not in (Verdict.FAIL, Verdict.INCONCLUSIVE):
        return verdict, []
    props: list[tuple[str, object]] = [("waiver.reason", waiver.reason), ("waiver.approved_by", waiver.approved_by),
                                       ("waiver.expires", str(waiver.expires))]
    if waiver.expired(date.today()):
        return verdict, [("waiver", f"expired on {waiver.expires}: no longer applies"), *props]
    report.outcome = "skipped"
    report.longrepr = (str(report.fspath), report.location[1] or 0, f"WAIVED: {waiver}; {verdict}: {reason}")
    return Verdict.WAIVED, [("waived_verdict", str(verdict)), ("waiver", str(waiver)), *props]


def _record_properties(item: pytest.Item, report: pytest.TestReport, verdict: Verdict,
                       waiver: Waiver | None = None) -> None:
    mark = _stashed_mark(item)
    evidence = item.stash.get(EVIDENCE_KEY, None)
    reason = _reason(report, evidence, mark)
    verdict, waiver_props = _waive(report, verdict, _scrub(reason, _secrets(item)), waiver)
    props: list[tuple[str, object]] = [("verdict", str(verdict))]
    if mark is not None:
        req = mark.requirement
        props += [("requirement", req.id), ("title", req.title), ("source", req.source),
                  ("level", str(mark.level or req.level)), ("family", req.family)]
    target = fleet.item_target(item) or options(item.config).target
    props += [("target", target.name if target else ""), ("endpoint", _endpoint(item)), ("reason", reason),
              *waiver_props]
    if evidence is not None:
        props += [(f"evidence.{k}", v) for k, v in evidence.items.items()]
    if verdict in (Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.WAIVED):
        transcripts = evidence.transcripts if evidence is not None else []
        # an inconclusive case always says what was tried and what came back, even if nothing was
        text = "\n".join(transcripts)[-4000:] or (f"-- {reason}" if verdict is Verdict.INCONCLUSIVE else "")
        if text:
            props.append(("transcript", text))
    secrets = _secrets(item)
    item.user_properties.extend((k, _scrub(str(v), secrets)) for k, v in props)


SECRETS_KEY = pytest.StashKey[dict[int | None, tuple[str, ...]]]()


def _secrets(item: pytest.Item) -> tuple[str, ...]:
    """The secrets a check's words are scrubbed of: its own target's (its probes saw no other's), or every
    target's for a check of no one target. Worked out once per target: each check's reports are scrubbed
    several times, and a fleet run of N targets must not pay N × checks for it."""
    own = fleet.item_target(item)
    known = item.config.stash.setdefault(SECRETS_KEY, {})
    key = id(own) if own is not None else None
    if key not in known:
        targets = [own] if own is not None else options(item.config).targets
        known[key] = tuple(dict.fromkeys(secret for target in targets for secret in target.secrets()))
    return known[key]


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text


def _scrub_secrets(item: pytest.Item, report: pytest.TestReport) -> None:
    """Backstop: a password must never reach a report, even through an assertion's repr."""
    secrets = _secrets(item)
    if not secrets or report.longrepr is None:
        return
    if isinstance(report.longrepr, tuple):
        path, line, text = report.longrepr
        report.longrepr = (path, line, _scrub(text, secrets))
    elif any(s in str(report.longrepr) for s in secrets):
        report.longrepr = _scrub(str(report.longrepr), secrets)
    report.sections = [(title, _scrub(body, secrets)) for title, body in report.sections]


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    if report.skipped and isinstance(report.longrepr, tuple) and "INCONCLUSIVE: " in str(report.longrepr[2]):
        return "inconclusive", "I", "INCONCLUSIVE"
    if report.skipped and isinstance(report.longrepr, tuple) and str(report.longrepr[2]).startswith("WAIVED: "):
        return "waived", "W", "WAIVED"
    return None


class VerdictPolicy:
    """Decides the exit code from the verdicts and levels carried in each test's final report."""

    def __init__(self, opts: MailOptions) -> None:
        self.opts = opts
        self.failing: list[str] = []
        self.should_failed: list[str] = []
        self.inconclusive: Counter[str] = Counter()  # reason (without its endpoint) -> checks
        # (verdict, one endpoint or not) -> checks: did any check reach and judge an endpoint?
        self.seen: Counter[tuple[Verdict, bool]] = Counter()
        self.targets: defaultdict[str, set[str]] = defaultdict(set)  # summary line -> the targets it covers
        self.waivers: Counter[str] = Counter()  # "REQ: waived until … / expired on …" -> checks

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown" and report.failed:
            self.failing.append(report.nodeid)  # a broken teardown (e.g. a node not brought back) always counts
        if report.when != "teardown":
            return
        props = dict(report.user_properties)
        verdict = Verdict(str(props.get("verdict", Verdict.PASS)))
        level = str(props.get("level", "MUST"))  # a plain test of the user's own counts like a MUST
        if "waiver" in props:
            self.waivers[f"{props.get('requirement')}: {props['waiver']}"] += 1
        if verdict is Verdict.WAIVED:  # judged (or not) like any check, never failing the run
            self.seen[Verdict(str(props["waived_verdict"])), not str(props.get("endpoint")).startswith(FLEET)] += 1
            return
        self.seen[verdict, not str(props.get("endpoint", FLEET)).startswith(FLEET)] += 1
        target = str(props.get("target", ""))
        if verdict is Verdict.INCONCLUSIVE:
            reason = _ENDPOINT_PREFIX.sub("", str(props.get("reason", "")))
            self.inconclusive[reason] += 1
            self.targets[reason].add(target)
        if fails_run(self.opts.fail_on, verdict, level):
            self.failing.append(report.nodeid)
            self.targets["failing"].add(target)
        elif verdict is Verdict.FAIL:
            self.should_failed.append(report.nodeid)
            self.targets["should"].add(target)

    def _of(self, line: str) -> str:
        """With several targets, which ones a summary line speaks of."""
        names = sorted(t for t in self.targets[line] if t)
        return f" (target{'s' if len(names) > 1 else ''} {', '.join(names)})" if len(self.opts.targets) > 1 else ""

    @property
    def nothing_reached(self) -> bool:
        return nothing_reached(self.seen)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """The run's own facts go into the JUnit file, so that every report is made from that file alone.
        pytest's own record_testsuite_property works through this key; there is no public way from a hook."""
        from _pytest.junitxml import xml_key

        xml = session.config.stash.get(xml_key, None)
        if xml is None:
            return
        targets = self.opts.targets  # a fleet run names every target
        facts = {"target": ", ".join(t.name for t in targets), "target_file": ", ".join(str(t.source or "") for t in targets),
                 "profile": self.opts.profile, "fail_on": str(self.opts.fail_on), "version": _suite_version()}
        for name, value in facts.items():
            xml.add_global_property(f"mailconform.{name}", value)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED if self.failing else pytest.ExitCode.OK
            if self.nothing_reached:
                session.exitstatus = NOTHING_REACHED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for waiver, count in sorted(self.waivers.items()):
            terminalreporter.write_line(f"mailconform: {count} check(s) of {waiver}", yellow=True)
        for reason, count in self.inconclusive.most_common(3):  # a cause shared by many checks, said once
            if count > 1:
                terminalreporter.write_line(f"mailconform: {count} check(s) inconclusive{self._of(reason)}: {reason}",
                                            yellow=True)
        if self.nothing_reached:
            terminalreporter.write_line(
                f"mailconform: no endpoint could be reached: {sum(self.inconclusive.values())} check(s) inconclusive, "
                f"none judged an endpoint (exit code {NOTHING_REACHED}); check the target file", red=True)
        if self.should_failed:
            terminalreporter.write_line(
                f"mailconform: {len(self.should_failed)} SHOULD requirement(s) not met{self._of('should')} "
                f"(reported, not failing the run under --mail-fail-on={self.opts.fail_on})", yellow=True)
        if self.failing:
            terminalreporter.write_line(
                f"mailconform: {len(self.failing)} result(s){self._of('failing')} fail the run under "
                f"--mail-fail-on={self.opts.fail_on}",
                red=True)


def _suite_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mailconform")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"
