"""An asyncio IMAP client session with a transcript, and the IMAP capability probe.

Hand-written over ``imap.wire`` because imaplib/imapclient block and hide the exchange; this session
only does what the conformance checks need before and around authentication. Mailbox reading for
delivery checks is imapclient's job.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import ssl
from dataclasses import dataclass

from conformance.probes.imap import wire as imap_wire
from conformance.probes.imap.wire import ImapResponse, StatusLine
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
    ProbeTimeout,
    ProtocolViolation,
    ServerUnavailable,
    Transcript,
    Unreachable,
    attempt,
)
from conformance.probes.wire.session import StreamSession, answer_and_tls_error, reveal
from conformance.probes.wire.streams import read_line, send
from conformance.probes.wire.upgrade import TlsInfo
from conformance.target import Endpoint, Secret

__all__ = ["ImapCapabilities", "ImapResponse", "ImapSession", "classify_imap_login", "probe_imap_capabilities"]


class ImapSession(StreamSession):
    """One IMAP connection; every command gets a unique tag. Commands return the tagged response
    whatever its status (the caller judges). Use as ``async with ImapSession(endpoint, cfg) as imap:``."""

    protocol = "IMAP"

    def __init__(self, endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript | None = None, *,
                 tls_context: ssl.SSLContext | None = None) -> None:
        super().__init__(endpoint, cfg, transcript, tls_context=tls_context)
        self.greeting: StatusLine | None = None
        self.capabilities: frozenset[str] | None = None
        self.starttls_response: ImapResponse | None = None  # kept when the handshake after it fails
        self._tags = (f"M{n}" for n in itertools.count(1))

    async def connect(self) -> StatusLine:
        """TCP (and TLS for imaps) then the greeting: OK or PREAUTH returned; BYE raises ServerUnavailable."""
        reader = await self._open()
        self.greeting = await imap_wire.read_greeting(reader, timeout=self.cfg.timeout,
                                                      deadline=self._deadline, transcript=self.transcript)
        if self.greeting.status == "PREAUTH":
            self.transcript.note("server greeted with PREAUTH: the session is already authenticated")
        self.capabilities = imap_wire.capabilities_in((), self.greeting.code)
        return self.greeting

    async def command(self, line: str, *, secret: bool = False) -> ImapResponse:
        reader, writer = self.streams
        with scrubbing_errors(self.cfg.secrets):
            response = await imap_wire.command(reader, writer, next(self._tags), line, timeout=self.cfg.timeout,
                                               deadline=self._deadline, transcript=self.transcript, secret=secret)
        caps = imap_wire.capabilities_in(response.untagged, response.code)
        if caps is not None:
            self.capabilities = caps
        return response

    async def capability(self) -> frozenset[str]:
        response = await self.command("CAPABILITY")
        if not response.ok:
            raise ProtocolViolation(f"CAPABILITY failed: {response}")
        return self.capabilities or frozenset()

    async def starttls(self, context: ssl.SSLContext | None = None) -> ImapResponse:
        """STARTTLS; on OK the stream is upgraded and CAPABILITY fetched again (RFC 9051 6.2.1: the
        client must discard what it learned before TLS). Any other response is returned unchanged."""
        response = self.starttls_response = await self.command("STARTTLS")
        if not response.ok:
            return response
        await self._upgrade_after_go_ahead(context)
        self.capabilities = None
        await self.capability()
        return response

    async def login(self, username: str, password: Secret | str) -> ImapResponse:
        """LOGIN with quoted strings; the transcript shows only 'LOGIN <redacted>'."""
        try:
            line = f"LOGIN {imap_wire.quote_string(username)} {imap_wire.quote_string(reveal(password))}"
        except ValueError:
            raise LocalError("username or password contains CR/LF and cannot be sent with LOGIN") from None
        return await self.command(line)

    async def authenticate_plain(self, username: str, password: Secret | str) -> ImapResponse:
        """AUTHENTICATE PLAIN, with SASL-IR (RFC 4959) when offered, else after the '+' continuation."""
        token = base64.b64encode(f"\0{username}\0{reveal(password)}".encode()).decode("ascii")
        if "SASL-IR" in (self.capabilities or frozenset()):
            return await self.command(f"AUTHENTICATE PLAIN {token}")
        with scrubbing_errors(self.cfg.secrets + (token,)):
            return await self._authenticate_after_continuation(token)

    async def _authenticate_after_continuation(self, token: str) -> ImapResponse:
        reader, writer = self.streams
        tag = next(self._tags)
        self.transcript.client(f"{tag} AUTHENTICATE PLAIN")
        await send(writer, f"{tag} AUTHENTICATE PLAIN\r\n".encode(), timeout=self.cfg.timeout,
                   what="sending AUTHENTICATE")
        line = await read_line(reader, timeout=self.cfg.timeout, deadline=self._deadline,
                               what="waiting for the AUTHENTICATE continuation")
        self.transcript.server(line.decode("utf-8", "replace"))
        if line.startswith(b"+"):
            with self.transcript.redacting():
                self.transcript.client(token)
                await send(writer, token.encode() + b"\r\n", timeout=self.cfg.timeout,
                           what="sending the SASL response")
            return await imap_wire.read_response(reader, tag, timeout=self.cfg.timeout, deadline=self._deadline,
                                                 transcript=self.transcript, what="reading the response to AUTHENTICATE")
        status = imap_wire.parse_status(line.decode("utf-8", "replace").partition(" ")[2].rstrip("\r\n"))
        if not line.startswith(tag.encode() + b" ") or status is None:
            raise ProtocolViolation("unexpected answer to AUTHENTICATE PLAIN")
        return ImapResponse(tag, status.status, status.code, status.text)

    async def noop(self) -> ImapResponse:
        return await self.command("NOOP")

    async def logout(self) -> ImapResponse | None:
        """LOGOUT and close; a server that hangs up first is fine (None)."""
        try:
            return await self.command("LOGOUT")
        except ProbeError:
            return None
        finally:
            await self.close()

def classify_imap_login(response: ImapResponse | None, logindisabled: bool) -> CleartextAuth:
    """How the server treated LOGIN with throwaway credentials before TLS. BAD or NO [PRIVACYREQUIRED]
    (RFC 9051 7.1) is the refusal for TLS reasons; NO [AUTHENTICATIONFAILED] means it checked them."""
    if response is None:
        return CleartextAuth.NOT_TRIED
    code = (response.code or "").split(" ", 1)[0].upper()
    if response.ok:
        return CleartextAuth.ACCEPTED
    if code == "PRIVACYREQUIRED" or response.status == "BAD" or (logindisabled and code != "AUTHENTICATIONFAILED"):
        return CleartextAuth.REFUSED_FOR_TLS
    return CleartextAuth.CREDENTIALS_CHECKED


def classify_imap_authenticate(response: ImapResponse | None, asked_twice: bool) -> CleartextAuth:
    """How the server treated AUTHENTICATE PLAIN with throwaway credentials before TLS. LOGINDISABLED
    says nothing about SASL (RFC 9051 7.2.2), so only the answer counts: NO [PRIVACYREQUIRED] or BAD is the
    refusal for TLS reasons; a server that asked for more after reading the credentials has read them."""
    if response is None:
        return CleartextAuth.NOT_TRIED
    code = (response.code or "").split(" ", 1)[0].upper()
    if response.ok:
        return CleartextAuth.ACCEPTED
    if asked_twice or code == "AUTHENTICATIONFAILED":
        return CleartextAuth.CREDENTIALS_CHECKED
    if code == "PRIVACYREQUIRED" or response.status == "BAD":
        return CleartextAuth.REFUSED_FOR_TLS
    return CleartextAuth.REFUSED


async def _authenticate_in_clear(imap: ImapSession) -> tuple[ImapResponse | None, CleartextAuth, bool]:
    """AUTHENTICATE PLAIN with throwaway credentials before TLS (SASL-IR when advertised). Returns the
    tagged answer (None: the exchange never ended), its classification, and whether the session is back
    in a known state: a server that keeps sending "+" gets "*", which RFC 9051 6.2.2 answers with BAD."""
    _, writer = imap.streams
    user, password = throwaway_credentials()
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
    tag = next(imap._tags)
    sent_token = "SASL-IR" in (imap.capabilities or frozenset())
    imap.transcript.client(f"{tag} AUTHENTICATE PLAIN" + (" <redacted>" if sent_token else ""))
    await send(writer, f"{tag} AUTHENTICATE PLAIN{' ' + token if sent_token else ''}\r\n".encode(),
               timeout=imap.cfg.timeout, what="sending AUTHENTICATE")
    asked_twice = cancelled = False
    while True:
        head, rest = await _next_tagged_or_continuation(imap)
        if head != "+":
            status = imap_wire.parse_status(rest)
            if head != tag or status is None:
                raise ProtocolViolation(f"unexpected answer to AUTHENTICATE PLAIN: {head} {rest}")
            response = ImapResponse(tag, status.status, status.code, status.text)
            return response, classify_imap_authenticate(response, asked_twice), True
        if cancelled:
            return None, CleartextAuth.CREDENTIALS_CHECKED, False
        asked_twice, cancelled = sent_token, sent_token
        imap.transcript.client("*" if sent_token else "<redacted>")
        await send(writer, ("*" if sent_token else token).encode() + b"\r\n", timeout=imap.cfg.timeout,
                   what="answering AUTHENTICATE")
        sent_token = True


async def _next_tagged_or_continuation(imap: ImapSession) -> tuple[str, str]:
    """The head ("+" or a tag) and the rest of the next line that is not an untagged response."""
    reader, _ = imap.streams
    for _ in range(imap_wire.MAX_UNTAGGED):
        line = await imap_wire.read_logical_line(reader, timeout=imap.cfg.timeout, deadline=imap._deadline,
                                                 transcript=imap.transcript,
                                                 what="reading the answer to AUTHENTICATE PLAIN")
        head, _, rest = line.partition(" ")
        if head != "*":
            return head, rest
    raise ProtocolViolation(f"more than {imap_wire.MAX_UNTAGGED} untagged responses to AUTHENTICATE PLAIN")


@dataclass(frozen=True)
class ImapCapabilities:
    greeting: StatusLine
    pre_tls: frozenset[str] | None         # None on imaps
    starttls_offered: bool
    starttls_response: ImapResponse | None
    tls: TlsInfo | None
    tls_error: str | None
    post_tls: frozenset[str] | None
    login_before_tls: ImapResponse | None  # LOGIN with a random user and throwaway password
    cleartext_login: CleartextAuth
    authenticate_before_tls: ImapResponse | None = None   # AUTHENTICATE PLAIN, likewise
    cleartext_authenticate: CleartextAuth = CleartextAuth.NOT_TRIED

    @property
    def logindisabled_before_tls(self) -> bool:
        return "LOGINDISABLED" in (self.pre_tls or frozenset())

    @property
    def preauth(self) -> bool:
        return self.greeting.status == "PREAUTH"


async def probe_imap_capabilities(endpoint: Endpoint, cfg: ProbeConfig, *, try_login_before_tls: bool = True,
                                  ) -> Attempt[ImapCapabilities]:
    """Greeting and CAPABILITY; before TLS optionally LOGIN with a random user and a throwaway password
    (never a real password in cleartext); STARTTLS and CAPABILITY again."""
    transcript = cfg.transcript(endpoint)

    async def run() -> ImapCapabilities:
        async with contextlib.AsyncExitStack() as sessions:
            imap = await sessions.enter_async_context(ImapSession(endpoint, cfg, transcript))
            greeting = await imap.connect()
            caps = imap.capabilities or await imap.capability()
            if endpoint.implicit_tls:
                return ImapCapabilities(greeting, None, False, None, imap.tls, None, caps, None,
                                        CleartextAuth.NOT_TRIED)
            login, sasl, sasl_verdict, settled = None, None, CleartextAuth.NOT_TRIED, True
            if try_login_before_tls and greeting.status != "PREAUTH":
                login = await imap.login(*throwaway_credentials())
            verdict = classify_imap_login(login, "LOGINDISABLED" in caps)
            if login is not None and verdict is not CleartextAuth.ACCEPTED:
                try:
                    sasl, sasl_verdict, settled = await _authenticate_in_clear(imap)
                except (Unreachable, ProbeTimeout, ServerUnavailable, ProtocolViolation) as exc:
                    transcript.note(f"AUTHENTICATE PLAIN before TLS got no answer ({exc})")
                    settled = False
            authenticated = CleartextAuth.ACCEPTED in (verdict, sasl_verdict)
            if "STARTTLS" in caps and not authenticated and not settled:
                transcript.note("AUTHENTICATE did not end on '*' (no BAD): STARTTLS on a fresh connection")
                await imap.logout()
                imap = await sessions.enter_async_context(ImapSession(endpoint, cfg, transcript))
                await imap.connect()
            starttls_response, tls_error = None, None
            if "STARTTLS" in caps and not authenticated:
                starttls_response, tls_error = await answer_and_tls_error(imap.starttls(),
                                                                          lambda: imap.starttls_response)
            if tls_error is None:
                await imap.logout()
            return ImapCapabilities(greeting, caps, "STARTTLS" in caps, starttls_response, imap.tls, tls_error,
                                    imap.capabilities if imap.tls else None, login, verdict, sasl, sasl_verdict)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)
