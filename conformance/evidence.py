"""Evidence one check collects: compact key/values and the transcripts of the probes it used.

The plugin gives each test its own ``Evidence`` (the ``evidence`` fixture) and writes it into the
JUnit ``<properties>`` of that test case as plain strings, so pytest-xdist can carry it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.verdict import Inconclusive

R = TypeVar("R")


@dataclass
class Evidence:
    items: dict[str, str] = field(default_factory=dict)
    transcripts: list[str] = field(default_factory=list)

    def add(self, key: str, value: object) -> None:
        if isinstance(value, (set, frozenset, list, tuple)):
            value = ", ".join(sorted(str(v) for v in value)) or "none"
        self.items[key] = str(value)

    def attach(self, attempt: Attempt[object]) -> None:
        """Keep the attempt's dialogue; one that never got to talk (refused, or a dead endpoint this run
        already knows) says so, so an inconclusive case always shows what was tried and what came back."""
        lines = attempt.transcript or ((f"-- no exchange: {attempt.reason}",) if attempt.reason else ())
        if lines:
            self.transcripts.append(f"[{attempt.endpoint}]\n" + "\n".join(lines))

    def require(self, attempt: Attempt[R]) -> R:
        """The attempt's result, its transcript kept as evidence. A probe that could not connect,
        timed out or met a 421 makes the check inconclusive with the server's own reason.
        A server that broke the protocol is a failure."""
        self.attach(attempt)  # type: ignore[arg-type]
        if attempt.outcome is Outcome.COMPLETED:
            assert attempt.result is not None
            return attempt.result
        if attempt.outcome is Outcome.SERVER_ERROR:
            raise AssertionError(f"{attempt.endpoint}: server misbehaved: {attempt.reason}")
        raise Inconclusive(f"{attempt.endpoint}: {attempt.reason}")
