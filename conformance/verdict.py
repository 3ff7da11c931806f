"""Verdicts and the evidence a check collects. No pytest in here: probes and the CLI use it too."""

from __future__ import annotations

from collections import Counter
from enum import StrEnum


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    SKIPPED = "skipped"  # not run: opt-in missing, nothing to test, profile leaves it out
    WAIVED = "waived"    # failed or inconclusive, under a waiver in force: reported, never failing the run


class Inconclusive(Exception):
    """Raised by a check when fitness could not be proven either way (timeout, 421, rate limit, refused
    connection). The message carries the server's own reply; the plugin turns it into an
    'inconclusive' verdict, never into a pass."""


# The exit code of a run that reached no endpoint (or judged no check), whatever --mail-fail-on says: a typo
# in a CI job's target file must not go green. pytest's own codes are 0-5.
NOTHING_REACHED = 6

FLEET = "fleet"  # the endpoint property of a check that judges the whole fleet, not one endpoint


class FailOn(StrEnum):
    """Exit-code policy: which verdicts make `mailconform run` / pytest exit non-zero."""

    MUST = "must"                # a failed MUST
    MUST_PROVEN = "must-proven"  # a failed or inconclusive MUST (default in sensitive-data, bsi)
    SHOULD = "should"            # any failed MUST or SHOULD, and an inconclusive MUST
    NEVER = "never"              # report only


def default_fail_on(profile: str) -> FailOn:
    return FailOn.MUST_PROVEN if profile in ("sensitive-data", "bsi") else FailOn.MUST


def fails_run(policy: FailOn, verdict: Verdict, level: str) -> bool:
    if policy is FailOn.NEVER:
        return False
    if verdict is Verdict.FAIL:
        return level == "MUST" or policy is FailOn.SHOULD
    if verdict is Verdict.INCONCLUSIVE:
        return level == "MUST" and policy in (FailOn.MUST_PROVEN, FailOn.SHOULD)
    return False


def nothing_reached(seen: Counter[tuple[Verdict, bool]]) -> bool:
    """Checks ran, and none could judge an endpoint (or none could judge at all). ``seen`` counts checks by
    (verdict, whether the check judged one endpoint rather than the fleet); a waived check by its own verdict."""
    def count(verdicts: tuple[Verdict, ...], one_endpoint: tuple[bool, ...] = (True, False)) -> int:
        return sum(seen[v, e] for v in verdicts for e in one_endpoint)

    judged = (Verdict.PASS, Verdict.FAIL)
    return bool(count((Verdict.INCONCLUSIVE,), (True,)) and not count(judged, (True,))
                or count((Verdict.INCONCLUSIVE,)) and not count(judged))
