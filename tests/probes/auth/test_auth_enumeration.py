"""Enumeration probes: the timing statistic (false alarms and power under simulated load), VRFY,
login answers against aiosmtpd, and the RCPT harvesting limit against scripted servers."""

from __future__ import annotations

import asyncio
import random
import ssl
from pathlib import Path

import pytest
from hostile import run, serving
from smtp_servers import PASSWORD, USER, aiosmtpd_server

from conformance.probes.auth.enumeration import (
    PAIRS,
    EnumerationResult,
    LoginSample,
    RcptLimitResult,
    VrfyResult,
    probe_login_enumeration,
    probe_rcpt_limit,
    probe_vrfy,
)
from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.auth.timing import mann_whitney
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Service

pytestmark = pytest.mark.unit


def test_mann_whitney_extremes() -> None:
    u, p = mann_whitney([float(i) for i in range(10, 25)], [float(i) for i in range(15)])
    assert u == 225 - 5 * 5 - 10 * 0 or u > 200
    assert p < 1e-4
    u, p = mann_whitney([1.0] * 15, [1.0] * 15)
    assert p == 1.0 or p > 0.5


def _result(known: list[float], unknown: list[float]) -> EnumerationResult:
    samples = [LoginSample(True, LoginOutcome.REJECTED, "535 5.7.8", "x", "535 x", t) for t in known]
    samples += [LoginSample(False, LoginOutcome.REJECTED, "535 5.7.8", "x", "535 x", t) for t in unknown]
    return EnumerationResult("PLAIN", "k", "u", tuple(samples), False)


def _loaded(rng: random.Random, base: float) -> float:
    """One login time on a loaded 2-core machine: jitter, and now and then a scheduling spike."""
    spike = rng.choice([0.0] * 8 + [rng.uniform(0.02, 0.3)] * 2)
    return base + rng.expovariate(1 / 0.004) + spike


def test_timing_false_alarm_rate_under_load() -> None:
    rng = random.Random(1596)
    trials = 1000
    alarms = sum(_result([_loaded(rng, 0.01) for _ in range(PAIRS)],
                         [_loaded(rng, 0.01) for _ in range(PAIRS)]).timing().leaks  # type: ignore[union-attr]
                 for _ in range(trials))
    assert alarms / trials <= 0.005, alarms


def test_a_difference_below_the_floor_is_not_a_leak() -> None:
    """0.4 ms, perfectly separated: real, but nothing a network attacker can use (FLOOR = 1 ms)."""
    verdict = _result([0.0024 + i * 1e-5 for i in range(PAIRS)], [0.002 + i * 1e-5 for i in range(PAIRS)]).timing()
    assert verdict is not None and verdict.p_value < 0.001 and not verdict.leaks


def test_a_few_milliseconds_perfectly_separated_is_a_leak() -> None:
    """The real MTA of issue 13: 5-8 ms for a known user, 0.4-1 ms for an unknown one."""
    verdict = _result([0.005 + i * 2e-4 for i in range(PAIRS)], [0.0004 + i * 4e-5 for i in range(PAIRS)]).timing()
    assert verdict is not None and verdict.leaks and verdict.gap > 0.003


def test_throttled_samples_are_left_out() -> None:
    samples = tuple(LoginSample(True, LoginOutcome.TEMPORARY, "454 4.7.0", "t", "454 t", 0.01) for _ in range(PAIRS))
    result = EnumerationResult("PLAIN", "k", "u", samples, False)
    assert result.timing() is None and result.answers(True) == frozenset()


def test_login_enumeration_against_aiosmtpd(context: ssl.SSLContext, anchor: Path) -> None:
    async def main() -> Attempt[EnumerationResult]:
        async with aiosmtpd_server(context) as endpoint:
            cfg = ProbeConfig(timeout=5, trust_anchors=(anchor,), use_system_store=False, secrets=(PASSWORD,))
            return await probe_login_enumeration(endpoint, cfg, known_user=USER, unknown_user="nobody@example.test",
                                                 wrong_password="wrong-pw", pairs=6)
    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    enum = result.result
    assert enum is not None and len(enum.samples) == 12 and not enum.known_accepted
    assert enum.answers(True) == enum.answers(False) == {("535 5.7.8", "Authentication credentials invalid")}
    # later sessions are summarised, so the evidence stays readable
    assert sum(1 for line in result.transcript if "AUTH PLAIN" in line) == 2


def test_vrfy_aiosmtpd_is_non_committal(context: ssl.SSLContext) -> None:
    async def main() -> Attempt[VrfyResult]:
        async with aiosmtpd_server(context, service=Service.MX) as endpoint:
            return await probe_vrfy(endpoint, ProbeConfig(timeout=5, use_system_store=False),
                                    known=USER, unknown="nobody@example.test")
    result = run(main())
    assert result.result is not None, result.reason
    assert result.result.vrfy_known_code == 252 and not result.result.vrfy_tells_apart
    assert not result.result.vrfy_confirms and not result.result.expn_expands


def rcpt_server(*, cut_after: int | None = None, accept_all: bool = False):  # type: ignore[no-untyped-def]
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted\r\n")
        unknown = 0
        while line := await asyncio.wait_for(reader.readline(), 10):
            verb = line.strip().upper()
            if verb.startswith(b"RCPT"):
                unknown += 1
                if cut_after is not None and unknown > cut_after:
                    writer.write(b"421 4.7.0 too many unknown recipients\r\n")
                    await writer.drain()
                    return
                writer.write(b"250 ok\r\n" if accept_all else b"550 5.1.1 no such user\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
    return behaviour


def rcpt_limit(behaviour) -> Attempt[RcptLimitResult]:  # type: ignore[no-untyped-def]
    async def main() -> Attempt[RcptLimitResult]:
        async with serving(behaviour, Service.MX) as endpoint:
            return await probe_rcpt_limit(endpoint, ProbeConfig(timeout=5, use_system_store=False),
                                          domain="example.test", limit=12)
    return run(main())


def test_rcpt_cut_off_is_reported() -> None:
    result = rcpt_limit(rcpt_server(cut_after=5))
    assert result.result is not None, result.reason
    assert result.result.cut_off_after == 5 and result.result.limited


def test_rcpt_unlimited_is_reported() -> None:
    result = rcpt_limit(rcpt_server())
    assert result.result is not None and result.result.tried == 12 and not result.result.limited
    assert not any("DATA" in line for line in result.transcript)


def test_rcpt_accept_all_has_nothing_to_harvest() -> None:
    result = rcpt_limit(rcpt_server(accept_all=True))
    assert result.result is not None and result.result.accepts_unknown and result.result.tried == 1
