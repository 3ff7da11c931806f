"""Bring a connection to the point where the TLS ClientHello must be written.

For implicit-TLS endpoints that is right after connect; for SMTP (RFC 3207) and IMAP (RFC 9051 6.2.1)
it is after the greeting, the capability exchange and a positive answer to STARTTLS. Used by the
stdlib handshake probe and by the raw ClientHello prober alike.
"""

from __future__ import annotations

import asyncio

from conformance.probes.imap import wire as imap_wire
from conformance.probes.pop3 import wire as pop3_wire
from conformance.probes.smtp import wire as smtp_wire
from conformance.probes.wire.connect import HostLimiter, open_tcp
from conformance.probes.wire.outcome import ProtocolViolation, ServerUnavailable, Transcript
from conformance.probes.wire.streams import Deadline, close
from conformance.probes.wire.upgrade import refuse_injected_plaintext
from conformance.target import Endpoint


class StartTlsNotOffered(ProtocolViolation):
    """The server does not advertise STARTTLS: a finding (no way to protect the session)."""


class StartTlsRefused(ProtocolViolation):
    """The server advertised STARTTLS but answered it with a permanent refusal."""


class PlaintextInjection(ProtocolViolation):
    """The server sent bytes after its STARTTLS go-ahead, before the handshake (CVE-2011-0411 class)."""


async def open_to_tls_point(endpoint: Endpoint, *, timeout: float, ehlo_name: str, transcript: Transcript,
                            limiter: HostLimiter | None = None, deadline: Deadline | None = None,
                            ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Raw streams positioned where the ClientHello goes. The caller owns (and must close) them.

    Raises Unreachable/ProbeTimeout (inconclusive), ServerUnavailable (4xx greeting, 454, BYE),
    StartTlsNotOffered / StartTlsRefused / ProtocolViolation (findings). Plaintext after the go-ahead is
    discarded and noted (refuse_injected_plaintext)."""
    reader, writer = await open_tcp(endpoint, timeout, limiter)
    transcript.note(f"connected to {endpoint}")
    if endpoint.implicit_tls:
        return reader, writer
    try:
        if endpoint.protocol == "smtp":
            await smtp_to_tls_point(reader, writer, timeout=timeout, ehlo_name=ehlo_name,
                                    transcript=transcript, deadline=deadline)
        elif endpoint.protocol == "pop3":
            await pop3_to_tls_point(reader, writer, timeout=timeout, transcript=transcript, deadline=deadline)
        else:
            await imap_to_tls_point(reader, writer, timeout=timeout, transcript=transcript, deadline=deadline)
        refuse_injected_plaintext(reader, transcript)
    except BaseException:
        await close(writer)
        raise
    return reader, writer


async def smtp_to_tls_point(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float,
                            ehlo_name: str, transcript: Transcript, deadline: Deadline | None = None,
                            ) -> smtp_wire.EhloResult:
    """Greeting, EHLO, STARTTLS -> 220. Returns the pre-TLS EHLO capabilities."""
    await smtp_wire.read_greeting(reader, timeout=timeout, deadline=deadline, transcript=transcript)
    ehlo = await smtp_wire.exchange(reader, writer, f"EHLO {ehlo_name}", timeout=timeout, deadline=deadline,
                                    transcript=transcript)
    _require_positive(ehlo, "EHLO")
    caps = smtp_wire.EhloResult.from_reply(ehlo)
    if not caps.starttls:
        raise StartTlsNotOffered(f"STARTTLS not offered in the EHLO reply ({', '.join(sorted(caps.extensions))})")
    reply = await smtp_wire.exchange(reader, writer, "STARTTLS", timeout=timeout, deadline=deadline,
                                     transcript=transcript)
    if reply.code != 220:
        _require_positive(reply, "STARTTLS")
        raise ProtocolViolation(f"STARTTLS answered {reply} (RFC 3207 4 expects 220)")
    return caps


def _require_positive(reply: smtp_wire.SmtpReply, verb: str) -> None:
    if reply.transient:
        raise ServerUnavailable(f"{verb} answered {reply}")
    if reply.permanent:
        kind = StartTlsRefused if verb == "STARTTLS" else ProtocolViolation
        raise kind(f"{verb} refused: {reply}")


async def imap_to_tls_point(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float,
                            transcript: Transcript, deadline: Deadline | None = None) -> frozenset[str]:
    """Greeting, CAPABILITY (unless the greeting carried it), tagged STARTTLS -> OK.
    Returns the pre-TLS capabilities."""
    greeting = await imap_wire.read_greeting(reader, timeout=timeout, deadline=deadline, transcript=transcript)
    if greeting.status == "PREAUTH":
        # RFC 9051 7.1.4: PREAUTH puts the session in authenticated state, where STARTTLS is not allowed
        transcript.note("server greeted with PREAUTH on a cleartext connection")
    caps = imap_wire.capabilities_in((), greeting.code)
    if caps is None:
        response = await imap_wire.command(reader, writer, "S1", "CAPABILITY", timeout=timeout,
                                           deadline=deadline, transcript=transcript)
        caps = imap_wire.capabilities_in(response.untagged, response.code) or frozenset()
    if "STARTTLS" not in caps:
        raise StartTlsNotOffered(f"STARTTLS not in the IMAP capabilities ({' '.join(sorted(caps))})")
    response = await imap_wire.command(reader, writer, "S2", "STARTTLS", timeout=timeout, deadline=deadline,
                                       transcript=transcript)
    if not response.ok:
        raise StartTlsRefused(f"STARTTLS refused: {response}")
    return caps


async def pop3_to_tls_point(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float,
                            transcript: Transcript, deadline: Deadline | None = None) -> frozenset[str]:
    """Greeting, CAPA, STLS -> +OK (RFC 2595 4). Returns the pre-TLS capabilities."""
    await pop3_wire.read_greeting(reader, timeout=timeout, deadline=deadline, transcript=transcript)
    caps: frozenset[str] = frozenset()
    reply = await pop3_wire.command(reader, writer, "CAPA", timeout=timeout, deadline=deadline, transcript=transcript)
    if isinstance(reply, pop3_wire.Pop3Reply) and reply.ok:
        caps = pop3_wire.capabilities(await pop3_wire.read_multiline(
            reader, timeout=timeout, deadline=deadline, transcript=transcript, what="reading the CAPA list"))
    if "STLS" not in caps:
        raise StartTlsNotOffered(f"STLS not in the POP3 capabilities ({' '.join(sorted(caps)) or 'none'})")
    reply = await pop3_wire.command(reader, writer, "STLS", timeout=timeout, deadline=deadline, transcript=transcript)
    if not isinstance(reply, pop3_wire.Pop3Reply) or not reply.ok:
        if isinstance(reply, pop3_wire.Pop3Reply) and reply.temporary:
            raise ServerUnavailable(f"STLS answered {reply}")
        raise StartTlsRefused(f"STLS refused: {reply}")
    return caps
