"""Run one probe against many endpoints concurrently, once, with an overall deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint

R = TypeVar("R")
Probe = Callable[[Endpoint], Awaitable[Attempt[R]]]


def run_concurrently(endpoints: Iterable[Endpoint], probe: Probe[R], deadline: float) -> dict[str, Attempt[R]]:
    """Every endpoint's attempt, keyed by endpoint ID. An endpoint whose probe overruns the deadline
    gets an inconclusive attempt instead of stalling the whole run."""
    endpoints = list(endpoints)

    async def one(endpoint: Endpoint) -> Attempt[R]:
        try:
            return await asyncio.wait_for(probe(endpoint), deadline)
        except TimeoutError:
            return Attempt(endpoint.id, Outcome.INCONCLUSIVE, None, f"probe did not finish within {deadline:.0f} s")

    async def all_of() -> list[Attempt[R]]:
        return await asyncio.gather(*(one(e) for e in endpoints))

    return {e.id: a for e, a in zip(endpoints, asyncio.run(all_of()))}
