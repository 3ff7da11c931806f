"""An asyncio POP3 client session with a transcript, and the POP3 capability probe.

Only what the conformance checks need before and around authentication: CAPA (RFC 2449), STLS
(RFC 2595 4), USER/PASS and APOP (RFC 1939), AUTH (RFC 5034) over the shared SASL responders, QUIT.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace

from conformance.probes.pop3 import wire as pop3_wire
from conformance.probes.pop3.wire import Pop3Reply
from conformance.probes.wire.config import (
    CleartextAuth,
    ProbeConfig,
    scrubbed,
    scrubbing_errors,
    throwaway_credentials,
)
from conformance.probes.wire.outcome import (
    Attempt,
    LocalError,
    ProbeError,
    ProtocolViolation,
    Transcript,
    attempt,
)
from conformance.probes.wire.session import StreamSession, answer_and_tls_error, reveal
from conformance.probes.wire.upgrade import TlsInfo
from conformance.target import Endpoint, Secret

__all__ = ["Pop3Capabilities", "Pop3Reply", "Pop3Session", "probe_pop3_capabilities"]

MAX_SASL_ROUNDS = 4
CANCEL = "*"  # RFC 5034 4: the client ends the exchange
Responder = Callable[[bytes], str]


class Pop3Session(StreamSession):
    """One POP3 connection. Commands return the server's status line whatever it says (the caller judges).
    Use as ``async with Pop3Session(endpoint, cfg) as pop3:``."""

    protocol = "POP3"

    def __init__(self, endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript | None = None, *,
                 tls_context: ssl.SSLContext | None = None) -> None:
        super().__init__(endpoint, cfg, transcript, tls_context=tls_context)
        self.greeting: Pop3Reply | None = None
        self.capabilities: frozenset[str] | None = None
        self.stls_reply: Pop3Reply | None = None   # kept when the handshake after it fails
        self.last_challenge = b""                  # the last SASL challenge, decoded (RFC 7628 errors travel here)

    async def connect(self) -> Pop3Reply:
        """TCP (and TLS for pop3s) then the greeting: +OK returned; -ERR raises ServerUnavailable."""
        reader = await self._open()
        self.greeting = await pop3_wire.read_greeting(reader, timeout=self.cfg.timeout,
                                                      deadline=self._deadline, transcript=self.transcript)
        return self.greeting

    async def command(self, line: str, *, shown: str | None = None) -> Pop3Reply:
        reply = await self._exchange(line, shown=shown)
        if not isinstance(reply, Pop3Reply):
            raise ProtocolViolation(f"a SASL continuation answered {line.split(' ', 1)[0]}")
        return reply

    async def _exchange(self, line: str, *, shown: str | None = None, continuation: bool = False) -> Pop3Reply | str:
        reader, writer = self.streams
        with scrubbing_errors(self.cfg.secrets):
            return await pop3_wire.command(reader, writer, line, timeout=self.cfg.timeout, deadline=self._deadline,
                                           transcript=self.transcript, shown=shown, continuation=continuation)

    async def capa(self) -> frozenset[str]:
        """CAPA (RFC 2449 5); a -ERR (a server without the extension) gives an empty set."""
        reply = await self.command("CAPA")
        lines: tuple[str, ...] = ()
        if reply.ok:
            reader, _ = self.streams
            lines = await pop3_wire.read_multiline(reader, timeout=self.cfg.timeout, deadline=self._deadline,
                                                   transcript=self.transcript, what="reading the CAPA list")
        self.capabilities = pop3_wire.capabilities(lines)
        return self.capabilities

    async def stls(self, context: ssl.SSLContext | None = None) -> Pop3Reply:
        """STLS; on +OK the stream is upgraded and CAPA asked again (RFC 2595 4: the client must discard
        what it learned before TLS). Any other reply is returned unchanged."""
        reply = self.stls_reply = await self.command("STLS")
        if not reply.ok:
            return reply
        await self._upgrade_after_go_ahead(context)
        self.capabilities = None
        await self.capa()
        return reply

    async def user_pass(self, username: str, password: Secret | str) -> tuple[Pop3Reply, Pop3Reply | None]:
        """USER then PASS (RFC 1939 7); PASS is not sent when USER is refused (the second value is then None)."""
        user = await self.command(f"USER {username}")
        if not user.ok:
            return user, None
        return user, await self.command(f"PASS {reveal(password)}", shown="PASS <redacted>")

    async def apop(self, username: str, password: Secret | str) -> Pop3Reply:
        """APOP with the greeting's timestamp (RFC 1939 7); LocalError when the greeting offers none."""
        stamp = pop3_wire.apop_timestamp(self.greeting) if self.greeting else None
        if stamp is None:
            raise LocalError("the greeting carries no APOP timestamp")
        digest = hashlib.md5((stamp + reveal(password)).encode("utf-8")).hexdigest()
        return await self.command(f"APOP {username} {digest}", shown=f"APOP {username} <redacted>")

    async def sasl(self, mechanism: str, initial: str | None, answer: Responder) -> Pop3Reply:
        """AUTH <mechanism> (RFC 5034 4): ``initial`` is the initial response (None: none is sent), ``answer``
        answers each challenge; every client line after the command is redacted; "*" cancels a long exchange."""
        line = f"AUTH {mechanism}" + (f" {initial or '='}" if initial is not None else "")
        with scrubbing_errors(self.cfg.secrets + ((initial,) if initial else ())):
            reply = await self._exchange(line, continuation=True)
            self.last_challenge = b""
            for _ in range(MAX_SASL_ROUNDS):
                if isinstance(reply, Pop3Reply):
                    return reply
                self.last_challenge = _decode(reply)
                reply = await self._exchange(answer(self.last_challenge), shown="<redacted>", continuation=True)
            if isinstance(reply, Pop3Reply):
                return reply
            return await self.command(CANCEL, shown=CANCEL)

    async def quit(self) -> Pop3Reply | None:
        """QUIT and close; a server that hangs up first is fine (None)."""
        try:
            if self._writer is None:
                return None
            return await self.command("QUIT")
        except ProbeError:
            return None
        finally:
            await self.close()

def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip() or b"", validate=False)
    except (binascii.Error, ValueError):
        return b""


def classify_user_pass(user: Pop3Reply | None, password: Pop3Reply | None) -> CleartextAuth:
    """USER/PASS with throwaway credentials before TLS. A refused USER kept the password off the wire
    (Dovecot: "-ERR [AUTH] Plaintext authentication disallowed"); a PASS answered at all was read in clear."""
    if user is None:
        return CleartextAuth.NOT_TRIED
    if password is None:
        return CleartextAuth.REFUSED_FOR_TLS
    return CleartextAuth.ACCEPTED if password.ok else CleartextAuth.CREDENTIALS_CHECKED


def classify_sasl(asked: bool, final: Pop3Reply | None) -> CleartextAuth:
    """AUTH PLAIN without an initial response before TLS: a server that asked for the credentials ("+")
    has read them; one that refused at once has not (RFC 5034 4)."""
    if final is None:
        return CleartextAuth.NOT_TRIED
    if final.ok:
        return CleartextAuth.ACCEPTED
    return CleartextAuth.CREDENTIALS_CHECKED if asked else CleartextAuth.REFUSED_FOR_TLS


@dataclass(frozen=True)
class CleartextLogins:
    """What the server did with throwaway credentials before TLS, per login command."""

    user: tuple[Pop3Reply, Pop3Reply | None] | None = None   # USER (and PASS, unless USER was refused)
    user_verdict: CleartextAuth = CleartextAuth.NOT_TRIED
    apop: Pop3Reply | None = None                            # only when the greeting offers APOP
    apop_verdict: CleartextAuth = CleartextAuth.NOT_TRIED
    auth: Pop3Reply | None = None                            # AUTH PLAIN
    auth_verdict: CleartextAuth = CleartextAuth.NOT_TRIED


@dataclass(frozen=True)
class Pop3Capabilities:
    greeting: Pop3Reply
    pre_tls: frozenset[str] | None          # None on pop3s
    stls_offered: bool
    stls_reply: Pop3Reply | None
    tls: TlsInfo | None
    tls_error: str | None
    post_tls: frozenset[str] | None
    cleartext: CleartextLogins = CleartextLogins()


def classify_apop(before: Pop3Reply, inside: Pop3Reply | None) -> CleartextAuth:
    """APOP with throwaway credentials before STLS, and again inside TLS. The digest travels in the command,
    so only the answer tells: the same refusal on both sides means the server checked it in clear, as it
    would inside TLS; a different one before TLS refused it for want of TLS (Dovecot says "Plaintext
    authentication disallowed"). Without an answer inside TLS nothing tells them apart: REFUSED."""
    if before.ok:
        return CleartextAuth.ACCEPTED
    if inside is None or before.temporary:
        return CleartextAuth.REFUSED
    return CleartextAuth.CREDENTIALS_CHECKED if str(inside) == str(before) else CleartextAuth.REFUSED_FOR_TLS


async def _cleartext_logins(pop3: Pop3Session, user: str, password: str) -> CleartextLogins:
    """USER/PASS, APOP (when the greeting offers it) and AUTH PLAIN, each with throwaway credentials:
    never a real password in clear. Stops at the first that lets the random user in."""
    user_reply = await pop3.user_pass(user, password)
    found = CleartextLogins(user_reply, classify_user_pass(*user_reply))
    if found.user_verdict is CleartextAuth.ACCEPTED:
        return found
    if pop3.greeting is not None and pop3_wire.apop_timestamp(pop3.greeting):
        apop = await pop3.apop(user, password)
        found = replace(found, apop=apop, apop_verdict=CleartextAuth.ACCEPTED if apop.ok else CleartextAuth.REFUSED)
        if apop.ok:
            return found
    reply = await pop3._exchange("AUTH PLAIN", continuation=True)
    asked = not isinstance(reply, Pop3Reply)
    if asked:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
        reply = await pop3._exchange(token, shown="<redacted>", continuation=True)
        if not isinstance(reply, Pop3Reply):
            reply = await pop3.command(CANCEL, shown=CANCEL)
    assert isinstance(reply, Pop3Reply)
    return replace(found, auth=reply, auth_verdict=classify_sasl(asked, reply))


async def _apop_inside_tls(pop3: Pop3Session, logins: CleartextLogins, user: str, password: str) -> CleartextLogins:
    """The refused pre-TLS APOP once more inside TLS, to tell a refusal for want of TLS from a checked digest."""
    if logins.apop is None or logins.apop.ok:
        return logins
    inside = await pop3.apop(user, password) if pop3.greeting and pop3_wire.apop_timestamp(pop3.greeting) else None
    return replace(logins, apop_verdict=classify_apop(logins.apop, inside))


async def probe_pop3_capabilities(endpoint: Endpoint, cfg: ProbeConfig) -> Attempt[Pop3Capabilities]:
    """Greeting and CAPA; before TLS USER/PASS, APOP and AUTH PLAIN with throwaway credentials (never a real
    password in cleartext); then STLS on a fresh connection (a session that read credentials may be spent)
    and CAPA again."""
    transcript = cfg.transcript(endpoint)

    async def run() -> Pop3Capabilities:
        async with contextlib.AsyncExitStack() as sessions:
            pop3 = await sessions.enter_async_context(Pop3Session(endpoint, cfg, transcript))
            greeting = await pop3.connect()
            caps = await pop3.capa()
            if endpoint.implicit_tls:
                await pop3.quit()
                return Pop3Capabilities(greeting, None, False, None, pop3.tls, None, caps)
            user, password = throwaway_credentials()
            logins = await _cleartext_logins(pop3, user, password)
            await pop3.quit()
            if "STLS" not in caps:
                return Pop3Capabilities(greeting, caps, False, None, None, None, None, logins)
            pop3 = await sessions.enter_async_context(Pop3Session(endpoint, cfg, transcript))
            await pop3.connect()
            stls, tls_error = await answer_and_tls_error(pop3.stls(), lambda: pop3.stls_reply)
            if tls_error is None:
                logins = await _apop_inside_tls(pop3, logins, user, password)
                await pop3.quit()
            return Pop3Capabilities(greeting, caps, True, stls, pop3.tls, tls_error,
                                    pop3.capabilities if pop3.tls else None, logins)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)
