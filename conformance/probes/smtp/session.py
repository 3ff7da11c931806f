"""An asyncio SMTP client session with a transcript, and the SMTP capability probe.

Hand-written over ``smtp.wire`` because smtplib blocks and cannot show the exchange line by line;
commands are sent one at a time (no pipelining) unless a caller deliberately uses ``send_raw``.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from dataclasses import dataclass

from conformance.probes.smtp.wire import EhloResult, SmtpReply, exchange, read_greeting, read_reply
from conformance.probes.wire.config import (
    CleartextAuth,
    ProbeConfig,
    scrubbed,
    scrubbing_errors,
    throwaway_credentials,
)
from conformance.probes.wire.outcome import (
    Attempt,
    ProbeError,
    ProbeTimeout,
    ProtocolViolation,
    ServerUnavailable,
    Transcript,
    Unreachable,
    attempt,
)
from conformance.probes.wire.session import StreamSession, answer_and_tls_error, reveal
from conformance.probes.wire.streams import send
from conformance.probes.wire.upgrade import TlsInfo
from conformance.target import Endpoint, Secret, Service

__all__ = ["CleartextAuth", "EhloResult", "ProbeConfig", "SmtpCapabilities", "SmtpReply", "SmtpSession",
           "probe_smtp_capabilities"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class SmtpSession(StreamSession):
    """One SMTP connection. Commands return the server's reply whatever its code (the caller judges);
    a 421 raises ServerUnavailable because RFC 5321 3.8 says the server is closing the channel.

    Use as ``async with SmtpSession(endpoint, cfg) as smtp: await smtp.connect() ...``.
    """

    protocol = "SMTP"

    def __init__(self, endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript | None = None, *,
                 tls_context: ssl.SSLContext | None = None) -> None:
        super().__init__(endpoint, cfg, transcript, tls_context=tls_context)
        self.capabilities: EhloResult | None = None
        self.greeting: SmtpReply | None = None
        self.starttls_reply: SmtpReply | None = None  # kept when the handshake after it fails

    async def connect(self) -> SmtpReply:
        """TCP (and TLS for submissions/465) then the greeting. Raises ServerUnavailable for a 4xx/554
        greeting, ProtocolViolation for anything but 220."""
        reader = await self._open()
        self.greeting = await read_greeting(reader, timeout=self.cfg.timeout, deadline=self._deadline,
                                            transcript=self.transcript)
        return self.greeting

    async def command(self, line: str, *, secret: bool = False) -> SmtpReply:
        reader, writer = self.streams
        with scrubbing_errors(self.cfg.secrets):
            reply = await exchange(reader, writer, line, timeout=self.cfg.timeout, deadline=self._deadline,
                                   transcript=self.transcript, secret=secret)
            if reply.code == 421:
                raise ServerUnavailable(f"server closing the session: {reply}")
        return reply

    async def ehlo(self, name: str | None = None) -> EhloResult:
        """EHLO; the parsed capabilities are kept in ``self.capabilities`` (also after a 5xx, empty)."""
        reply = await self.command(f"EHLO {name or self.cfg.ehlo_name}")
        self.capabilities = EhloResult.from_reply(reply) if reply.code == 250 else \
            EhloResult(reply, "", frozenset(), (), frozenset())
        return self.capabilities

    async def open_secured(self) -> EhloResult:
        """Connect, EHLO, and STARTTLS (with the EHLO again) where a plain-port server offers it: the
        opening every probe that judges the session inside TLS shares. Returns the current capabilities."""
        await self.connect()
        caps = await self.ehlo()
        if caps.starttls and not self.endpoint.implicit_tls:
            await self.starttls()
        return self.capabilities or caps

    async def helo(self, name: str | None = None) -> SmtpReply:
        return await self.command(f"HELO {name or self.cfg.ehlo_name}")

    async def starttls(self, context: ssl.SSLContext | None = None, *, reehlo: bool = True) -> SmtpReply:
        """STARTTLS; on 220 the stream is upgraded (and EHLO sent again if ``reehlo``, as RFC 3207 4.2
        requires before relying on capabilities). Any other reply is returned and nothing changes."""
        reply = self.starttls_reply = await self.command("STARTTLS")
        if reply.code != 220:
            return reply
        await self._upgrade_after_go_ahead(context)
        self.capabilities = None  # RFC 3207 4.2: forget everything learned before TLS
        if reehlo:
            await self.ehlo()
        return reply

    async def auth_plain(self, username: str, password: Secret | str) -> SmtpReply:
        """AUTH PLAIN with an initial response (RFC 4954 4); the transcript shows only 'AUTH PLAIN <redacted>'."""
        token = _b64(f"\0{username}\0{reveal(password)}")
        reply = await self.command(f"AUTH PLAIN {token}")
        if reply.code == 334:  # the server ignored the initial response: cancel rather than resend it
            reply = await self.command("*", secret=True)
        return reply

    async def auth_login(self, username: str, password: Secret | str) -> SmtpReply:
        """AUTH LOGIN (draft-murchison-sasl-login): every client line after the verb is redacted."""
        reply = await self.command("AUTH LOGIN")
        with self.transcript.redacting():
            if reply.code == 334:
                reply = await self.command(_b64(username), secret=True)
            if reply.code == 334:
                reply = await self.command(_b64(reveal(password)), secret=True)
        return reply

    async def mail(self, sender: str, *params: str) -> SmtpReply:
        return await self.command(" ".join((f"MAIL FROM:<{sender}>", *params)))

    async def rcpt(self, recipient: str, *params: str) -> SmtpReply:
        return await self.command(" ".join((f"RCPT TO:<{recipient}>", *params)))

    async def data(self, message: bytes) -> SmtpReply:
        """DATA; on 354 the message goes out CRLF-normalised and dot-stuffed (RFC 5321 4.5.2).
        Returns the 354-refusal or the final reply."""
        reply = await self.command("DATA")
        if reply.code != 354:
            return reply
        lines = message.replace(b"\r\n", b"\n").split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        body = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
        self.transcript.note(f"message of {len(body)} bytes sent")
        return await self.send_raw(body + b".\r\n", what="the message")

    async def rset(self) -> SmtpReply:
        return await self.command("RSET")

    async def noop(self) -> SmtpReply:
        return await self.command("NOOP")

    async def vrfy(self, address: str) -> SmtpReply:
        return await self.command(f"VRFY {address}")

    async def quit(self) -> SmtpReply | None:
        """QUIT and close. A server that hangs up first is fine: the reply is then None."""
        try:
            return await self.command("QUIT")
        except ProbeError:  # the session's findings are already in hand; a lost QUIT reply changes none
            return None
        finally:
            await self.close()

    async def send_raw(self, data: bytes, *, what: str = "raw bytes", expect_reply: bool = True) -> SmtpReply:
        """Deliberately raw bytes (pipelining, injection, bare-LF checks). Logged as client lines;
        reads one reply unless ``expect_reply`` is False (then call ``read_reply`` per reply expected)."""
        _, writer = self.streams
        for line in data.decode("utf-8", "replace").splitlines()[:20]:
            self.transcript.client(line)
        await send(writer, data, timeout=self.cfg.timeout, what=f"sending {what}")
        return await self.read_reply() if expect_reply else SmtpReply(0, None, ())

    async def read_reply(self) -> SmtpReply:
        reader, _ = self.streams
        with scrubbing_errors(self.cfg.secrets):
            return await read_reply(reader, timeout=self.cfg.timeout, deadline=self._deadline,
                                    transcript=self.transcript)

def classify_smtp_auth(reply: SmtpReply | None) -> CleartextAuth:
    if reply is None:
        return CleartextAuth.NOT_TRIED
    if reply.code in (235,):
        return CleartextAuth.ACCEPTED
    if reply.code in (530, 538) or (reply.enhanced or "").startswith("5.7.11"):
        return CleartextAuth.REFUSED_FOR_TLS
    if reply.code in (535, 334):
        return CleartextAuth.CREDENTIALS_CHECKED
    return CleartextAuth.REFUSED


async def _auth_in_clear(smtp: SmtpSession, mechanism: str) -> tuple[SmtpReply, bool]:
    """One AUTH exchange with throwaway credentials before TLS. Returns the reply that tells how the
    server treated them, and whether the session is back in a known state: a server still challenging
    after our last line gets "*", and only the 501 that RFC 4954 4 prescribes ends the exchange for sure."""
    user, password = throwaway_credentials()
    plain = _b64(f"\0{user}\0{password}")
    first, answers = (f"AUTH PLAIN {plain}", ()) if mechanism == "PLAIN" else ("AUTH LOGIN", (_b64(user), _b64(password)))
    reply = await smtp.command(first)
    with smtp.transcript.redacting():
        for answer in answers:
            if reply.code != 334:
                break
            reply = await smtp.command(answer, secret=True)
        if reply.code != 334:
            return reply, True
        cancelled = await smtp.command("*", secret=True)
    return reply, cancelled.code == 501


_SERVER_ENDED = (Unreachable, ProbeTimeout, ServerUnavailable, ProtocolViolation)
# Tried before TLS whether advertised or not: a server may hide AUTH from EHLO and still take it in clear.
CLEARTEXT_MECHANISMS = ("PLAIN", "LOGIN")
_EXPOSURE = (CleartextAuth.REFUSED_FOR_TLS, CleartextAuth.REFUSED, CleartextAuth.CREDENTIALS_CHECKED,
             CleartextAuth.ACCEPTED)


def _exposure(reply: SmtpReply) -> int:
    return _EXPOSURE.index(classify_smtp_auth(reply))


async def _worst_auth_in_clear(smtp: SmtpSession) -> tuple[str, SmtpReply, bool]:
    """Each of CLEARTEXT_MECHANISMS while the session stays in a known state and unauthenticated; the
    mechanism and reply that exposed credentials most, and whether the session is still usable."""
    worst: tuple[str, SmtpReply] | None = None
    settled = True
    for mechanism in CLEARTEXT_MECHANISMS:
        if worst is None:
            reply, settled = await _auth_in_clear(smtp, mechanism)
        else:
            try:
                reply, settled = await _auth_in_clear(smtp, mechanism)
            except _SERVER_ENDED as exc:  # e.g. a hang-up after one failed AUTH: what the first showed stands
                smtp.transcript.note(f"AUTH {mechanism} before TLS got no answer ({exc})")
                settled = False
                break
        if worst is None or _exposure(reply) > _exposure(worst[1]):
            worst = (mechanism, reply)
        if not settled or reply.code == 235:
            break
    assert worst is not None
    return worst[0], worst[1], settled


@dataclass(frozen=True)
class SmtpCapabilities:
    greeting: SmtpReply
    pre_tls: EhloResult | None          # None on implicit-TLS endpoints
    starttls_offered: bool
    starttls_reply: SmtpReply | None    # None if not offered or implicit TLS
    tls: TlsInfo | None                 # None if TLS could not be established
    tls_error: str | None               # why the handshake after a 220 to STARTTLS failed
    post_tls: EhloResult | None
    auth_before_tls: SmtpReply | None   # the most telling reply to AUTH with throwaway credentials before TLS
    cleartext_auth: CleartextAuth
    auth_before_tls_mechanism: str | None = None   # the mechanism that drew it

    @property
    def auth_mechanisms_before_tls(self) -> frozenset[str]:
        return self.pre_tls.auth_mechanisms if self.pre_tls else frozenset()

    @property
    def auth_mechanisms_after_tls(self) -> frozenset[str]:
        return self.post_tls.auth_mechanisms if self.post_tls else frozenset()


async def probe_smtp_capabilities(endpoint: Endpoint, cfg: ProbeConfig, *, try_auth_before_tls: bool = True,
                                  ) -> Attempt[SmtpCapabilities]:
    """Greeting, EHLO; before TLS optionally AUTH PLAIN with random throwaway credentials (never a real
    password); STARTTLS and EHLO again. A server refusing STARTTLS still yields a result (with
    ``tls=None``): the checks decide what that means."""
    transcript = cfg.transcript(endpoint)

    async def run() -> SmtpCapabilities:
        async with contextlib.AsyncExitStack() as sessions:
            smtp = await sessions.enter_async_context(SmtpSession(endpoint, cfg, transcript))
            greeting = await smtp.connect()
            first = await smtp.ehlo()
            if endpoint.implicit_tls:
                return SmtpCapabilities(greeting, None, False, None, smtp.tls, None, first, None,
                                        CleartextAuth.NOT_TRIED)
            auth_reply, mechanism, settled = None, None, True
            if try_auth_before_tls and (first.auth_mechanisms or endpoint.service is Service.SUBMISSION):
                mechanism, auth_reply, settled = await _worst_auth_in_clear(smtp)
                if auth_reply.code == 235:  # authenticated as nobody: the session state is unusable
                    return SmtpCapabilities(greeting, first, first.starttls, None, None, None, None, auth_reply,
                                            CleartextAuth.ACCEPTED, mechanism)
            if first.starttls and not settled:
                transcript.note("the AUTH exchange did not end on '*' (no 501): STARTTLS on a fresh connection")
                await smtp.quit()
                smtp = await sessions.enter_async_context(SmtpSession(endpoint, cfg, transcript))
                await smtp.connect()
                await smtp.ehlo()
            starttls_reply, tls_error = None, None
            if first.starttls:
                starttls_reply, tls_error = await answer_and_tls_error(smtp.starttls(), lambda: smtp.starttls_reply)
            if tls_error is None:
                await smtp.quit()
            return SmtpCapabilities(greeting, first, first.starttls, starttls_reply, smtp.tls, tls_error,
                                    smtp.capabilities if smtp.tls else None, auth_reply,
                                    classify_smtp_auth(auth_reply), mechanism)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)
