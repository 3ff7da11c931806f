"""The handshake probe: connect, STARTTLS if the service needs it, complete a handshake, judge the chain.

The handshake never verifies (CERT_NONE): it captures the chain, and ``tls.certs.analyze_chain`` judges
it, so a server whose certificate is bad still shows which protocol and cipher it negotiated, and
"TLS unavailable" stays a different finding from "certificate does not verify".
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from conformance.probes.starttls.opening import open_to_tls_point
from conformance.probes.tls.certs import CertReport, ChainError, analyze_chain
from conformance.probes.wire.config import ProbeConfig, scrubbed
from conformance.probes.wire.outcome import Attempt, attempt
from conformance.probes.wire.streams import Deadline, close
from conformance.probes.wire.upgrade import TlsInfo, shared_probe_context, upgrade
from conformance.target import Endpoint


@dataclass(frozen=True)
class HandshakeResult:
    version: str
    cipher: str
    peer_chain_der: tuple[bytes, ...]
    verified: bool                 # chains to a trust anchor AND the endpoint's host name matches
    verify_error: str | None
    ocsp_stapled: bool | None      # None: the stdlib client cannot see a stapled OCSP response
    cert: CertReport | None = None


def judge(info: TlsInfo, endpoint: Endpoint, cfg: ProbeConfig) -> HandshakeResult:
    """Attach the certificate verdict for the endpoint's host name to a completed handshake."""
    try:
        report = analyze_chain(info.peer_chain_der, hostnames=[endpoint.host],
                               trust_anchor_paths=cfg.trust_anchors, use_system_store=cfg.use_system_store)
    except ChainError as exc:
        return HandshakeResult(info.version, info.cipher, info.peer_chain_der, False, str(exc), None, None)
    problems = [] if report.chains_to_trust else [report.trust_reason]
    problems += [n.reason for n in report.names if not n.matched]
    problems += ["certificate expired"] if report.expired else []
    return HandshakeResult(info.version, info.cipher, info.peer_chain_der, not problems,
                           "; ".join(problems) or None, None, report)


async def probe_handshake(endpoint: Endpoint, cfg: ProbeConfig, *, context: ssl.SSLContext | None = None,
                          sni: bool = True) -> Attempt[HandshakeResult]:
    """Connect, STARTTLS if the service needs it, complete a handshake, judge the certificate (always for
    the endpoint's host name; ``sni=False`` leaves server_name out of the hello, as many MTAs do)."""
    transcript = cfg.transcript(endpoint)

    async def run() -> HandshakeResult:
        deadline = Deadline(cfg.session_budget)
        reader, writer = await open_to_tls_point(endpoint, timeout=cfg.timeout, ehlo_name=cfg.ehlo_name,
                                            transcript=transcript, limiter=cfg.limiter, deadline=deadline)
        try:
            info = await upgrade(reader, writer, context or shared_probe_context(), endpoint.host if sni else None,
                                 timeout=deadline.clamp(cfg.timeout))
            transcript.note(f"TLS established: {info.version} {info.cipher}, {len(info.peer_chain_der)} certificate(s)")
        finally:
            await close(writer)
        result = judge(info, endpoint, cfg)
        transcript.note(f"certificate {'verifies' if result.verified else 'does not verify'}"
                        + (f": {result.verify_error}" if result.verify_error else ""))
        return result

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)
