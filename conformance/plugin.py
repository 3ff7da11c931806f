"""pytest11 entry point: options, markers, endpoint parametrization, verdicts, JUnit properties.

Hooks only; the work happens in probes/, the fixtures live in conformance/fixtures/.
Every value written into a report is a plain string, so pytest-xdist can carry it between workers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance import requirements
from conformance.evidence import Evidence
from conformance.requirements import Level, Requirement
from conformance.target import Service, Target, TargetError, load_target
from conformance.verdict import (
    FLEET,
    NOTHING_REACHED,
    FailOn,
    Inconclusive,
    Verdict,
    default_fail_on,
    fails_run,
)

FIXTURE_MODULES = (
    "conformance.fixtures.core",
    "conformance.fixtures.smtp",
    "conformance.fixtures.account",
    "conformance.fixtures.tls",
    "conformance.fixtures.auth",
    "conformance.fixtures.oauth",
    "conformance.fixtures.lockout",
    "conformance.fixtures.failover",
    "conformance.fixtures.dns",
)


@dataclass(frozen=True)
class MailOptions:
    target: Target | None
    profile: str
    fail_on: FailOn
    allow_lockout: bool
    allow_disruption: bool
    timeout: float | None


@dataclass(frozen=True)
class RequirementMark:
    requirement: Requirement
    level: Level | None  # None: the active profile leaves this requirement out


_ENDPOINT_PREFIX = re.compile(r"^[\w-]+@[\w.-]+(\[[^\]]*\])?: ")
OPTIONS_KEY = pytest.StashKey[MailOptions]()
REQUIREMENT_KEY = pytest.StashKey[RequirementMark]()
EVIDENCE_KEY = pytest.StashKey[Evidence]()
RECORDED_KEY = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mailconform", "mail gateway conformance")
    group.addoption("--mail-target", metavar="TOML", help="target file describing the gateway under test")
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(id): the catalogue requirement this check proves")
    config.addinivalue_line("markers", "service(*names): services whose endpoints the check runs against")
    config.stash[OPTIONS_KEY] = _read_options(config)
    for module in FIXTURE_MODULES:
        config.pluginmanager.import_plugin(module)
    if not hasattr(config, "workerinput"):  # the xdist controller (or a plain run) decides the exit code
        config.pluginmanager.register(VerdictPolicy(config.stash[OPTIONS_KEY]), "mailconform-verdicts")


def _read_options(config: pytest.Config) -> MailOptions:
    profile = config.getoption("mail_profile")
    path = config.getoption("mail_target")
    target = None
    if path:
        try:
            target = load_target(Path(path))
        except TargetError as exc:
            raise pytest.UsageError(str(exc)) from None
        if target.domain:  # every MX host of the mail domain is checked too (a DNS failure changes nothing)
            from conformance.probes.dns.mx import expand_target
            target, _ = expand_target(target)
    fail_on = config.getoption("mail_fail_on")
    return MailOptions(
        target=target,
        profile=profile,
        fail_on=FailOn(fail_on) if fail_on else default_fail_on(profile),
        allow_lockout=config.getoption("mail_allow_lockout"),
        allow_disruption=config.getoption("mail_allow_disruption"),
        timeout=config.getoption("mail_timeout"),
    )


def options(config: pytest.Config) -> MailOptions:
    return config.stash[OPTIONS_KEY]


def pytest_report_header(config: pytest.Config) -> list[str]:
    opts = options(config)
    if opts.target is None:
        return []  # not a conformance run (e.g. a project's own tests); checks still skip saying why
    optins = [name for name, on in (("lockout", opts.allow_lockout), ("disruption", opts.allow_disruption)) if on]
    return [
        (f"mailconform: target {opts.target.name!r} from {opts.target.source} "
        f"({len(opts.target.endpoints)} endpoints on {len(opts.target.nodes)} nodes)"),
        f"mailconform: profile {opts.profile}, fail-on {opts.fail_on}, opt-ins: {', '.join(optins) or 'none'}",
        *_xdist_warning(config, optins),
    ]


def _xdist_warning(config: pytest.Config, optins: list[str]) -> list[str]:
    """Outages and lockouts on one worker are visible to the passive checks on the others."""
    if not optins or not config.getoption("numprocesses", None):
        return []
    return [("mailconform: WARNING: active checks under pytest-xdist: passive checks on other workers may meet "
            "an outage or a lock and come out inconclusive; scan with -n without opt-ins, then run the active "
            "families serially")]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    _requirement_mark(metafunc.definition, options(metafunc.config).profile)  # unknown ID: collection error
    if "endpoint" not in metafunc.fixturenames:
        return
    service_mark = metafunc.definition.get_closest_marker("service")
    if service_mark is None or not service_mark.args:
        pytest.fail(f"{metafunc.definition.nodeid}: uses 'endpoint' without @pytest.mark.service(...)",
                    pytrace=False)
    services = [Service(s) for s in service_mark.args]
    target = options(metafunc.config).target
    if target is None:
        params = [pytest.param(None, id="no-target", marks=pytest.mark.skip(reason="no --mail-target given"))]
    else:
        endpoints = target.endpoints_for(*services)
        params = [pytest.param(e, id=e.id) for e in endpoints] or [pytest.param(
            None, id="no-endpoint",
            marks=pytest.mark.skip(reason=f"target has no {'/'.join(services)} endpoint"))]
    metafunc.parametrize("endpoint", params)


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
        _record_properties(item, report, _verdict_of(report, call))


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
    """The endpoint a check judged, or for a check of the whole fleet, the nodes it covers."""
    callspec = getattr(item, "callspec", None)
    endpoint = callspec.params.get("endpoint") if callspec is not None else None
    if endpoint is not None:
        return f"{endpoint.service} {endpoint.host}:{endpoint.port} ({endpoint.node})"
    target = options(item.config).target
    return f"{FLEET} ({', '.join(n.name for n in target.nodes)})" if target is not None else FLEET


def _record_properties(item: pytest.Item, report: pytest.TestReport, verdict: Verdict) -> None:
    mark = _stashed_mark(item)
    props: list[tuple[str, object]] = [("verdict", str(verdict))]
    if mark is not None:
        req = mark.requirement
        props += [("requirement", req.id), ("title", req.title), ("source", req.source),
                  ("level", str(mark.level or req.level)), ("family", req.family)]
    evidence = item.stash.get(EVIDENCE_KEY, None)
    reason = _reason(report, evidence, mark)
    props += [("endpoint", _endpoint(item)), ("reason", reason)]
    if evidence is not None:
        props += [(f"evidence.{k}", v) for k, v in evidence.items.items()]
    if verdict in (Verdict.FAIL, Verdict.INCONCLUSIVE):
        transcripts = evidence.transcripts if evidence is not None else []
        # an inconclusive case always says what was tried and what came back, even if nothing was
        text = "\n".join(transcripts)[-4000:] or (f"-- {reason}" if verdict is Verdict.INCONCLUSIVE else "")
        if text:
            props.append(("transcript", text))
    secrets = _secrets(item)
    item.user_properties.extend((k, _scrub(str(v), secrets)) for k, v in props)


def _secrets(item: pytest.Item) -> tuple[str, ...]:
    target = options(item.config).target
    return target.secrets() if target is not None else ()


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

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown" and report.failed:
            self.failing.append(report.nodeid)  # a broken teardown (e.g. a node not brought back) always counts
        if report.when != "teardown":
            return
        props = dict(report.user_properties)
        verdict = Verdict(str(props.get("verdict", Verdict.PASS)))
        level = str(props.get("level", "MUST"))  # a plain test of the user's own counts like a MUST
        self.seen[verdict, not str(props.get("endpoint", FLEET)).startswith(FLEET)] += 1
        if verdict is Verdict.INCONCLUSIVE:
            self.inconclusive[_ENDPOINT_PREFIX.sub("", str(props.get("reason", "")))] += 1
        if fails_run(self.opts.fail_on, verdict, level):
            self.failing.append(report.nodeid)
        elif verdict is Verdict.FAIL:
            self.should_failed.append(report.nodeid)

    @property
    def nothing_reached(self) -> bool:
        """Checks ran, and none could judge an endpoint (or none could judge at all)."""
        def count(verdicts: tuple[Verdict, ...], one_endpoint: tuple[bool, ...] = (True, False)) -> int:
            return sum(self.seen[v, e] for v in verdicts for e in one_endpoint)

        judged = (Verdict.PASS, Verdict.FAIL)
        return bool(count((Verdict.INCONCLUSIVE,), (True,)) and not count(judged, (True,))
                    or count((Verdict.INCONCLUSIVE,)) and not count(judged))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED if self.failing else pytest.ExitCode.OK
            if self.nothing_reached:
                session.exitstatus = NOTHING_REACHED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for reason, count in self.inconclusive.most_common(3):  # a cause shared by many checks, said once
            if count > 1:
                terminalreporter.write_line(f"mailconform: {count} check(s) inconclusive: {reason}", yellow=True)
        if self.nothing_reached:
            terminalreporter.write_line(
                f"mailconform: no endpoint could be reached: {sum(self.inconclusive.values())} check(s) inconclusive, "
                f"none judged an endpoint (exit code {NOTHING_REACHED}); check the target file", red=True)
        if self.should_failed:
            terminalreporter.write_line(
                f"mailconform: {len(self.should_failed)} SHOULD requirement(s) not met "
                f"(reported, not failing the run under --mail-fail-on={self.opts.fail_on})", yellow=True)
        if self.failing:
            terminalreporter.write_line(
                f"mailconform: {len(self.failing)} result(s) fail the run under --mail-fail-on={self.opts.fail_on}",
                red=True)
