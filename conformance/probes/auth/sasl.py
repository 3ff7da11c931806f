"""SASL exchanges over SMTP AUTH and IMAP AUTHENTICATE/LOGIN, inside TLS only, and the probe of
an endpoint's authentication posture: every advertised mechanism with the test account, a wrong
password, and an anonymous login.

Safety rails: credentials go out only inside TLS to a certificate that verifies for the endpoint's
host name (see ``tls_session``); every client line of a SASL exchange is redacted in the transcript.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from conformance.probes.auth.logins import LoginOutcome, classify_imap, classify_pop3, classify_smtp
from conformance.probes.auth.mechanisms import OAUTH, TESTABLE, responder, reveal, untested_reason
from conformance.probes.imap import wire as imap_wire
from conformance.probes.imap.session import ImapSession
from conformance.probes.pop3.session import Pop3Reply, Pop3Session
from conformance.probes.smtp.session import SmtpSession
from conformance.probes.starttls.opening import StartTlsNotOffered, StartTlsRefused
from conformance.probes.tls.handshake import judge
from conformance.probes.wire.config import ProbeConfig, scrubbed, scrubbing_errors
from conformance.probes.wire.outcome import (
    Attempt,
    LocalError,
    ProbeError,
    ProtocolViolation,
    ServerUnavailable,
    Transcript,
    attempt,
)
from conformance.probes.wire.streams import read_line, send
from conformance.target import Endpoint, Secret

MAX_SASL_ROUNDS = 4

Session = SmtpSession | ImapSession | Pop3Session


@dataclass(frozen=True)
class SaslReply:
    outcome: LoginOutcome
    reply: str          # the server's own final words
    text: str           # those words without code or tag
    code: str           # SMTP "535 5.7.8"; IMAP "NO [AUTHENTICATIONFAILED]": what enumeration compares
    challenge: str = ""  # the last server challenge, decoded: where OAUTHBEARER's error JSON travels (RFC 7628 3.2.2)


async def smtp_sasl(smtp: SmtpSession, mechanism: str, username: str, password: Secret | str) -> SaslReply:
    initial, answer = responder(mechanism, username, password, service="smtp", host=smtp.endpoint.host)
    # the transcript shows "AUTH PLAIN <redacted>": it redacts every AUTH argument by itself
    reply = await smtp.command(f"AUTH {mechanism}" + (f" {initial}" if initial else ""))
    challenge = b""
    for _ in range(MAX_SASL_ROUNDS):
        if reply.code != 334:
            break
        challenge = _decode(reply.text)
        reply = await smtp.command(answer(challenge), secret=True)
    else:
        if reply.code == 334:
            reply = await smtp.command("*", secret=True)
    code = f"{reply.code} {reply.enhanced or ''}".strip()
    text = reply.text
    if reply.enhanced and text.startswith(reply.enhanced):
        text = text[len(reply.enhanced):].strip()
    return SaslReply(classify_smtp(reply.code), str(reply), text, code, _text(challenge))


async def imap_sasl(imap: ImapSession, mechanism: str, username: str, password: Secret | str) -> SaslReply:
    """AUTHENTICATE <mechanism>, or the LOGIN command for mechanism "LOGIN-COMMAND"."""
    challenge = b""
    if mechanism == "LOGIN-COMMAND":
        response = await imap.login(username, reveal(password))
    else:
        response, challenge = await _imap_authenticate(imap, mechanism, username, password)
    code = f"{response.status} [{(response.code or '').split(' ', 1)[0]}]" if response.code else response.status
    return SaslReply(classify_imap(response.status, response.code), str(response), response.text, code,
                     _text(challenge))


async def _imap_authenticate(imap: ImapSession, mechanism: str, username: str,
                             password: Secret | str) -> tuple[imap_wire.ImapResponse, bytes]:
    initial, answer = responder(mechanism, username, password, service="imap", host=imap.endpoint.host)
    reader, writer = imap.streams
    tag = next(imap._tags)
    use_ir = initial is not None and "SASL-IR" in (imap.capabilities or frozenset())
    line = f"{tag} AUTHENTICATE {mechanism}" + (f" {initial}" if use_ir else "")
    pending_initial = None if use_ir else initial
    imap.transcript.client(line)
    secrets = imap.cfg.secrets + ((initial,) if initial else ())
    challenge = b""
    with scrubbing_errors(secrets):
        await send(writer, line.encode() + b"\r\n", timeout=imap.cfg.timeout, what="sending AUTHENTICATE")
        for _ in range(MAX_SASL_ROUNDS + 1):
            raw = await read_line(reader, timeout=imap.cfg.timeout, what="reading the AUTHENTICATE exchange")
            imap.transcript.server(raw.decode("utf-8", "replace"))
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if text.startswith("+"):
                challenge = _decode(text[1:].strip())
                # without SASL-IR the initial response answers the first, empty challenge (RFC 4422 3.3)
                response = pending_initial if pending_initial is not None and not challenge else answer(challenge)
                pending_initial = None
                imap.transcript.client(response, secret=True)
                await send(writer, response.encode() + b"\r\n", timeout=imap.cfg.timeout,
                           what="sending a SASL response")
                continue
            head, _, rest = text.partition(" ")
            if head == "*":
                continue
            status = imap_wire.parse_status(rest)
            if head != tag or status is None:
                raise ProtocolViolation(f"unexpected answer to AUTHENTICATE {mechanism}")
            return imap_wire.ImapResponse(tag, status.status, status.code, status.text), challenge
    raise ProtocolViolation(f"AUTHENTICATE {mechanism} did not finish within {MAX_SASL_ROUNDS} rounds")


async def pop3_sasl(pop3: Pop3Session, mechanism: str, username: str, password: Secret | str) -> SaslReply:
    """AUTH <mechanism> (RFC 5034), or USER/PASS for mechanism "LOGIN-COMMAND" (RFC 1939 7)."""
    if mechanism == "LOGIN-COMMAND":
        user, answer = await pop3.user_pass(username, password)
        reply: Pop3Reply = answer or user
    else:
        initial, respond = responder(mechanism, username, password, service="pop", host=pop3.endpoint.host)
        reply = await pop3.sasl(mechanism, initial, respond)
    return SaslReply(classify_pop3(reply.ok, reply.temporary), str(reply), reply.text, reply.short,
                     _text(pop3.last_challenge))


def _text(challenge: bytes) -> str:
    return challenge.decode("utf-8", "replace")


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip() or b"", validate=False)
    except ValueError:
        return b""


@asynccontextmanager
async def tls_session(endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript, *,
                      require_verified_tls: bool = True) -> AsyncIterator[Session]:
    """A session ready for credentials: connected, inside TLS (STARTTLS where needed), EHLO/CAPABILITY
    fetched again, certificate verified. Raises LocalError rather than expose a password."""
    session: Session
    if endpoint.protocol == "pop3":
        session = await _pop3_tls_session(endpoint, cfg, transcript)
    elif endpoint.protocol == "smtp":
        smtp = SmtpSession(endpoint, cfg, transcript)
        session = smtp
        try:
            await smtp.connect()
            await smtp.ehlo()
            if not endpoint.implicit_tls:
                reply = await smtp.starttls()
                if reply.transient:
                    raise ServerUnavailable(f"not sending credentials: STARTTLS answered {reply}")
                if smtp.tls is None:
                    raise StartTlsRefused(f"not sending credentials: STARTTLS answered {reply}")
        except BaseException:
            await smtp.close()
            raise
    else:
        imap = ImapSession(endpoint, cfg, transcript)
        session = imap
        try:
            await imap.connect()
            caps = imap.capabilities or await imap.capability()
            if not endpoint.implicit_tls:
                if "STARTTLS" not in caps:
                    raise StartTlsNotOffered("not sending credentials: STARTTLS not offered")
                response = await imap.starttls()
                if imap.tls is None:
                    raise StartTlsRefused(f"not sending credentials: STARTTLS answered {response}")
        except BaseException:
            await imap.close()
            raise
    try:
        tls = session.tls
        if tls is None:
            raise LocalError("not sending credentials without TLS")
        if require_verified_tls:
            verdict = judge(tls, endpoint, cfg)
            if not verdict.verified:
                raise LocalError(f"not sending credentials: the certificate does not verify ({verdict.verify_error})")
        yield session
    finally:
        await session.close()


async def _pop3_tls_session(endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript) -> Pop3Session:
    pop3 = Pop3Session(endpoint, cfg, transcript)
    try:
        await pop3.connect()
        caps = await pop3.capa()
        if not endpoint.implicit_tls:
            if "STLS" not in caps:
                raise StartTlsNotOffered("not sending credentials: STLS not offered")
            reply = await pop3.stls()
            if pop3.tls is None:
                raise StartTlsRefused(f"not sending credentials: STLS answered {reply}")
    except BaseException:
        await pop3.close()
        raise
    return pop3


def advertised_mechanisms(session: Session) -> frozenset[str]:
    """SASL mechanisms advertised inside TLS; LOGIN-COMMAND stands for IMAP's LOGIN command and for POP3's
    USER/PASS."""
    if isinstance(session, SmtpSession):
        return session.capabilities.auth_mechanisms if session.capabilities else frozenset()
    if isinstance(session, Pop3Session):
        pop_caps = session.capabilities or frozenset()
        found = {c.split("=", 1)[1] for c in pop_caps if c.startswith("SASL=")}
        return frozenset(found | ({"LOGIN-COMMAND"} if "USER" in pop_caps else set()))
    caps = session.capabilities or frozenset()
    found = {c.split("=", 1)[1] for c in caps if c.startswith("AUTH=")}
    if "LOGINDISABLED" not in caps and caps:
        found.add("LOGIN-COMMAND")
    return frozenset(found)


def is_preauth(session: Session) -> bool:
    """An IMAP session that began authenticated (RFC 9051 7.1.4): LOGIN would only get BAD."""
    return isinstance(session, ImapSession) and session.greeting is not None and session.greeting.status == "PREAUTH"


async def login_once(session: Session, mechanism: str, username: str, password: Secret | str) -> SaslReply:
    """One login attempt in an open TLS session; a 421/BYE mid-login is a TEMPORARY answer."""
    try:
        if isinstance(session, SmtpSession):
            return await smtp_sasl(session, mechanism, username, password)
        if isinstance(session, Pop3Session):
            return await pop3_sasl(session, mechanism, username, password)
        return await imap_sasl(session, mechanism, username, password)
    except ServerUnavailable as exc:
        return SaslReply(LoginOutcome.TEMPORARY, str(exc), str(exc), "closed")


async def end_session(session: Session) -> None:
    try:
        if isinstance(session, ImapSession):
            await session.logout()
        else:
            await session.quit()
    except ProbeError:
        pass  # what we learnt stands even if the goodbye fails


@asynccontextmanager
async def logged_in(endpoint: Endpoint, cfg: ProbeConfig, transcript: Transcript, mechanism: str, username: str,
                    password: Secret | str, *, retry_after: float = 0.0,
                    require_verified_tls: bool = True) -> AsyncIterator[tuple[Session, SaslReply]]:
    """A fresh TLS session and one login in it, yielded with the answer whatever it is. A temporary
    answer (a lock or throttle another check left behind) is retried once in a new session after
    ``retry_after`` seconds (the target's lockout duration), so it does not turn into a false verdict."""
    for attempt_no in range(2):
        async with tls_session(endpoint, cfg, transcript, require_verified_tls=require_verified_tls) as session:
            answer = await login_once(session, mechanism, username, password)
            if answer.outcome is not LoginOutcome.TEMPORARY or attempt_no == 1 or retry_after <= 0:
                yield session, answer
                return
            await end_session(session)
        transcript.note(f"temporary answer; once more after {retry_after:g} s (lock or throttle expiry)")
        await asyncio.sleep(retry_after)


@dataclass(frozen=True)
class MechanismResult:
    mechanism: str
    outcome: LoginOutcome | None   # None: advertised, but a mechanism mailconform does not speak
    reply: str


@dataclass(frozen=True)
class AuthPosture:
    advertised: frozenset[str]                 # inside TLS
    mechanisms: tuple[MechanismResult, ...]    # every advertised one, valid credentials
    wrong_password: SaslReply | None           # the known account with a wrong password (PLAIN / LOGIN)
    wrong_mechanism: str | None
    anonymous: SaslReply | None                # None: not advertised and not tried
    preauth: bool = False                      # IMAP greeted with PREAUTH: no login to test (nothing else ran)

    def mechanism(self, name: str) -> MechanismResult | None:
        return next((m for m in self.mechanisms if m.mechanism == name), None)


async def probe_auth_posture(endpoint: Endpoint, cfg: ProbeConfig, username: str, password: Secret | str, *,
                             wrong_username: str, wrong_password: str, try_anonymous: bool = True,
                             retry_after: float = 0.0, require_verified_tls: bool = True,
                             token: Secret | None = None) -> Attempt[AuthPosture]:
    """Each advertised mechanism with the valid credentials (one session each, so a success cannot
    colour the next try), then an anonymous login, then ``wrong_username`` with ``wrong_password``.
    The valid logins come first: a server that counts the wrong one cannot then spoil them."""
    transcript = cfg.transcript(endpoint)

    async def run() -> AuthPosture:
        async with tls_session(endpoint, cfg, transcript, require_verified_tls=require_verified_tls) as first:
            advertised = advertised_mechanisms(first)
            preauth = is_preauth(first)
            await end_session(first)
        if preauth:
            return AuthPosture(advertised, (), None, None, None, preauth=True)
        results = []
        for mechanism in sorted(advertised):
            if mechanism in OAUTH and token is None:
                results.append(MechanismResult(mechanism, None, "untested: the account carries no bearer token "
                                                                "(token_env or token_file)"))
                continue
            if mechanism not in (*TESTABLE, *OAUTH) and mechanism != "LOGIN-COMMAND":
                results.append(MechanismResult(mechanism, None, untested_reason(mechanism)))
                continue
            secret = token if mechanism in OAUTH and token is not None else password
            async with logged_in(endpoint, cfg, transcript, mechanism, username, secret, retry_after=retry_after,
                                 require_verified_tls=require_verified_tls) as (s, answer):
                await end_session(s)
            results.append(MechanismResult(mechanism, answer.outcome, answer.reply))
        anonymous = None
        if try_anonymous and (endpoint.protocol == "smtp" or "ANONYMOUS" in advertised):
            async with tls_session(endpoint, cfg, transcript, require_verified_tls=require_verified_tls) as s:
                anonymous = await login_once(s, "ANONYMOUS", "", "")
                await end_session(s)
        wrong_mech = _plain_choice(advertised, endpoint.protocol)
        wrong = None
        if wrong_mech is not None:
            async with tls_session(endpoint, cfg, transcript, require_verified_tls=require_verified_tls) as s:
                wrong = await login_once(s, wrong_mech, wrong_username, wrong_password)
                await end_session(s)
        return AuthPosture(advertised, tuple(results), wrong, wrong_mech, anonymous)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


def _plain_choice(advertised: frozenset[str], protocol: str) -> str | None:
    """The mechanism for password checks: PLAIN where offered, else LOGIN (IMAP: the LOGIN command)."""
    for mechanism in ("PLAIN", "LOGIN") if protocol == "smtp" else ("PLAIN", "LOGIN-COMMAND"):
        if mechanism in advertised:
            return mechanism
    return None
