"""Start TLS on an open stream with the stdlib (OpenSSL) and describe the session; nothing is judged here.

The transport step every session shares (SMTP and IMAP sessions, the STARTTLS family, the handshake probe):
it never verifies (CERT_NONE) and captures the chain, which ``tls.certs`` judges later, so "TLS
unavailable" stays a different finding from "certificate does not verify".
"""

from __future__ import annotations

import _ssl
import asyncio
import functools
import ssl
from dataclasses import dataclass

from conformance.probes.wire.outcome import ProbeTimeout, ProtocolViolation, Transcript, mapped_errors
from conformance.probes.wire.streams import peek_buffer, quote, report_first_contact


@dataclass(frozen=True)
class TlsInfo:
    version: str
    cipher: str
    peer_chain_der: tuple[bytes, ...]



def probe_context() -> ssl.SSLContext:
    """A client context that completes a handshake whatever the certificate (it is judged later); a new
    one, for a caller that narrows its versions or ciphers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@functools.cache
def shared_probe_context() -> ssl.SSLContext:
    """probe_context() made once per process, for the callers that use it as it is: creating an OpenSSL
    context costs more than a handshake on loopback, and a fleet opens hundreds of TLS connections per host.
    A client context keeps no session cache, so connections sharing it share nothing else."""
    return probe_context()


async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext,
                  server_hostname: str | None, *, timeout: float, what: str = "TLS handshake") -> TlsInfo:
    """Start TLS on an open stream (implicit TLS or after a STARTTLS go-ahead) and describe it.
    Raises ProtocolViolation (handshake failed, or the server talked plaintext), ProbeTimeout, Unreachable."""
    try:
        _refuse_plaintext(reader)
        with mapped_errors(what):
            # asyncio's own handshake timeout aborts with a ConnectionAbortedError; ours fires first so a
            # stalled handshake reads as a timeout, not as a lost connection
            await asyncio.wait_for(writer.start_tls(context, server_hostname=server_hostname,
                                                    ssl_handshake_timeout=timeout + 5), timeout)
    except ProbeTimeout as exc:
        _refuse_plaintext(reader)  # plaintext that reached the stream buffer is never seen by OpenSSL
        report_first_contact(reader, exc)  # silent at the handshake of implicit TLS: the endpoint is mute
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


def refuse_injected_plaintext(reader: asyncio.StreamReader, transcript: Transcript) -> None:
    """Discard bytes the server sent after its STARTTLS go-ahead, before the handshake, as a safe client
    must (they would otherwise read as answers inside TLS: response injection, Poddebniak et al. 2021).
    Noted in the transcript; STARTTLS-INJECT-02 (starttls.state) is the check that reports them, so every
    other probe carries on and one fault is reported once."""
    pending = peek_buffer(reader)
    if pending:
        transcript.note(f"{len(pending)} bytes arrived after the STARTTLS go-ahead, before the handshake: "
                        f"discarded ({quote(pending)})")
        # StreamReader has no public way to drop buffered bytes (wire.peek_buffer reads the same buffer)
        buffer = getattr(reader, "_buffer", None)
        if isinstance(buffer, bytearray):
            buffer.clear()
