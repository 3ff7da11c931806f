"""The gateway's SMTP services (mx, submission, submissions) on aiosmtpd.

aiosmtpd runs the protocol loop; the gateway's policy and its flaws are handler hooks (RCPT, MAIL,
DATA, VRFY, EHLO) and a few small overrides of ``SMTP`` switched by the typed ``Flaws``. STARTTLS is
aiosmtpd's own: it resets the session and discards input pipelined behind STARTTLS (RFC 3207 4.2,
CVE-2011-0411); the flaws put that state back.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import ssl
import warnings
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException

from conformance.reference import oauth
from conformance.reference import statuscodes as S
from conformance.reference.lockout import Decision, Verdict
from conformance.reference.outage import Component
from conformance.reference.runtime import DOMAIN, NodeRuntime, reset_transport
from conformance.reference.sasl import CramMd5, Proof, ScramSha256

RELAY_FORM_CHARS = ("%", "!", "@", '"', ":")   # classic relay tricks hidden in a local part
# aiosmtpd's own fixed replies, given the enhanced status codes (RFC 3463) of the gateway's catalogue
AIOSMTPD_REPLIES = {
    "530 Must issue a STARTTLS command first": S.S530_STARTTLS_FIRST,
    "220 Ready to start TLS": S.S220_READY_TLS,
    "221 Bye": S.S221_BYE,
    "250 OK": S.S250_OK,
}


class _QuietAiosmtpdNoise(logging.Filter):
    """Two warnings aiosmtpd logs on every session that are not about the session: "auth_required ==
    True but auth_require_tls == False" (on submissions the transport is TLS already, which aiosmtpd
    cannot know), and "Session.login_data is deprecated" (aiosmtpd setting its own deprecated field)."""

    NOISE = ("auth_require_tls == False", "Session.login_data is deprecated")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


if not any(isinstance(f, _QuietAiosmtpdNoise) for f in logging.getLogger("mail.log").filters):
    logging.getLogger("mail.log").addFilter(_QuietAiosmtpdNoise())


class _BareLfReader:
    """bare_lf_end_of_data: a line ends at any LF, so aiosmtpd's DATA loop sees <LF>.<LF> as <CRLF>.<CRLF>."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        line = await self._reader.readuntil(b"\n")
        return line if line.endswith(b"\r\n") else line[:-1] + b"\r\n"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


class GatewaySMTP(SMTP):
    """One SMTP session of one service on one node."""

    def __init__(self, runtime: NodeRuntime, service: str, *, starttls: ssl.SSLContext | None,
                 implicit_tls: bool) -> None:
        flaws = runtime.flaws
        self.runtime, self.service, self.implicit_tls = runtime, service, implicit_tls
        submission = service in ("submission", "submissions")
        cleartext_submission = service == "submission" and (flaws.auth_before_tls or flaws.hidden_auth_before_tls)
        excluded = set() if flaws.anonymous_login and submission else {"ANONYMOUS"}
        with warnings.catch_warnings():
            # aiosmtpd warns about "AUTH required without TLS required": on submissions the transport is
            # TLS already (implicit), which aiosmtpd cannot know
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            super().__init__(
                SmtpPolicy(runtime, service), hostname=runtime.host, ident="mailconform reference ESMTP",
                tls_context=starttls,
                require_starttls=service == "submission" and not cleartext_submission,
                auth_required=submission and not flaws.unauth_submission,
                auth_require_tls=not (implicit_tls or cleartext_submission),
                auth_exclude_mechanism=excluded, authenticator=self._authenticate_login,
                timeout=runtime.settings.idle_timeout)
        self._unknown_rcpts = 0
        self._close_after_reply = False
        self._reply_delay = 0.0
        self._go_ahead_extra: bytes | None = None
        self._pipelined = b""
        self._auth_user: str | None = None

    # --- session lifecycle -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        after_starttls = self._original_transport is not None and self.transport is not None
        before = self.session
        super().connection_made(transport)
        if not after_starttls:
            self.runtime.sessions.add(self)
            return
        assert self.session is not None
        if self.runtime.flaws.no_state_reset and before is not None:
            self.session.host_name = before.host_name
            self.session.extended_smtp = before.extended_smtp
        if self.runtime.flaws.starttls_injection and self._pipelined:
            self._reader.feed_data(self._pipelined)  # the flaw: what came with STARTTLS is kept

    def connection_lost(self, error: Exception | None) -> None:
        self.runtime.sessions.discard(self)
        if self._auth_user is not None:
            self.runtime.auth.session_ended(self._auth_user)
            self._auth_user = None
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        super().eof_received()
        # always close on EOF: aiosmtpd returns True (keep half-open) for a session whose STARTTLS
        # handshake never completed, which asyncio's TLS layer logs as a warning
        return False

    def shutdown(self, reset: bool) -> None:
        """The node goes down: 421 and an orderly close, or (reset_on_shutdown) a TCP reset."""
        if self.transport is None:
            return
        if reset:
            reset_transport(self._original_transport or self.transport)
            return
        transport = self.transport
        if transport.is_closing():
            return
        try:
            transport.write(S.S421_NODE_DOWN.encode() + b"\r\n")  # type: ignore[attr-defined]
        except (AttributeError, RuntimeError, OSError):
            pass  # asyncio tears the TLS layer down under us when the client left at the same moment
        transport.close()

    async def _handle_client(self) -> None:
        if self.runtime.down(Component.NODE):
            if self.runtime.flaws.reset_on_shutdown:
                reset_transport(self._original_transport or self.transport)
                return
            await self.push(S.S421_NODE_DOWN)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = AIOSMTPD_REPLIES.get(status, status)
        if self._reply_delay:  # auth_timing_oracle: the delay sits before the reply, where clients time it
            delay, self._reply_delay = self._reply_delay, 0.0
            await asyncio.sleep(delay)
        if self._go_ahead_extra is not None:  # starttls_response_injection
            # in the same write as the go-ahead, so the extra line always lands before the ClientHello
            # (a second write could race the client's handshake and read as a TLS error instead)
            extra, self._go_ahead_extra = self._go_ahead_extra, None
            self._writer.write(f"{status}\r\n".encode("ascii") + extra)
            await self._writer.drain()
        else:
            await super().push(status)
        if self._close_after_reply and self.transport is not None:
            self.transport.close()

    # --- STARTTLS ---------------------------------------------------------------------------------------
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_protocol is not None or self.implicit_tls:
            await self.push(S.S503_TLS_ACTIVE)
            return
        flaws = self.runtime.flaws
        if flaws.starttls_injection:
            self._pipelined = bytes(self._reader._buffer)  # type: ignore[attr-defined]
        if flaws.starttls_response_injection and self.service in ("mx",):
            self._go_ahead_extra = b"250 2.0.0 sent after the STARTTLS go-ahead\r\n"
        await super().smtp_STARTTLS(arg)

    # --- AUTH ----------------------------------------------------------------------------------------------
    async def smtp_AUTH(self, arg: str) -> None:
        if self.service == "mx":
            await self.push(S.S502_AUTH_UNAVAILABLE)
            return
        if self.hides_auth and not arg.upper().startswith("LOGIN"):  # the flaw lets only LOGIN through
            await self.push(S.S530_STARTTLS_FIRST)
            return
        await super().smtp_AUTH(arg)

    @property
    def hides_auth(self) -> bool:
        """hidden_auth_before_tls: AUTH missing from EHLO before STARTTLS, but AUTH LOGIN answered there."""
        return (self.runtime.flaws.hidden_auth_before_tls and self.service == "submission"
                and self._tls_protocol is None)

    def _authenticate_login(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                            data: Any) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False, message=S.S535_AUTH_FAILED)
        return self._decide(data.login.decode("utf-8", "replace"), data.password.decode("utf-8", "replace"))

    def _decide(self, username: str, password: str, proof: Proof | None = None) -> AuthResult:
        """The engine's verdict on one login of any mechanism, as aiosmtpd's AuthResult."""
        decision = self.runtime.auth.login("smtp", username, password, proof=proof,
                                           backend_up=not self.runtime.down(Component.AUTH))
        if decision.verdict is Verdict.ACCEPTED:
            self._auth_user = decision.username
            self.runtime.auth.session_started(decision.username)
            return AuthResult(success=True, auth_data=LoginPassword(username.encode(), b""),
                              message=S.S235_AUTH_OK)
        return AuthResult(success=False, handled=False, message=self._failure_reply(decision))

    def _failure_reply(self, decision: Decision) -> str:
        flaws = self.runtime.flaws
        if decision.verdict is Verdict.LOCKED and not flaws.locked_says_wrong_password:
            return S.S454_TEMP_AUTH_FAIL
        if decision.verdict is Verdict.UNAVAILABLE and not flaws.auth_down_says_wrong_password:
            return S.S454_TEMP_AUTH_FAIL
        if flaws.auth_user_enumeration and not decision.known_user:
            return S.S535_NO_SUCH_USER
        if flaws.auth_timing_oracle and decision.known_user and decision.verdict is Verdict.REJECTED:
            self._reply_delay = self.runtime.settings.timing_oracle_delay
        return S.S535_AUTH_FAILED

    async def auth_OAUTHBEARER(self, _: Any, args: list[str]) -> AuthResult:
        """RFC 7628: a bearer token in the initial response; a refusal sends the 3.2.2 error first."""
        return await self._oauth("OAUTHBEARER", args)

    async def auth_XOAUTH2(self, _: Any, args: list[str]) -> AuthResult:
        return await self._oauth("XOAUTH2", args)

    async def _oauth(self, mechanism: str, args: list[str]) -> AuthResult:
        blob = _b64decode(args[1]) if len(args) > 1 else await self.challenge_auth("")
        parsed = oauth.parse(mechanism, blob) if isinstance(blob, bytes) else None
        if parsed is None:
            return AuthResult(success=False, handled=False, message=S.S501_AUTH_SYNTAX)
        decision = self.runtime.auth.login_token(*parsed, backend_up=not self.runtime.down(Component.AUTH))
        if decision.verdict is Verdict.ACCEPTED:
            self._auth_user = decision.username
            self.runtime.auth.session_started(decision.username)
            return AuthResult(success=True, auth_data=LoginPassword(parsed[0].encode(), b""), message=S.S235_AUTH_OK)
        if decision.verdict is Verdict.REJECTED:
            await self.challenge_auth(oauth.error_challenge(self.runtime.flaws, decision.known_user))
        return AuthResult(success=False, handled=False, message=self._failure_reply(decision))

    async def auth_ANONYMOUS(self, _: Any, args: list[str]) -> AuthResult:
        """anonymous_login: RFC 4505 ANONYMOUS, accepted whatever the trace string."""
        if len(args) == 1:
            await self.challenge_auth("")
        return AuthResult(success=True, auth_data=LoginPassword(b"anonymous", b""), message=S.S235_AUTH_OK)

    async def auth_CRAM__MD5(self, _: Any, args: list[str]) -> AuthResult:
        """RFC 2195; broken_mechanism: advertised, challenges, and never succeeds."""
        exchange = CramMd5(self.runtime.host)
        response = await self.challenge_auth(exchange.challenge)
        if not isinstance(response, bytes):
            return AuthResult(success=False, handled=True)  # "*": aiosmtpd has answered 501
        parsed = exchange.answer(response)
        if parsed is None or self.runtime.flaws.broken_mechanism:
            return AuthResult(success=False, handled=False, message=S.S535_AUTH_FAILED)
        user, proof = parsed
        return self._decide(user, response.decode("utf-8", "replace"), proof)

    async def auth_SCRAM__SHA__256(self, _: Any, args: list[str]) -> AuthResult:
        """RFC 7677 (RFC 4954 4: the server-final message goes out as a last 334 challenge)."""
        exchange = ScramSha256(self.runtime.auth)
        client_first: bytes | None = _b64decode(args[1]) if len(args) > 1 else None
        if len(args) == 1:
            asked = await self.challenge_auth("")
            if not isinstance(asked, bytes):
                return AuthResult(success=False, handled=True)  # "*": aiosmtpd has answered 501
            client_first = asked
        server_first = exchange.first(client_first) if client_first is not None else None
        if server_first is None:
            return AuthResult(success=False, handled=False, message=S.S501_AUTH_SYNTAX)
        client_final = await self.challenge_auth(server_first)
        if not isinstance(client_final, bytes):
            return AuthResult(success=False, handled=True)
        ok, server_final = exchange.final(client_final)
        result = self._decide(exchange.username, client_final.decode("utf-8", "replace"), lambda _: ok)
        if result.success and not isinstance(await self.challenge_auth(server_final), bytes):
            return AuthResult(success=False, handled=True)
        return result

    # --- DATA --------------------------------------------------------------------------------------------
    async def smtp_DATA(self, arg: str) -> None:
        if not self.runtime.flaws.bare_lf_end_of_data:
            await super().smtp_DATA(arg)
            return
        reader = self._reader
        self._reader = _BareLfReader(reader)  # type: ignore[assignment]
        try:
            await super().smtp_DATA(arg)
        finally:
            self._reader = reader

    def cut_after_reply(self) -> None:
        self._close_after_reply = True


class SmtpPolicy:
    """aiosmtpd handler hooks: the gateway's mail policy for one service of one node."""

    def __init__(self, runtime: NodeRuntime, service: str) -> None:
        self.runtime, self.service = runtime, service

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname  # the 5-argument hook takes over this part of aiosmtpd's EHLO
        assert isinstance(server, GatewaySMTP)
        hidden = self.service == "mx" or server.hides_auth
        lines = [r for r in responses if not (hidden and r[4:].startswith("AUTH"))]
        if (self.runtime.flaws.starttls_offered_twice and server._tls_protocol is not None
                and self.service in ("mx", "submission")):
            lines.insert(1, "250-STARTTLS")
        return lines

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        if session.authenticated and not self.runtime.flaws.sender_spoofing:
            data = session.auth_data
            own = data.login.decode("utf-8", "replace") if isinstance(data, LoginPassword) else ""
            if not hmac.compare_digest(own.lower().encode(), address.lower().encode()):
                return S.S553_NOT_OWNER
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return S.S250_SENDER_OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        flaws = self.runtime.flaws
        local, _, domain = address.rpartition("@")
        accept = S.S250_RCPT_OK
        if any(c in local for c in RELAY_FORM_CHARS):
            percent_only = "%" in local and not any(c in local for c in RELAY_FORM_CHARS if c != "%")
            if not (flaws.percent_hack_relay and percent_only and self.service == "mx"):
                return S.S554_RELAY_DENIED
        elif domain.lower() != DOMAIN:
            relay_ok = (session.authenticated or (flaws.open_relay and self.service == "mx")
                        or (flaws.unauth_submission and self.service != "mx"))
            if not relay_ok:
                return S.S554_RELAY_DENIED
        elif self.runtime.down(Component.DIRECTORY):
            return S.S550_NO_SUCH_USER if flaws.directory_down_550 else S.S451_BACKEND_DOWN
        elif not self.runtime.store.is_local(address):
            server_ = server
            assert isinstance(server_, GatewaySMTP)
            server_._unknown_rcpts += 1
            if server_._unknown_rcpts > self.runtime.settings.unknown_rcpt_limit and not flaws.unlimited_rcpt:
                server_.cut_after_reply()
                return S.S421_TOO_MANY_UNKNOWN
            return S.S550_NO_SUCH_USER
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return accept

    async def handle_VRFY(self, server: SMTP, session: Session, envelope: Envelope, address: str) -> str:
        if self.runtime.flaws.vrfy_enabled:
            return (S.S250_VRFY_USER.format(address=address) if self.runtime.store.is_local(address)
                    else S.S550_NO_SUCH_USER)
        return S.S252_CANNOT_VRFY

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        runtime, flaws = self.runtime, self.runtime.flaws
        message = envelope.original_content or b""
        if runtime.down(Component.DELIVERY):
            if flaws.permfail_during_outage:
                return S.S554_PERMFAIL
            if flaws.lose_mail_during_outage:
                return S.S250_QUEUED  # the flaw: accepted, then dropped
            if flaws.duplicate_after_recovery:
                runtime.held.append((list(envelope.rcpt_tos), message))  # delivered twice on recovery
                return S.S250_QUEUED
            return S.S451_BACKEND_DOWN
        if runtime.down(Component.STALL) and flaws.slow_data_reply:
            await asyncio.sleep(runtime.settings.stall_delay)
        # good behaviour while stalled: the message is queued at once and the reply is not held back
        remote = [r for r in envelope.rcpt_tos if not runtime.store.is_local(r)]
        if remote and runtime.sender is not None and session.authenticated:
            runtime.sender.submit(str(envelope.mail_from or ""), remote, message)
        runtime.store.deliver(list(envelope.rcpt_tos), message)
        return S.S250_QUEUED

    async def handle_exception(self, error: Exception) -> str:
        # a failed STARTTLS handshake or a vanished client is the client's doing, not a gateway bug
        if not isinstance(error, (TLSSetupException, OSError, asyncio.IncompleteReadError)):
            self.runtime.errors.add(error)
        return S.S451_INTERNAL

