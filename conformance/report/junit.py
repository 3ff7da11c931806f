"""The one record of a run: the JUnit XML it wrote, read back into typed results.

Reading the JUnit file (not in-process state) means every report is the same for plain, CLI and
pytest-xdist runs, and `mailconform report` on an old file gives what the run itself gave.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.parsers.expat import ErrorString

from conformance.verdict import FLEET

JUNIT_ROOTS = ("testsuites", "testsuite")
RUN_PREFIX = "mailconform."  # the run's own facts, written by the plugin as <testsuite> properties
_ENDPOINT = re.compile(r"^(\S+) \S+ \(([^)]+)\)$")  # "submission mx1.example:587 (mx1)"


class ReportError(ValueError):
    """A file that cannot be summarized; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class CaseResult:
    name: str
    verdict: str
    requirement: str
    level: str
    family: str
    endpoint: str
    reason: str
    classname: str = ""
    properties: tuple[tuple[str, str], ...] = ()
    message: str = ""   # the check's own message, in full: the finding and what to change

    def prop(self, name: str, default: str = "") -> str:
        return next((value for key, value in self.properties if key == name), default)

    @property
    def evidence(self) -> list[tuple[str, str]]:
        return [(k.removeprefix("evidence."), v) for k, v in self.properties if k.startswith("evidence.")]

    @property
    def endpoint_id(self) -> str:
        """``service@node`` as in the test ID (stable across runs, unlike a port); the fleet for fleet checks."""
        match = _ENDPOINT.match(self.endpoint)
        return f"{match.group(1)}@{match.group(2)}" if match else (FLEET if self.endpoint.startswith(FLEET) else "")

    @property
    def key(self) -> tuple[str, str]:
        return self.classname, self.name


@dataclass(frozen=True)
class Run:
    """What a run recorded: its cases, and its own facts (target, profile, policy, version, date, duration)."""

    source: str
    cases: tuple[CaseResult, ...]
    facts: dict[str, str] = field(default_factory=dict)

    def fact(self, name: str, default: str = "unknown") -> str:
        return self.facts.get(name) or default

    @property
    def when(self) -> str:
        """When the run started, to the second, in UTC."""
        try:
            started = datetime.fromisoformat(self.facts.get("timestamp", ""))
        except ValueError:
            return self.fact("timestamp")
        started = started.astimezone(UTC) if started.tzinfo else started
        return started.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if started.tzinfo else "")

    @property
    def duration(self) -> str:
        try:
            return f"{float(self.facts.get('duration', '')):.1f} s"
        except ValueError:
            return "unknown"


def read_run(path: str | Path) -> Run:
    """A JUnit XML file as a Run; ReportError when it is unreadable, not XML or not JUnit."""
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise ReportError(f"{path}: {exc.strerror or exc}") from None
    except ET.ParseError as exc:
        line, column = exc.position
        raise ReportError(f"{path}:{line}: not XML: {ErrorString(exc.code)} at column {column + 1}") from None
    if root.tag not in JUNIT_ROOTS:
        raise ReportError(f"{path}: not a JUnit XML file: the root element is <{root.tag}>, "
                          f"not <testsuites> or <testsuite>")
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    facts: dict[str, str] = {}
    if suite is not None:
        facts = {"timestamp": suite.get("timestamp", ""), "duration": suite.get("time", "")}
        properties = suite.find("properties")
        for prop in properties if properties is not None else ():
            name = prop.get("name", "")
            if name.startswith(RUN_PREFIX):
                facts[name.removeprefix(RUN_PREFIX)] = prop.get("value", "")
    return Run(str(path), tuple(_case(case) for case in root.iter("testcase")), facts)


def read_junit(path: str | Path) -> list[CaseResult]:
    """The test cases of a JUnit XML file; ReportError when it is unreadable, not XML or not JUnit."""
    return list(read_run(path).cases)


def _case(case: ET.Element) -> CaseResult:
    own = case.find("properties")
    pairs = tuple((p.get("name", ""), p.get("value", "")) for p in (own if own is not None else ()))
    props = dict(pairs)
    verdict = props.get("verdict") or _verdict_from_elements(case)
    message = _first_message(case)
    return CaseResult(
        name=case.get("name", ""),
        verdict=verdict,
        requirement=props.get("requirement", "-"),
        level=props.get("level", "-"),
        family=props.get("family", "other"),
        endpoint=props.get("endpoint", ""),
        reason=" ".join((props.get("reason") or message).split()),
        classname=case.get("classname", ""),
        properties=pairs,
        message=message,
    )


def _verdict_from_elements(case: ET.Element) -> str:
    if case.find("failure") is not None or case.find("error") is not None:
        return "fail"
    if case.find("skipped") is not None:
        return "skipped"
    return "pass"


def _first_message(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        element = case.find(tag)
        if element is not None:
            return element.get("message", "")
    return ""
