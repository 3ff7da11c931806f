"""STARTTLS command injection (CVE-2011-0411 class; RFC 3207 4.2, RFC 9051 6.2.1, RFC 2595 4).

A command pipelined in the same packet as STARTTLS arrives as plaintext; a server that keeps it in
its input buffer and executes it inside the TLS session lets a man-in-the-middle inject commands.
We send ``STARTTLS`` and ``NOOP`` in one write, complete the handshake, then send ``QUIT``/``LOGOUT``:
if the first answer inside TLS belongs to the injected NOOP, the server executed it. No waiting on
silence is needed, so the verdict does not depend on timing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from conformance.probes.imap import wire as imap_wire
from conformance.probes.pop3 import wire as pop3_wire
from conformance.probes.smtp import wire as smtp_wire
from conformance.probes.starttls.opening import StartTlsNotOffered, StartTlsRefused, open_to_tls_point
from conformance.probes.wire.config import ProbeConfig, scrubbed
from conformance.probes.wire.connect import open_tcp
from conformance.probes.wire.outcome import (
    Attempt,
    LocalError,
    ProbeError,
    ProtocolViolation,
    ServerUnavailable,
    Transcript,
    Unreachable,
    attempt,
)
from conformance.probes.wire.streams import Deadline, close, peek_buffer, quote, read_line, send
from conformance.probes.wire.upgrade import shared_probe_context, upgrade
from conformance.target import Endpoint

INJECTED_TAG = "X1"


@dataclass(frozen=True)
class InjectionResult:
    starttls_reply: str                # "(connection closed)" if the server hung up instead
    answered_in_plaintext: str | None  # what the server sent after its go-ahead, before TLS (quoted)
    executed_after_tls: bool           # the injected command was answered inside TLS: vulnerable
    first_answer_after_tls: str | None
    closed_connection: bool            # the server broke off the session that carried a pipelined command
    tls_started: bool = True           # False if the server refused the pipelined STARTTLS (also safe)
    tls_error: str | None = None       # no TLS session answered, not even without a pipelined command
    control_answer: str | None = None  # a clean STARTTLS session's answer inside TLS, after a break-off


async def probe_starttls_injection(endpoint: Endpoint, cfg: ProbeConfig) -> Attempt[InjectionResult]:
    """Does the server execute a command pipelined behind STARTTLS (STLS)? SMTP, IMAP, POP3; not for implicit TLS
    (a LOCAL_ERROR attempt)."""
    transcript = cfg.transcript(endpoint)

    async def run() -> InjectionResult:
        if endpoint.implicit_tls:
            raise LocalError(f"{endpoint} uses implicit TLS: there is no STARTTLS to inject behind")
        deadline = Deadline(cfg.session_budget)
        reader, writer = await open_tcp(endpoint, cfg.timeout, cfg.limiter)
        transcript.note(f"connected to {endpoint}")
        try:
            smtp = endpoint.protocol == "smtp"
            go_ahead_of = _GO_AHEAD[endpoint.protocol]
            try:
                go_ahead = await go_ahead_of(reader, writer, cfg, transcript, deadline)
            except Unreachable:
                transcript.note("the server hung up on the pipelined STARTTLS")
                return InjectionResult("(connection closed)", None, False, None, True, False)
            except StartTlsRefused as exc:
                return InjectionResult(str(exc), None, False, None, False, False)
            pending = peek_buffer(reader)
            if pending:
                # Set aside (STARTTLS-INJECT-02 judges them), so the handshake can still show whether
                # the pipelined command is replayed inside TLS.
                transcript.note(f"{len(pending)} bytes arrived after the STARTTLS go-ahead, before TLS: set aside")
                await reader.readexactly(len(pending))
            plaintext = quote(pending) if pending else None
            try:
                await upgrade(reader, writer, shared_probe_context(), endpoint.host, timeout=deadline.clamp(cfg.timeout))
            except (Unreachable, ProtocolViolation) as exc:
                failed: str | None = str(exc)
            else:
                failed = None
                transcript.note("TLS established; asking the server to end the session")
                first = await _FIRST_ANSWER[endpoint.protocol](reader, writer, cfg, transcript, deadline)
        finally:
            await close(writer)  # before the control session: the per-host budget may be one connection
        if failed is None and first is None:
            failed = "the server closed the TLS session without answering"
        if failed is not None:
            return await _judge_break_off(endpoint, cfg, transcript, go_ahead, plaintext, failed)
        assert first is not None
        # Decided by position, not by a substring like "250": inside TLS we sent only QUIT (SMTP has no
        # tags), so any first reply other than QUIT's 221 answers the injected command; IMAP tags decide.
        # POP3 likewise: QUIT's answer is +OK, the injected unknown command's -ERR (RFC 1939 3).
        if endpoint.protocol == "pop3":
            executed = not first.startswith("+OK")
        else:
            executed = not first.startswith("221") if smtp else first.startswith(INJECTED_TAG + " ")
        return InjectionResult(go_ahead, plaintext, executed, first, False)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


async def _judge_break_off(endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript, go_ahead: str,
                           plaintext: str | None, failed: str) -> InjectionResult:
    """The session with the pipelined command broke off (handshake failed, or no answer inside TLS). If a
    STARTTLS session without anything pipelined answers inside TLS, the break-off was the server's reaction
    to the injection (Dovecot resets such a session): safe. Otherwise nothing shows what it would do."""
    transcript.note(f"{failed}; control: a STARTTLS session without a pipelined command")
    try:
        reader, writer = await open_to_tls_point(endpoint, timeout=cfg.timeout, ehlo_name=cfg.ehlo_name,
                                                 transcript=transcript, limiter=cfg.limiter)
        try:
            deadline = Deadline(cfg.session_budget)
            await upgrade(reader, writer, shared_probe_context(), endpoint.host, timeout=deadline.clamp(cfg.timeout))
            answer = await _FIRST_ANSWER[endpoint.protocol](reader, writer, cfg, transcript, deadline)
        finally:
            await close(writer)
    except ProbeError as exc:
        answer, failed = None, f"{failed}; without a pipelined command: {exc}"
    if answer is None:
        return InjectionResult(go_ahead, plaintext, False, None, False, tls_error=failed)
    return InjectionResult(go_ahead, plaintext, False, None, True, control_answer=answer)


async def _raw(writer: asyncio.StreamWriter, lines: list[str], cfg: ProbeConfig, transcript: Transcript) -> None:
    for line in lines:
        transcript.client(line)
    await send(writer, "".join(f"{line}\r\n" for line in lines).encode(), timeout=cfg.timeout,
               what="sending STARTTLS with a pipelined command")


async def _smtp_go_ahead(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cfg: ProbeConfig,
                         transcript: Transcript, deadline: Deadline) -> str:
    await smtp_wire.read_greeting(reader, timeout=cfg.timeout, deadline=deadline, transcript=transcript)
    ehlo = await smtp_wire.exchange(reader, writer, f"EHLO {cfg.ehlo_name}", timeout=cfg.timeout,
                                    deadline=deadline, transcript=transcript)
    if not smtp_wire.EhloResult.from_reply(ehlo).starttls:
        raise StartTlsNotOffered("STARTTLS not offered in the EHLO reply")
    await _raw(writer, ["STARTTLS", "NOOP"], cfg, transcript)
    reply = await smtp_wire.read_reply(reader, timeout=cfg.timeout, deadline=deadline, transcript=transcript,
                                       what="reading the reply to STARTTLS")
    if reply.transient:
        raise ServerUnavailable(f"STARTTLS answered {reply}")
    if reply.code != 220:
        raise StartTlsRefused(f"STARTTLS answered {reply}")
    return str(reply)


async def _smtp_first_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cfg: ProbeConfig,
                             transcript: Transcript, deadline: Deadline) -> str | None:
    # not smtp_wire.exchange: an answer to the injected NOOP may already wait here, and is the finding
    transcript.client("QUIT")
    try:
        await send(writer, b"QUIT\r\n", timeout=cfg.timeout, what="sending QUIT")
        reply = await smtp_wire.read_reply(reader, timeout=cfg.timeout, deadline=deadline, transcript=transcript,
                                           what="reading the first reply inside TLS")
    except Unreachable:
        return None
    return str(reply)


async def _imap_go_ahead(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cfg: ProbeConfig,
                         transcript: Transcript, deadline: Deadline) -> str:
    greeting = await imap_wire.read_greeting(reader, timeout=cfg.timeout, deadline=deadline, transcript=transcript)
    caps = imap_wire.capabilities_in((), greeting.code)
    if caps is None:
        response = await imap_wire.command(reader, writer, "S1", "CAPABILITY", timeout=cfg.timeout,
                                           deadline=deadline, transcript=transcript)
        caps = imap_wire.capabilities_in(response.untagged, response.code) or frozenset()
    if "STARTTLS" not in caps:
        raise StartTlsNotOffered("STARTTLS not in the IMAP capabilities")
    await _raw(writer, ["S2 STARTTLS", f"{INJECTED_TAG} NOOP"], cfg, transcript)
    response = await imap_wire.read_response(reader, "S2", timeout=cfg.timeout, deadline=deadline,
                                             transcript=transcript, what="reading the response to STARTTLS")
    if not response.ok:
        raise StartTlsRefused(f"STARTTLS refused: {response}")
    return str(response)


async def _imap_first_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cfg: ProbeConfig,
                             transcript: Transcript, deadline: Deadline) -> str | None:
    """The first tagged line inside TLS: ours (Q1) or the injected one (X1). Untagged lines are skipped."""
    transcript.client("Q1 LOGOUT")
    try:
        await send(writer, b"Q1 LOGOUT\r\n", timeout=cfg.timeout, what="sending LOGOUT")
        for _ in range(50):
            line = await read_line(reader, timeout=cfg.timeout, deadline=deadline, what="reading after TLS")
            transcript.server(line.decode("utf-8", "replace"))
            if not line.startswith(b"* "):
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if not text.startswith(("Q1 ", INJECTED_TAG + " ")):  # RFC 9051 2.2.2: tags match commands
                    raise ProtocolViolation(f"the first tagged reply after the upgrade carries a tag we never sent "
                                            f"there: {quote(line)}")
                return text
    except Unreachable:
        return None
    raise ProtocolViolation("no tagged response to LOGOUT within 50 lines")


# An unknown command: every POP3 server answers it -ERR in any state, so its answer cannot pass for QUIT's +OK.
POP3_INJECTED = "XMAILCONFORM"


async def _pop3_go_ahead(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cfg: ProbeConfig,
                         transcript: Transcript, deadline: Deadline) -> str:
    await pop3_wire.read_greeting(reader, timeout=cfg.timeout, deadline=deadline, transcript=transcript)
    capa = await pop3_wire.read_status_of(reader, writer, "CAPA", timeout=cfg.timeout, deadline=deadline,
                                          transcript=transcript)
    lines: tuple[str, ...] = ()
    if capa.ok:
        lines = await pop3_wire.read_multiline(reader, timeout=cfg.timeout, deadline=deadline, transcript=transcript,
                                               what="reading the CAPA list")
    if "STLS" not in pop3_wire.capabilities(lines):
        raise StartTlsNotOffered("STLS not in the POP3 capabilities")
    await _raw(writer, ["STLS", POP3_INJECTED], cfg, transcript)
    reply = await pop3_wire.read_status(reader, timeout=cfg.timeout, deadline=deadline, transcript=transcript,
                                        what="reading the reply to STLS")
    if reply.temporary:
        raise ServerUnavailable(f"STLS answered {reply}")
    if not reply.ok:
        raise StartTlsRefused(f"STLS refused: {reply}")
    return str(reply)


async def _pop3_first_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cfg: ProbeConfig,
                             transcript: Transcript, deadline: Deadline) -> str | None:
    transcript.client("QUIT")
    try:
        await send(writer, b"QUIT\r\n", timeout=cfg.timeout, what="sending QUIT")
        reply = await pop3_wire.read_status(reader, timeout=cfg.timeout, deadline=deadline, transcript=transcript,
                                            what="reading the first reply inside TLS")
    except Unreachable:
        return None
    return str(reply)


_GO_AHEAD = {"smtp": _smtp_go_ahead, "imap": _imap_go_ahead, "pop3": _pop3_go_ahead}
_FIRST_ANSWER = {"smtp": _smtp_first_answer, "imap": _imap_first_answer, "pop3": _pop3_first_answer}
