"""Enumeration: VRFY/EXPN confirm nobody, logins answer unknown users and wrong passwords alike in
words and in time, and one MX session cannot harvest recipients without limit."""

from __future__ import annotations

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.auth import require_session
from conformance.probes.auth.enumeration import (
    EnumerationResult,
    RcptLimitResult,
    VrfyResult,
)
from conformance.probes.wire.outcome import Attempt
from conformance.target import Endpoint
from conformance.verdict import Inconclusive

_LOGIN_SERVICES = ("submission", "submissions", "imap", "imaps")


@pytest.mark.requirement("ENUM-VRFY-01")
@pytest.mark.service("mx", "submission", "submissions")
def test_vrfy_expn_confirm_nobody(endpoint: Endpoint, vrfy_results: dict[str, Attempt[VrfyResult]],
                                  evidence: Evidence) -> None:
    """RFC 5321 7.3: VRFY/EXPN disabled or 252; the same answer for a known and an unknown user."""
    result = require_session(evidence, vrfy_results[endpoint.id])
    evidence.add("vrfy_known", f"VRFY {result.known} -> {result.vrfy_known}")
    evidence.add("vrfy_unknown", f"VRFY {result.unknown} -> {result.vrfy_unknown}")
    evidence.add("expn_known", f"EXPN {result.known} -> {result.expn_known}")
    assert not result.vrfy_confirms, (
        f"{endpoint}: VRFY confirms that <{result.known}> exists ('{result.vrfy_known}'): anyone can enumerate "
        f"users. Disable VRFY or answer 252 (RFC 5321 7.3; Postfix: disable_vrfy_command = yes)")
    assert not result.vrfy_tells_apart, (
        f"{endpoint}: VRFY answers a known user '{result.vrfy_known}' and an unknown one "
        f"'{result.vrfy_unknown}': the difference reveals who exists. Answer both alike (252)")
    assert not result.expn_expands, (
        f"{endpoint}: EXPN expands <{result.known}> ('{result.expn_known}'); disable EXPN (RFC 5321 7.3)")


def _enumeration(endpoint: Endpoint, login_enumeration: dict[str, Attempt[EnumerationResult]],
                 evidence: Evidence) -> EnumerationResult:
    result = require_session(evidence, login_enumeration[endpoint.id])
    if result.preauth:
        pytest.skip(f"{endpoint}: greets with PREAUTH, so there is no login to compare (see STARTTLS-PREAUTH-01)")
    if result.known_accepted:
        pytest.skip(f"{endpoint}: the known user's WRONG password was accepted; see AUTH-WRONG-01")
    evidence.add("mechanism", result.mechanism)
    evidence.add("users", f"known {result.known_user}, unknown {result.unknown_user}")
    return result


@pytest.mark.requirement("ENUM-AUTH-01")
@pytest.mark.service(*_LOGIN_SERVICES)
def test_login_answers_alike(endpoint: Endpoint, login_enumeration: dict[str, Attempt[EnumerationResult]],
                             evidence: Evidence) -> None:
    """A failed login says the same whether the user exists or not (code and words)."""
    result = _enumeration(endpoint, login_enumeration, evidence)
    known, unknown = result.answers(True), result.answers(False)
    evidence.add("answers_known_user", [f"{c} {t}" for c, t in known])
    evidence.add("answers_unknown_user", [f"{c} {t}" for c, t in unknown])
    if (not known or not unknown) and result.throttled:
        pytest.skip(f"{endpoint}: sampling stopped at a temporary answer ('{result.throttled}'): the known "
                    "account is locked or throttled (a server counting every repeat of one wrong password: "
                    "see LOCK-STALE-01); nothing left to compare")
    if not known or not unknown:
        raise Inconclusive(f"{endpoint}: no plain rejection to compare (throttled or locked?): "
                           + "; ".join(sorted({s.reply for s in result.samples})))
    assert known == unknown, (
        f"{endpoint}: a wrong password for a known user is answered "
        f"{' | '.join(sorted(f'{c} {t}' for c, t in known))!r}, an unknown user "
        f"{' | '.join(sorted(f'{c} {t}' for c, t in unknown))!r}: the difference tells an attacker which "
        f"users exist. Answer both with the same code and text (RFC 4954 6: 535 5.7.8)")


@pytest.mark.requirement("ENUM-TIMING-01")
@pytest.mark.service(*_LOGIN_SERVICES)
def test_login_timing_alike(endpoint: Endpoint, login_enumeration: dict[str, Attempt[EnumerationResult]],
                            evidence: Evidence) -> None:
    """Failed logins of a known and an unknown user take the same time.

    Test: 15 interleaved pairs (one session per pair, alternating order; probes.enumeration.PAIRS),
    timing only the reply to the login command, not TCP/TLS setup. Fail when the medians differ by at
    least 50 ms (TIMING_THRESHOLD) AND a two-sided Mann-Whitney U test gives p < 0.05 (ALPHA).
    False-alarm rate when both take the same time: <= 0.2 % per endpoint, simulated on a loaded 2-core
    profile (jitter plus 20 % load spikes of 20-300 ms); the 50 ms floor carries it, since 8 of 15
    samples of one group would need spikes their interleaved partners escaped, and it also ignores
    differences too small to exploit over a network. Power: a 150 ms difference is caught in >= 98 %
    of runs under that load, always with plain jitter (U = 0 or 225, p ~ 3e-6)."""
    result = _enumeration(endpoint, login_enumeration, evidence)
    verdict = result.timing()
    if verdict is None and result.throttled:
        pytest.skip(f"{endpoint}: sampling stopped at a temporary answer ('{result.throttled}') before "
                    "enough samples: the known account is locked or throttled (see LOCK-STALE-01)")
    if verdict is None:
        raise Inconclusive(f"{endpoint}: too few plain rejections to time (throttled or locked?)")
    evidence.add("median_known_ms", f"{verdict.known_median * 1000:.1f}")
    evidence.add("median_unknown_ms", f"{verdict.unknown_median * 1000:.1f}")
    evidence.add("mann_whitney", f"U={verdict.u:.0f} p={verdict.p_value:.2g} n={verdict.n_known}/{verdict.n_unknown}")
    assert not verdict.leaks, (
        f"{endpoint}: a failed login takes {verdict.known_median * 1000:.0f} ms for a known user and "
        f"{verdict.unknown_median * 1000:.0f} ms for an unknown one (median of {verdict.n_known}/"
        f"{verdict.n_unknown} interleaved samples, Mann-Whitney p={verdict.p_value:.1g}): the time tells "
        f"an attacker which users exist. Do the same work (hash a dummy password) for unknown users")


@pytest.mark.requirement("ENUM-RCPT-01")
@pytest.mark.service("mx")
def test_rcpt_harvesting_limited(endpoint: Endpoint, rcpt_limits: dict[str, Attempt[RcptLimitResult]],
                                 evidence: Evidence) -> None:
    """One session answers at most a bounded number of unknown recipients (we try RCPT_LIMIT = 30)."""
    result = require_session(evidence, rcpt_limits[endpoint.id])
    evidence.add("rcpt_tried", result.tried)
    evidence.add("last_replies", " | ".join(result.answered[-3:]))
    if result.accepts_unknown:
        evidence.add("note", "unknown recipients are accepted at RCPT: nothing to harvest there")
        return
    if result.cut_off_after is not None:
        evidence.add("cut_off_after", result.cut_off_after)
    if result.slowed_after is not None:
        evidence.add("slowed_after", result.slowed_after)
    assert result.limited, (
        f"{endpoint}: one session got answers for {result.tried} unknown recipients (last: "
        f"'{result.answered[-1]}') without being cut off or slowed down: directory harvesting is unlimited. "
        f"Limit unknown recipients per session (Postfix: smtpd_hard_error_limit, smtpd_junk_command_limit)")
