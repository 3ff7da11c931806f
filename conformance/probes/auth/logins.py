"""One authentication attempt with real (or deliberately wrong) credentials, over TLS only.

The building block of authentication, lockout and failover checks. Safety rails: a password is
sent only inside TLS (STARTTLS first where the service needs it), and by default only to a server
whose certificate verifies for the endpoint's host name, so a man in the middle never receives it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from conformance.probes.auth.mechanisms import responder
from conformance.probes.imap.session import ImapSession
from conformance.probes.pop3.session import Pop3Session
from conformance.probes.smtp.session import SmtpSession
from conformance.probes.starttls.opening import StartTlsNotOffered, StartTlsRefused
from conformance.probes.tls.handshake import judge
from conformance.probes.wire.config import ProbeConfig, scrubbed
from conformance.probes.wire.outcome import Attempt, LocalError, ServerUnavailable, Transcript, attempt
from conformance.probes.wire.upgrade import TlsInfo
from conformance.target import Endpoint, Secret


class LoginOutcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"        # 535 / NO [AUTHENTICATIONFAILED]: wrong credentials (or a silent lock)
    TEMPORARY = "temporary"      # 4xx / 421 / NO [UNAVAILABLE]: throttled, temporarily locked, backend down
    REFUSED = "refused"          # any other refusal (mechanism not offered, policy)


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    reply: str                   # the server's own words
    mechanism: str
    tls: TlsInfo | None
    # The answer without its free text ("535 5.7.8", "NO [AUTHENTICATIONFAILED]"): what a client acts on,
    # and what lockout/enumeration checks compare between accounts.
    code: str = ""
    # Seconds from sending the credentials to the final answer (not connect or TLS): throttling shows here.
    elapsed: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.outcome is LoginOutcome.ACCEPTED


def classify_smtp(code: int) -> LoginOutcome:
    if code == 235:
        return LoginOutcome.ACCEPTED
    if code == 535:
        return LoginOutcome.REJECTED
    if 400 <= code < 500:
        return LoginOutcome.TEMPORARY
    return LoginOutcome.REFUSED


def classify_imap(status: str, code: str | None) -> LoginOutcome:
    first = (code or "").split(" ", 1)[0].upper()
    if status == "OK":
        return LoginOutcome.ACCEPTED
    if first in ("UNAVAILABLE", "LIMIT", "INUSE"):  # RFC 5530 response codes for "not now"
        return LoginOutcome.TEMPORARY
    if status == "NO":
        return LoginOutcome.REJECTED
    return LoginOutcome.REFUSED


async def probe_login(endpoint: Endpoint, cfg: ProbeConfig, username: str, password: Secret | str, *,
                      mechanism: str = "PLAIN", require_verified_tls: bool = True,
                      ready: Callable[[], Awaitable[None]] | None = None) -> Attempt[LoginResult]:
    """One login over TLS. mechanism: SMTP 'PLAIN' or 'LOGIN'; IMAP 'PLAIN' (AUTHENTICATE) or 'LOGIN'.
    An endpoint without working TLS, or (with ``require_verified_tls``) whose certificate does not
    verify, gets a LOCAL_ERROR attempt and never sees the password. ``ready`` is awaited just before
    the credentials go out (a barrier, so a burst of logins reaches the server at the same moment)."""
    transcript = cfg.transcript(endpoint)
    mechanism = mechanism.upper()

    async def run() -> LoginResult:
        if endpoint.protocol == "pop3":
            return await _pop3_login(endpoint, cfg, transcript, username, password, mechanism,
                                     require_verified_tls, ready)
        if endpoint.protocol == "smtp":
            async with SmtpSession(endpoint, cfg, transcript) as smtp:
                await smtp.connect()
                await smtp.ehlo()
                if not endpoint.implicit_tls:
                    reply = await smtp.starttls()
                    if reply.transient:
                        raise ServerUnavailable(f"not sending credentials: STARTTLS answered {reply}")
                    if smtp.tls is None:
                        raise StartTlsRefused(f"not sending credentials: STARTTLS answered {reply}")
                _guard(smtp.tls, endpoint, cfg, require_verified_tls)
                if ready is not None:
                    await ready()
                started = time.monotonic()
                try:
                    reply = await (smtp.auth_login if mechanism == "LOGIN" else smtp.auth_plain)(username, password)
                except ServerUnavailable as exc:  # a 421 after failures is throttling: a result, not a dead end
                    return LoginResult(LoginOutcome.TEMPORARY, str(exc), mechanism, smtp.tls, "421",
                                       time.monotonic() - started)
                elapsed = time.monotonic() - started
                await smtp.quit()
                code = f"{reply.code} {reply.enhanced}" if reply.enhanced else str(reply.code)
                return LoginResult(classify_smtp(reply.code), str(reply), mechanism, smtp.tls, code, elapsed)
        async with ImapSession(endpoint, cfg, transcript) as imap:
            await imap.connect()
            if not endpoint.implicit_tls:
                caps = imap.capabilities or await imap.capability()
                if "STARTTLS" not in caps:
                    raise StartTlsNotOffered("not sending credentials: STARTTLS not offered")
                response = await imap.starttls()
                if imap.tls is None:
                    raise StartTlsRefused(f"not sending credentials: STARTTLS answered {response}")
            _guard(imap.tls, endpoint, cfg, require_verified_tls)
            if ready is not None:
                await ready()
            started = time.monotonic()
            try:
                response = await (imap.login if mechanism == "LOGIN" else imap.authenticate_plain)(username, password)
            except ServerUnavailable as exc:  # BYE after failures
                return LoginResult(LoginOutcome.TEMPORARY, str(exc), mechanism, imap.tls, "BYE",
                                   time.monotonic() - started)
            elapsed = time.monotonic() - started
            await imap.logout()
            # the tag differs per connection; the status and the RFC 5530 code are what a client reads
            code = response.status + (f" [{response.code.split(' ', 1)[0]}]" if response.code else "")
            return LoginResult(classify_imap(response.status, response.code), str(response), mechanism, imap.tls,
                               code, elapsed)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


async def _pop3_login(endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript, username: str,
                      password: Secret | str, mechanism: str, require_verified_tls: bool,
                      ready: Callable[[], Awaitable[None]] | None) -> LoginResult:
    """POP3: 'LOGIN' is USER/PASS (RFC 1939 7), anything else AUTH <mechanism> (RFC 5034)."""
    async with Pop3Session(endpoint, cfg, transcript) as pop3:
        await pop3.connect()
        caps = await pop3.capa()
        if not endpoint.implicit_tls:
            if "STLS" not in caps:
                raise StartTlsNotOffered("not sending credentials: STLS not offered")
            reply = await pop3.stls()
            if pop3.tls is None:
                raise StartTlsRefused(f"not sending credentials: STLS answered {reply}")
        _guard(pop3.tls, endpoint, cfg, require_verified_tls)
        if ready is not None:
            await ready()
        started = time.monotonic()
        if mechanism == "LOGIN":
            user, answer = await pop3.user_pass(username, password)
            final = answer or user
        else:
            initial, respond = responder(mechanism, username, password, service="pop", host=endpoint.host)
            final = await pop3.sasl(mechanism, initial, respond)
        elapsed = time.monotonic() - started
        await pop3.quit()
        return LoginResult(classify_pop3(final.ok, final.temporary), str(final), mechanism, pop3.tls, final.short,
                           elapsed)


def classify_pop3(ok: bool, temporary: bool) -> LoginOutcome:
    """+OK logs in; SYS/TEMP, IN-USE, LOGIN-DELAY are 'not now' (RFC 3206 4, RFC 2449 8.1); any other
    -ERR after credentials refuses them ([AUTH], or no code: RFC 3206 makes the code optional)."""
    if ok:
        return LoginOutcome.ACCEPTED
    return LoginOutcome.TEMPORARY if temporary else LoginOutcome.REJECTED


def _guard(tls: TlsInfo | None, endpoint: Endpoint, cfg: ProbeConfig, require_verified: bool) -> None:
    if tls is None:
        raise LocalError("not sending credentials without TLS")
    if require_verified:
        verdict = judge(tls, endpoint, cfg)
        if not verdict.verified:
            raise LocalError(f"not sending credentials: the certificate does not verify ({verdict.verify_error})")
