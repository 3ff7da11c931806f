"""What survives a STARTTLS, what the server says around it, and how implicit-TLS ports greet.

Three probes for the STARTTLS state family (RFC 3207 4.2, RFC 9051 6.2.1, RFC 8314 3.3):

* ``probe_starttls_state``: STARTTLS sent alone; did the server send anything after its go-ahead
  and before our ClientHello (response injection)? Then, inside TLS and *without* a new EHLO,
  ``MAIL FROM:<>``: a server that forgot the pre-TLS session answers 503 (send EHLO first). IMAP:
  the CAPABILITY inside TLS must not still say LOGINDISABLED (pre-TLS state kept). POP3: USER with a
  throwaway name before STLS (refused by a server that wants TLS first), then CAPA and USER again inside
  TLS: the same refusal word for word, with USER advertised, means the pre-TLS refusal was kept.
* ``probe_implicit_greeting``: the greeting of an implicit-TLS port and of the IMAP STARTTLS port
  (PREAUTH means a session without any login), and whether an implicit-TLS port answers a client
  that speaks plaintext first (plaintext fallback).

Safety: no credentials are sent; an SMTP session never reaches DATA (RSET, QUIT).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

from conformance.probes.imap.session import ImapSession
from conformance.probes.pop3.session import Pop3Session
from conformance.probes.pop3.wire import Pop3Reply
from conformance.probes.smtp import wire as smtp_wire
from conformance.probes.smtp.session import SmtpSession
from conformance.probes.starttls.opening import StartTlsNotOffered, StartTlsRefused
from conformance.probes.wire.config import ProbeConfig, scrubbed, throwaway_credentials
from conformance.probes.wire.connect import open_tcp
from conformance.probes.wire.outcome import (
    Attempt,
    ProbeError,
    ProtocolViolation,
    ServerUnavailable,
    Transcript,
    Unreachable,
    attempt,
    mapped_errors,
)
from conformance.probes.wire.streams import Deadline, close, quote, send
from conformance.probes.wire.upgrade import shared_probe_context, upgrade
from conformance.target import Endpoint

# How long to watch for bytes after a STARTTLS go-ahead. A conforming server sends nothing at all
# (the client speaks first in TLS), so a longer window can only catch more, never misjudge a good server.
INJECTION_WINDOW = 0.5


class EhloState(StrEnum):
    """What the server remembered of the pre-TLS session: SMTP its EHLO, judged from MAIL FROM without a new
    EHLO; POP3 its refusal of USER in clear, judged from USER inside TLS."""

    FORGOTTEN = "forgotten"            # 503: send EHLO first (RFC 3207 4.2); POP3: USER taken inside TLS
    KEPT = "kept"                      # MAIL (or AUTH) accepted as if EHLO had been sent inside TLS; POP3:
                                       # USER inside TLS refused exactly as in clear, though CAPA offers it
    NEVER_REQUIRED = "never-required"  # the server takes MAIL without EHLO (POP3: USER) even before TLS
    UNKNOWN = "unknown"                # some other answer: no conclusion


@dataclass(frozen=True)
class StartTlsState:
    protocol: str
    go_ahead: str                        # the server's answer to STARTTLS
    injected: str | None                 # bytes after the go-ahead, before the handshake (quoted), or None
    tls_version: str | None              # None: the handshake failed (see tls_error)
    tls_error: str | None
    probe_command: str | None            # what we sent inside TLS without EHLO
    probe_reply: str | None              # the server's reply to it
    ehlo_state: EhloState                # SMTP and POP3 (IMAP: UNKNOWN)
    control_reply: str | None = None     # SMTP: MAIL FROM without EHLO before TLS (only asked when KEPT);
                                         # POP3: the answer to USER before STLS
    capabilities_after_tls: frozenset[str] | None = None  # IMAP and POP3
    logindisabled_after_tls: bool = False

    @property
    def response_injected(self) -> bool:
        return self.injected is not None


async def _watch_for_bytes(reader: asyncio.StreamReader, window: float) -> bytes:
    """Whatever the server sends within ``window`` seconds (nothing, for a conforming server)."""
    try:
        with mapped_errors("watching for bytes after the STARTTLS go-ahead"):
            return await asyncio.wait_for(reader.read(4096), window)
    except ProbeError:  # timeout: nothing came (the expected case); a reset shows up at the handshake
        return b""


async def probe_starttls_state(endpoint: Endpoint, cfg: ProbeConfig, *, window: float = INJECTION_WINDOW,
                               ) -> Attempt[StartTlsState]:
    """STARTTLS alone, a watch for injected bytes, the handshake, then the state check inside TLS.
    STARTTLS not offered or refused is a SERVER_ERROR attempt (STARTTLS-OFFER-01 reports it)."""
    transcript = cfg.transcript(endpoint)
    run = {"smtp": _smtp_state, "pop3": _pop3_state}.get(endpoint.protocol, _imap_state)
    return scrubbed(await attempt(endpoint.id, transcript, run(endpoint, cfg, transcript, window)), cfg)


async def _smtp_state(endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript, window: float) -> StartTlsState:
    async with SmtpSession(endpoint, cfg, transcript) as smtp:
        await smtp.connect()
        caps = await smtp.ehlo()
        if not caps.starttls:
            raise StartTlsNotOffered(f"{endpoint}: STARTTLS not offered in the EHLO reply")
        reply = await smtp.command("STARTTLS")
        if reply.transient:
            raise ServerUnavailable(f"STARTTLS answered {reply}")
        if reply.code != 220:
            raise StartTlsRefused(f"STARTTLS answered {reply}")
        reader, writer = smtp.streams
        injected = await _watch_for_bytes(reader, window)
        if injected:
            transcript.note(f"{len(injected)} bytes arrived after the STARTTLS go-ahead: {quote(injected)}")
            return StartTlsState("smtp", str(reply), quote(injected), None, None, None, None, EhloState.UNKNOWN)
        try:
            tls = await upgrade(reader, writer, shared_probe_context(), endpoint.host, timeout=cfg.timeout)
        except ProtocolViolation as exc:
            return StartTlsState("smtp", str(reply), None, None, str(exc), None, None, EhloState.UNKNOWN)
        transcript.note(f"TLS established: {tls.version} {tls.cipher}; no EHLO sent inside TLS on purpose")
        command, answer, state = await _ehlo_state(smtp)
        await _end(smtp)
    control = None
    if state is EhloState.KEPT:
        control = await _mail_without_ehlo_in_clear(endpoint, cfg, transcript)
        if control is not None and control.positive:
            state = EhloState.NEVER_REQUIRED
    return StartTlsState("smtp", str(reply), None, tls.version, None, command, answer, state,
                         str(control) if control else None)


async def _ehlo_state(smtp: SmtpSession) -> tuple[str, str, EhloState]:
    """MAIL FROM:<> inside TLS without EHLO. 503 = forgotten; 2xx = kept. A 530 (authentication
    required) does not tell: a server may check authentication before EHLO, so AUTH PLAIN without an
    initial response decides (503 = forgotten; 334 = it still knows the EHLO; cancelled with '*')."""
    mail = await smtp.command("MAIL FROM:<>")
    if mail.code == 503:
        return "MAIL FROM:<>", str(mail), EhloState.FORGOTTEN
    if mail.positive:
        return "MAIL FROM:<>", str(mail), EhloState.KEPT
    if mail.code != 530:
        return "MAIL FROM:<>", str(mail), EhloState.UNKNOWN
    auth = await smtp.command("AUTH PLAIN")
    if auth.code == 334:
        await smtp.command("*", secret=True)
        return "AUTH PLAIN", str(auth), EhloState.KEPT
    return "AUTH PLAIN", str(auth), EhloState.FORGOTTEN if auth.code == 503 else EhloState.UNKNOWN


async def _end(smtp: SmtpSession) -> None:
    try:
        await smtp.rset()
    except ProbeError:
        pass  # a server that hangs up here changes nothing we learnt
    await smtp.quit()


async def _mail_without_ehlo_in_clear(endpoint: Endpoint, cfg: ProbeConfig,
                                      transcript: Transcript) -> smtp_wire.SmtpReply | None:
    """Control: does this server take MAIL without any EHLO at all (then a kept EHLO proves nothing)?"""
    transcript.note("control session: MAIL FROM without EHLO before TLS")
    try:
        async with SmtpSession(endpoint, cfg, transcript) as smtp:
            await smtp.connect()
            reply = await smtp.command("MAIL FROM:<>")
            await _end(smtp)
            return reply
    except ProbeError as exc:
        transcript.note(f"control session failed: {exc}")
        return None


async def _imap_state(endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript, window: float) -> StartTlsState:
    async with ImapSession(endpoint, cfg, transcript) as imap:
        await imap.connect()
        caps = imap.capabilities or await imap.capability()
        if "STARTTLS" not in caps:
            raise StartTlsNotOffered(f"{endpoint}: STARTTLS not in the IMAP capabilities")
        response = await imap.command("STARTTLS")
        if not response.ok:
            raise StartTlsRefused(f"STARTTLS refused: {response}")
        reader, writer = imap.streams
        injected = await _watch_for_bytes(reader, window)
        if injected:
            transcript.note(f"{len(injected)} bytes arrived after the STARTTLS go-ahead: {quote(injected)}")
            return StartTlsState("imap", str(response), quote(injected), None, None, None, None, EhloState.UNKNOWN)
        try:
            tls = await upgrade(reader, writer, shared_probe_context(), endpoint.host, timeout=cfg.timeout)
        except ProtocolViolation as exc:
            return StartTlsState("imap", str(response), None, None, str(exc), None, None, EhloState.UNKNOWN)
        transcript.note(f"TLS established: {tls.version} {tls.cipher}")
        imap.tls = tls
        imap.capabilities = None
        after = await imap.capability()
        await imap.logout()
    return StartTlsState("imap", str(response), None, tls.version, None, "CAPABILITY", " ".join(sorted(after)),
                         EhloState.UNKNOWN, None, after, "LOGINDISABLED" in after)


async def _pop3_state(endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript, window: float) -> StartTlsState:
    """USER (a throwaway name, no password) before STLS and again inside TLS (RFC 2595 4: TLS changes what
    USER and PASS may do; a server that wants TLS first refuses USER in clear and must take it inside)."""
    name, _ = throwaway_credentials()
    async with Pop3Session(endpoint, cfg, transcript) as pop3:
        await pop3.connect()
        if "STLS" not in await pop3.capa():
            raise StartTlsNotOffered(f"{endpoint}: STLS not in the POP3 capabilities")
        before = await pop3.command(f"USER {name}")
        reply = await pop3.command("STLS")
        if reply.temporary:
            raise ServerUnavailable(f"STLS answered {reply}")
        if not reply.ok:
            raise StartTlsRefused(f"STLS refused: {reply}")
        reader, writer = pop3.streams
        injected = await _watch_for_bytes(reader, window)
        if injected:
            transcript.note(f"{len(injected)} bytes arrived after the STLS go-ahead: {quote(injected)}")
            return StartTlsState("pop3", str(reply), quote(injected), None, None, None, None, EhloState.UNKNOWN)
        try:
            tls = await upgrade(reader, writer, shared_probe_context(), endpoint.host, timeout=cfg.timeout)
        except ProtocolViolation as exc:
            return StartTlsState("pop3", str(reply), None, None, str(exc), None, None, EhloState.UNKNOWN)
        transcript.note(f"TLS established: {tls.version} {tls.cipher}")
        pop3.tls = tls
        after_caps = await pop3.capa()
        after = await pop3.command(f"USER {name}")
        await pop3.quit()
    return StartTlsState("pop3", str(reply), None, tls.version, None, "USER", str(after),
                         _pop3_user_state(before, after, after_caps), str(before), after_caps)


def _pop3_user_state(before: Pop3Reply, after: Pop3Reply, after_caps: frozenset[str]) -> EhloState:
    if before.ok:
        return EhloState.NEVER_REQUIRED
    if after.ok:
        return EhloState.FORGOTTEN
    # a server without USER/PASS at all (basic auth retired) refuses it alike on both sides of STLS
    return EhloState.KEPT if str(after) == str(before) and "USER" in after_caps else EhloState.UNKNOWN


@dataclass(frozen=True)
class ImplicitGreeting:
    """How a port greets. ``greeting`` is None when TLS could not be set up on an implicit-TLS port."""

    implicit_tls: bool
    greeting: str | None
    preauth: bool                      # IMAP PREAUTH: a session authenticated without any login
    tls_error: str | None
    plaintext_answer: str | None       # implicit TLS only: what a plaintext-speaking client got back

    @property
    def plaintext_fallback(self) -> bool:
        return self.plaintext_answer is not None


async def probe_implicit_greeting(endpoint: Endpoint, cfg: ProbeConfig) -> Attempt[ImplicitGreeting]:
    """The greeting (over TLS for implicit-TLS ports, in clear for IMAP's STARTTLS port), and for
    implicit-TLS ports a second connection that speaks plaintext first: a TLS-only port answers with
    a TLS alert or silence, never with an SMTP/IMAP reply."""
    transcript = cfg.transcript(endpoint)

    async def run() -> ImplicitGreeting:
        greeting, preauth, tls_error = None, False, None
        try:
            if endpoint.protocol == "pop3":
                async with Pop3Session(endpoint, cfg, transcript) as pop3:
                    greeting = str(await pop3.connect())
                    await pop3.quit()
            elif endpoint.protocol == "imap":
                async with ImapSession(endpoint, cfg, transcript) as imap:
                    status = await imap.connect()
                    greeting, preauth = f"* {status.status} {status.text}".strip(), status.status == "PREAUTH"
                    await imap.logout()
            else:
                async with SmtpSession(endpoint, cfg, transcript) as smtp:
                    greeting = str(await smtp.connect())
                    await smtp.quit()
        except ProtocolViolation as exc:
            if not endpoint.implicit_tls:
                raise
            tls_error = str(exc)
        answer = await _plaintext_answer(endpoint, cfg, transcript) if endpoint.implicit_tls else None
        return ImplicitGreeting(endpoint.implicit_tls, greeting, preauth, tls_error, answer)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


async def _plaintext_answer(endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript) -> str | None:
    """Speak plaintext first on an implicit-TLS port; return the server's plaintext answer, if any."""
    transcript.note("second connection: a plaintext command instead of a ClientHello")
    line = {"smtp": "EHLO " + cfg.ehlo_name, "pop3": "CAPA"}.get(endpoint.protocol, "P1 CAPABILITY")
    deadline = Deadline(cfg.timeout * 2)
    reader, writer = await open_tcp(endpoint, cfg.timeout, cfg.limiter)
    try:
        transcript.client(line)
        try:
            await send(writer, line.encode() + b"\r\n", timeout=cfg.timeout, what="sending a plaintext command")
            with mapped_errors("reading the answer to a plaintext command"):
                data = await asyncio.wait_for(reader.read(512), deadline.clamp(cfg.timeout))
        except (Unreachable, ProbeError):
            return None  # silence, reset or close: the port does not speak plaintext
        if _looks_like_plaintext_reply(data, endpoint.protocol):
            transcript.server(data.decode("utf-8", "replace").splitlines()[0])
            return quote(data)
        transcript.note(f"{len(data)} non-protocol bytes (a TLS alert or nothing): no plaintext fallback")
        return None
    finally:
        await close(writer)


def _looks_like_plaintext_reply(data: bytes, protocol: str) -> bool:
    if protocol == "smtp":
        return len(data) >= 4 and data[:3].isdigit() and data[3:4] in (b" ", b"-")
    if protocol == "pop3":
        return data.startswith((b"+OK", b"-ERR"))
    return data.startswith((b"* ", b"P1 ", b"+ "))


__all__ = ["EhloState", "ImplicitGreeting", "StartTlsState", "probe_implicit_greeting", "probe_starttls_state"]
