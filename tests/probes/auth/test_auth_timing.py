"""The ENUM-TIMING-01 judgement (probes.auth.timing) and the adaptive, side-by-side sampling of the
enumeration probe: false alarms on a noisy fair server, a 5 ms oracle caught, slow failures sampled at once.

The simulations run the probe's own procedure (BATCH pairs per look, up to MAX_LOOKS) on the loaded model;
the rates quoted in the check's docstring are ``rate(...)`` with more trials (20000 fair, 5000 oracle)."""

from __future__ import annotations

import random
import ssl
from pathlib import Path

import pytest
from hostile import run
from smtp_servers import PASSWORD, USER, timing_oracle_server

from conformance.probes.auth.enumeration import EnumerationResult, probe_login_enumeration
from conformance.probes.auth.timing import BATCH, MAX_LOOKS, TimingVerdict
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome

pytestmark = pytest.mark.unit


def loaded(rng: random.Random, base: float) -> float:
    """One login time on a loaded 2-core machine: 4 ms exponential jitter, and in 20 % of the logins a
    scheduling spike of 20-300 ms (the model of test_auth_enumeration.py)."""
    spike = rng.choice([0.0] * 8 + [rng.uniform(0.02, 0.3)] * 2)
    return base + rng.expovariate(1 / 0.004) + spike


def adaptive(rng: random.Random, known_base: float, unknown_base: float) -> TimingVerdict:
    """What the probe does: BATCH more pairs per look until the verdict is settled or MAX_LOOKS looks."""
    known: list[float] = []
    unknown: list[float] = []
    for _ in range(MAX_LOOKS):
        known += [loaded(rng, known_base) for _ in range(BATCH)]
        unknown += [loaded(rng, unknown_base) for _ in range(BATCH)]
        verdict = TimingVerdict.of(known, unknown)
        assert verdict is not None
        if verdict.settled:
            break
    return verdict


def rate(seed: int, trials: int, known_base: float, unknown_base: float) -> float:
    rng = random.Random(seed)
    return sum(adaptive(rng, known_base, unknown_base).leaks for _ in range(trials)) / trials


def test_false_alarm_rate_on_a_noisy_fair_server() -> None:
    assert rate(1596, 2000, 0.01, 0.01) <= 0.005


def test_detection_rate_of_a_5_ms_oracle_under_load() -> None:
    assert rate(3207, 500, 0.005, 0.0005) >= 0.8


def test_150_ms_always_caught_under_load() -> None:
    assert rate(4954, 200, 0.16, 0.01) >= 0.99


def enumerate_logins(context: ssl.SSLContext, anchor: Path, known_delay: float, unknown_delay: float,
                     **kwargs: int) -> Attempt[EnumerationResult]:
    async def main() -> Attempt[EnumerationResult]:
        async with timing_oracle_server(context, known_delay=known_delay, unknown_delay=unknown_delay) as endpoint:
            cfg = ProbeConfig(timeout=5, trust_anchors=(anchor,), use_system_store=False, secrets=(PASSWORD,))
            return await probe_login_enumeration(endpoint, cfg, known_user=USER, unknown_user="nobody@example.test",
                                                 wrong_password="wrong-pw", **kwargs)
    return run(main())


def test_a_5_ms_oracle_on_loopback_is_caught(context: ssl.SSLContext, anchor: Path) -> None:
    result = enumerate_logins(context, anchor, 0.005, 0.0005)
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None
    verdict = result.result.timing()
    assert verdict is not None and verdict.leaks, verdict
    assert verdict.gap > 0.001 and result.result.side_by_side == 1


def test_slow_failures_are_sampled_side_by_side(context: ssl.SSLContext, anchor: Path) -> None:
    """Every failure held 0.6 s alike (Dovecot holds 2 s, others 3 s): sessions run four at a time."""
    result = enumerate_logins(context, anchor, 0.6, 0.6, pairs=8, looks=1)
    assert result.outcome is Outcome.COMPLETED, result.reason
    enum = result.result
    assert enum is not None and enum.side_by_side == 4 and len(enum.samples) == 16
    verdict = enum.timing()
    assert verdict is not None and not verdict.leaks
