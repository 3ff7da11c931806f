"""Fixtures of the real-server tier: Postfix and Dovecot from Debian's packages, one private instance per
configuration, started once per session on first use and stopped at the end of the session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from conformance.target import load_target
from tests.real.servers import CONFIGS, MailServers, RealTarget, ServerError, unavailable_reason


@pytest.fixture(scope="session")
def real_target() -> Iterator[Callable[[str], RealTarget]]:
    """Factory: ``real_target("weak-tls")`` starts that configuration on first use (then reuses it) and
    returns its ``RealTarget``. Every configuration started is stopped when the session ends."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    started: dict[str, RealTarget] = {}

    def get(name: str) -> RealTarget:
        if name not in CONFIGS:
            raise ValueError(f"unknown real-server configuration {name!r} (known: {', '.join(CONFIGS)})")
        if name not in started:
            servers = MailServers(CONFIGS[name], auth_throttle=False)  # see MailServers: a rig setting
            servers.start()
            path = servers.write_target()
            started[name] = RealTarget(name, servers, path, load_target(path))
        return started[name]

    yield get
    # Stop side by side: each stop waits seconds for its masters to exit, the waits need not add up.
    with ThreadPoolExecutor(max_workers=max(1, len(started))) as pool:
        outcomes = list(pool.map(_stop, started.values()))
    errors = [error for error in outcomes if error]
    if errors:
        raise RuntimeError("stopping real servers failed: " + "; ".join(errors))


def _stop(running: RealTarget) -> str | None:
    try:
        running.servers.stop()
    except (ServerError, OSError) as exc:  # the others are stopped anyway, then this is reported
        return f"{running.name}: {exc}"
    return None


@pytest.fixture(scope="session")
def good_target(real_target: Callable[[str], RealTarget]) -> RealTarget:
    """The good configuration (the one every MUST passes against)."""
    return real_target("good")
