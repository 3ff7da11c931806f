"""A full TLS handshake with the stdlib (OpenSSL), implicit or after STARTTLS.

The handshake never verifies (CERT_NONE): it captures the chain, and ``certs.analyze_chain`` judges
it, so a server whose certificate is bad still shows which protocol and cipher it negotiated, and
"TLS unavailable" stays a different finding from "certificate does not verify".
"""

from __future__ import annotations

import _ssl
import asyncio
import ssl
from dataclasses import dataclass

from conformance.probes.starttls.opening import open_to_tls_point
from conformance.probes.tls.certs import CertReport, ChainError, analyze_chain
from conformance.probes.wire.config import ProbeConfig, scrubbed
from conformance.probes.wire.outcome import Attempt, ProbeTimeout, ProtocolViolation, attempt, mapped_errors
from conformance.probes.wire.streams import Deadline, close, peek_buffer, quote
from conformance.target import Endpoint


@dataclass(frozen=True)
class TlsInfo:
    version: str
    cipher: str
    peer_chain_der: tuple[bytes, ...]


@dataclass(frozen=True)
class HandshakeResult:
    version: str
    cipher: str
    peer_chain_der: tuple[bytes, ...]
    verified: bool                 # chains to a trust anchor AND the endpoint's host name matches
    verify_error: str | None
    ocsp_stapled: bool | None      # None: the stdlib client cannot see a stapled OCSP response
    cert: CertReport | None = None


def probe_context() -> ssl.SSLContext:
    """A client context that completes a handshake whatever the certificate (it is judged later)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext,
                  server_hostname: str, *, timeout: float, what: str = "TLS handshake") -> TlsInfo:
    """Start TLS on an open stream (implicit TLS or after a STARTTLS go-ahead) and describe it.
    Raises ProtocolViolation (handshake failed, or the server talked plaintext), ProbeTimeout, Unreachable."""
    try:
        _refuse_plaintext(reader)
        with mapped_errors(what):
            # asyncio's own handshake timeout aborts with a ConnectionAbortedError; ours fires first so a
            # stalled handshake reads as a timeout, not as a lost connection
            await asyncio.wait_for(writer.start_tls(context, server_hostname=server_hostname,
                                                    ssl_handshake_timeout=timeout + 5), timeout)
    except ProbeTimeout:
        _refuse_plaintext(reader)  # plaintext that reached the stream buffer is never seen by OpenSSL
        raise
    return tls_info(writer)


def _refuse_plaintext(reader: asyncio.StreamReader) -> None:
    pending = peek_buffer(reader)
    if pending:
        raise ProtocolViolation(f"server sent plaintext where a TLS handshake was due: {quote(pending)!r}")


def tls_info(writer: asyncio.StreamWriter) -> TlsInfo:
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        raise ProtocolViolation("no TLS session after the handshake")
    cipher = ssl_object.cipher()
    return TlsInfo(ssl_object.version() or "unknown", cipher[0] if cipher else "unknown", peer_chain(ssl_object))


_ENCODING_DER = getattr(_ssl, "ENCODING_DER", 2)  # the _ssl.Certificate.public_bytes format flag


def peer_chain(ssl_object: ssl.SSLObject) -> tuple[bytes, ...]:
    """The chain as the server sent it, leaf first. Python 3.13 made this public
    (SSLObject.get_unverified_chain); 3.10-3.12 have it only on the private _sslobj."""
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    chain = getter() if getter is not None else None
    if chain:
        return tuple(c if isinstance(c, bytes) else c.public_bytes(_ENCODING_DER) for c in chain)
    leaf = ssl_object.getpeercert(binary_form=True)
    return (leaf,) if leaf else ()


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
                          ) -> Attempt[HandshakeResult]:
    """Connect, STARTTLS if the service needs it, complete a handshake, judge the certificate."""
    transcript = cfg.transcript(endpoint)

    async def run() -> HandshakeResult:
        deadline = Deadline(cfg.session_budget)
        reader, writer = await open_to_tls_point(endpoint, timeout=cfg.timeout, ehlo_name=cfg.ehlo_name,
                                            transcript=transcript, limiter=cfg.limiter, deadline=deadline)
        try:
            info = await upgrade(reader, writer, context or probe_context(), endpoint.host,
                                 timeout=deadline.clamp(cfg.timeout))
            transcript.note(f"TLS established: {info.version} {info.cipher}, {len(info.peer_chain_der)} certificate(s)")
        finally:
            await close(writer)
        result = judge(info, endpoint, cfg)
        transcript.note(f"certificate {'verifies' if result.verified else 'does not verify'}"
                        + (f": {result.verify_error}" if result.verify_error else ""))
        return result

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)
