"""The suite's own verdicts on one scanned endpoint, for side-by-side comparison with a peer scanner
(sslyze, testssl.sh): each check is found by its requirement marker and called on the scan, as the
plugin would call it, so a comparison follows the check's logic rather than a copy of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tls_servers import Served, tlslite_server

import conformance.checks
from conformance.evidence import Evidence
from conformance.probes.tls.renegotiation import probe_renegotiation
from conformance.probes.tls.scan import ScanSettings, TlsScan, scan_endpoint
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt
from conformance.requirements import CATALOGUE
from conformance.target import Endpoint
from conformance.verdict import Inconclusive
from tests.test_checks_tls_posture import PreRfc7507Connection
from tests.test_checks_tls_vulns import PaddingOracleConnection

# every TLS check module, so a check added in a new one (TLS-RENEG-02, say) is found without an edit here
CHECK_MODULES = tuple(importlib.import_module(f"conformance.checks.{m.name}")
                      for m in pkgutil.iter_modules(conformance.checks.__path__) if m.name.startswith("test_tls"))


def scan(endpoint: Endpoint) -> Attempt[TlsScan]:
    return asyncio.run(scan_endpoint(endpoint, ScanSettings(timeout=10, max_connections_per_host=5)))


def check_for(requirement: str) -> Callable[..., None] | None:
    """The TLS check carrying ``requirement``'s marker; None while the catalogue has no such requirement
    (a peer finding whose check another branch adds is compared from the day it is merged)."""
    if requirement not in CATALOGUE:
        return None
    for module in CHECK_MODULES:
        for _, function in inspect.getmembers(module, inspect.isfunction):
            marks = getattr(function, "pytestmark", [])
            if any(m.name == "requirement" and m.args[:1] == (requirement,) for m in marks):
                return function  # type: ignore[no-any-return]
    raise LookupError(f"{requirement} is in the catalogue but no check in {[m.__name__ for m in CHECK_MODULES]} "
                      "carries it: feed its fixtures to tests/tls_peers.suite_verdict")


def suite_verdict(requirement: str, endpoint: Endpoint, attempt: Attempt[TlsScan]) -> str | None:
    """pass / fail / skip / inconclusive of ``requirement``'s check on this scan; None if not catalogued."""
    check = check_for(requirement)
    if check is None:
        return None
    given: dict[str, Any] = {"endpoint": endpoint, "tls_scans": {endpoint.id: attempt}, "evidence": Evidence()}
    if "renegotiations" in inspect.signature(check).parameters:  # TLS-RENEG-02 asks on a connection of its own
        asked = asyncio.run(probe_renegotiation(endpoint, ProbeConfig(timeout=10)))
        given["renegotiations"] = {endpoint.id: asked}
    missing = set(inspect.signature(check).parameters) - set(given)
    assert not missing, f"{check.__name__} needs {sorted(missing)}, which a scan alone does not give"
    try:
        check(**given)
    except AssertionError:
        return "fail"
    except Inconclusive:
        return "inconclusive"
    except pytest.skip.Exception:
        return "skip"
    except pytest.fail.Exception:
        return "fail"
    return "pass"


def agrees(ours: str | None, theirs: str) -> bool:
    """A skip is the suite finding nothing in scope (e.g. no TLS 1.0-1.2 for Heartbleed): a peer's
    "not vulnerable"."""
    return ours == theirs or (ours == "skip" and theirs == "pass")


class PreRfc7507PaddingOracle(PaddingOracleConnection, PreRfc7507Connection):
    """tlslite-ng with a Bleichenbacher oracle that ignores TLS_FALLBACK_SCSV: two findings in one server."""


@contextlib.contextmanager
def tlslite_oracle() -> Iterator[Served]:
    """The vulnerable peer endpoint: SMTP STARTTLS, TLS 1.1 and 1.2, RSA and ECDHE key exchange."""
    with tlslite_server(min_version=(3, 2), max_version=(3, 3), cipher_names=("aes128gcm", "aes128"),
                        key_exchange_names=("rsa", "ecdhe_rsa"), smtp=True,
                        connection=PreRfc7507PaddingOracle) as served:
        yield served
