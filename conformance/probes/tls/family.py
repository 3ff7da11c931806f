"""Everything the TLS family probes on a run's endpoints, in one event loop: the raw scan of every address
(``tls.scan``) and the certificate handshakes (the server's default choice, one without SNI, one restricted
to each key type), concurrently, within the run's per-host connection budget.

One loop, not one per fixture: the certificate handshakes fill connection slots the scan's dependent
rounds leave free, instead of queueing behind the whole scan.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from conformance.probes.tls.handshake import HandshakeResult, probe_handshake
from conformance.probes.tls.renegotiation import Renegotiation, probe_renegotiation
from conformance.probes.tls.scan import ScanConfig, TlsScan, scan_all
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.probes.wire.upgrade import probe_context
from conformance.target import Endpoint

T = TypeVar("T")

# TLS 1.2 cipher strings that make a server present its RSA or its ECDSA certificate.
_KEY_TYPE_CIPHERS = {"RSA": "aRSA", "ECDSA": "aECDSA"}


@dataclass(frozen=True)
class Certificates:
    """Every handshake that returned a certificate: the default one first, then per key type."""

    default: Attempt[HandshakeResult]
    by_key_type: dict[str, HandshakeResult]
    without_sni: Attempt[HandshakeResult] | None = None  # the default handshake with no server_name
    handshakes: int = 0  # handshakes tried, one connection each (none to an endpoint already known down)

    def distinct(self) -> list[HandshakeResult]:
        """Each certificate once (the default handshake's first), so a second key type is judged too."""
        seen: set[bytes] = set()
        found: list[HandshakeResult] = []
        first = [self.default.result] if self.default.result is not None else []
        for result in [*first, *self.by_key_type.values()]:
            leaf = result.peer_chain_der[0] if result.peer_chain_der else b""
            if leaf not in seen:
                seen.add(leaf)
                found.append(result)
        return found


@dataclass(frozen=True)
class TlsFamily:
    """What ``probe_family`` gathered; a part not asked for is empty."""

    scans: dict[str, Attempt[TlsScan]] = field(default_factory=dict)
    certificates: dict[str, Certificates] = field(default_factory=dict)
    renegotiations: dict[str, Attempt[Renegotiation]] = field(default_factory=dict)


async def certificates_of(endpoint: Endpoint, cfg: ProbeConfig) -> Certificates:
    """Full handshakes with one endpoint: the server's default choice, without SNI, and per key type."""
    deadline = cfg.session_budget + cfg.timeout
    default, without_sni, *typed = await asyncio.gather(
        _bounded(probe_handshake(endpoint, cfg), endpoint, deadline),
        _bounded(probe_handshake(endpoint, cfg, sni=False), endpoint, deadline),
        *(_bounded(probe_handshake(endpoint, cfg, context=_context_for(ciphers)), endpoint, deadline)
          for ciphers in _KEY_TYPE_CIPHERS.values()))
    by_type = {key_type: a.result for key_type, a in zip(_KEY_TYPE_CIPHERS, typed)
               if a.outcome is Outcome.COMPLETED and a.result is not None}
    return Certificates(default, by_type, without_sni, handshakes=2 + len(typed))


async def probe_family(endpoints: Iterable[Endpoint], scan_cfg: ScanConfig, cfg: ProbeConfig, *,
                       scans: bool = True, certificates: bool = True, renegotiations: bool = True) -> TlsFamily:
    """The raw scans (``scans``), the certificate handshakes (``certificates``) and the client-initiated
    renegotiation attempts (``renegotiations``) of every endpoint at once, sharing ``cfg.limiter``'s
    per-host budget."""
    listed = list(endpoints)
    deadline = cfg.session_budget + cfg.timeout
    scan_job: Awaitable[dict[str, Attempt[TlsScan]]] = (
        scan_all(listed, scan_cfg, limiter=cfg.limiter, secrets=cfg.secrets) if scans else _nothing())
    found_scans, found_certificates, found_renegotiations = await asyncio.gather(
        scan_job, asyncio.gather(*(certificates_of(e, cfg) for e in (listed if certificates else []))),
        asyncio.gather(*(_bounded(probe_renegotiation(e, cfg), e, deadline)
                         for e in (listed if renegotiations else []))))
    ids = [e.id for e in listed]
    return TlsFamily(found_scans, dict(zip(ids, found_certificates)), dict(zip(ids, found_renegotiations)))


async def _nothing() -> dict[str, Attempt[TlsScan]]:
    return {}


async def _bounded(coro: Awaitable[Attempt[T]], endpoint: Endpoint, deadline: float) -> Attempt[T]:
    try:
        return await asyncio.wait_for(coro, deadline)
    except TimeoutError:
        return Attempt(endpoint.id, Outcome.INCONCLUSIVE, None, f"handshake did not finish within {deadline:.0f} s")


def _context_for(ciphers: str) -> ssl.SSLContext:
    """TLS 1.2 only: in TLS 1.3 the suite does not choose the certificate's key type."""
    context = probe_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    return context
