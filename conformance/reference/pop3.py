"""The gateway's POP3 services (pop3 with STLS, pop3s): a small POP3 server on asyncio streams.

Enough of RFC 1939 for a client to log in and read its mail: CAPA (RFC 2449), STLS (RFC 2595 4),
USER/PASS, AUTH PLAIN (RFC 5034, with or without an initial response), STAT, LIST, RETR, NOOP, QUIT;
APOP only with the flaw that offers it in clear.
Failures carry the RFC 3206 response codes: [AUTH] for credentials, [SYS/TEMP] for "not now".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import ssl
from collections.abc import Callable

from conformance.reference import oauth
from conformance.reference import statuscodes as S
from conformance.reference.lines import LineSession, SessionEnded
from conformance.reference.lockout import Decision, Verdict
from conformance.reference.outage import Component
from conformance.reference.runtime import NodeRuntime

MAX_LINE = 4096   # RFC 2449 4: a command line is at most 255 octets; leave room for AUTH responses


class Pop3Session(LineSession):
    """One POP3 connection. ``shutdown`` is called by the node going down."""

    max_line = MAX_LINE
    node_down = S.P_ERR_NODE_DOWN

    def __init__(self, runtime: NodeRuntime, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 starttls: ssl.SSLContext | None, implicit_tls: bool) -> None:
        super().__init__(runtime, reader, writer, starttls, implicit_tls)
        self.pending_user: str | None = None
        self._refused_in_clear = False  # no_state_reset: a USER refused before STLS stays refused after it
        # pop3_apop_before_tls: the RFC 1939 7 banner timestamp that offers APOP, unique per connection
        self.apop_stamp = f"<{secrets.token_hex(8)}@reference.mailconform>" if runtime.flaws.pop3_apop_before_tls \
            else None

    async def converse(self) -> None:
        await self._send(S.P_GREETING + (f" {self.apop_stamp}" if self.apop_stamp else ""))
        while True:
            line = (await self._readline()).decode("utf-8", "replace").rstrip("\r\n")
            verb, _, rest = line.partition(" ")
            await self._dispatch(verb.upper(), rest)

    async def _dispatch(self, verb: str, rest: str) -> None:
        authorization = {"CAPA": self._capa, "STLS": self._stls, "USER": self._user, "PASS": self._pass,
                         "AUTH": self._auth, "QUIT": self._quit, **({"APOP": self._apop} if self.apop_stamp else {})}
        transaction = {"STAT": self._stat, "LIST": self._list, "RETR": self._retr, "NOOP": self._noop,
                       "CAPA": self._capa, "QUIT": self._quit}
        handler = (transaction if self.user is not None else authorization).get(verb)
        if handler is None:
            known = verb in authorization or verb in transaction
            await self._send(S.P_ERR_STATE.format(command=verb) if known else S.P_ERR_UNKNOWN)
            return
        await handler(rest)

    def _plaintext_allowed(self) -> bool:
        return self.tls or self.runtime.flaws.pop3_user_before_tls

    async def _capa(self, rest: str) -> None:
        lines = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.user is None:
            if not self.tls or (self.runtime.flaws.starttls_offered_twice and self._did_starttls):
                lines.append("STLS")
            mechanisms = ["PLAIN"] if self._plaintext_allowed() else []
            mechanisms += list(oauth.MECHANISMS) if self.tls or self.runtime.flaws.oauth_before_tls else []
            lines += ["USER"] if self._plaintext_allowed() else []
            lines += [f"SASL {' '.join(mechanisms)}"] if mechanisms else []
        await self._send("+OK Capability list follows\r\n" + "\r\n".join(lines) + "\r\n.")

    async def _stls(self, rest: str) -> None:
        if self.tls or self.starttls_context is None:
            await self._send(S.P_ERR_TLS_ACTIVE)
            return
        extra = S.P_OK_AFTER_GO_AHEAD + "\r\n" if self.runtime.flaws.starttls_response_injection else ""
        # the extra line in the same write as the go-ahead, so it always lands before the ClientHello
        self.writer.write((S.P_OK_BEGIN_TLS + "\r\n" + extra).encode())
        if not self.runtime.flaws.starttls_injection:
            # RFC 2595 4 / CVE-2011-0411: nothing pipelined behind STLS survives into TLS
            self.reader._buffer.clear()  # type: ignore[attr-defined]
        await self._start_tls()
        self.pending_user = None

    async def _user(self, rest: str) -> None:
        kept = self._refused_in_clear and self.runtime.flaws.no_state_reset
        if not self._plaintext_allowed() or kept:
            self._refused_in_clear = True
            await self._send(S.P_ERR_TLS_FIRST)
            return
        self.pending_user = rest.strip()
        await self._send(S.P_OK.format(what="send PASS"))

    async def _pass(self, rest: str) -> None:
        user, self.pending_user = self.pending_user, None
        if user is None:
            await self._send(S.P_ERR_STATE.format(command="PASS"))
            return
        await self._check_login(user, rest)

    async def _auth(self, rest: str) -> None:
        mechanism, _, initial = rest.strip().partition(" ")
        if mechanism.upper() in oauth.MECHANISMS and self.tls:
            await self._oauth(mechanism.upper(), initial.strip().encode())
            return
        if mechanism.upper() != "PLAIN":
            await self._send(S.P_ERR_MECHANISM)
            return
        if not self._plaintext_allowed():
            await self._send(S.P_ERR_TLS_FIRST)
            return
        blob = initial.strip().encode()
        if not blob:
            await self._send("+ ")
            blob = (await self._readline()).strip()
        if blob == b"*":
            await self._send(S.P_ERR_SYNTAX.format(why="AUTH cancelled"))
            return
        try:
            _, user, password = base64.b64decode(b"" if blob == b"=" else blob, validate=True).split(b"\0")
        except (binascii.Error, ValueError):
            await self._send(S.P_ERR_SYNTAX.format(why="invalid PLAIN response"))
            return
        await self._check_login(user.decode("utf-8", "replace"), password.decode("utf-8", "replace"))

    async def _oauth(self, mechanism: str, initial: bytes) -> None:
        """RFC 7628 over AUTH (RFC 5034): a refused token gets the 3.2.2 error as a continuation first."""
        if not initial:
            await self._send("+ ")
            initial = (await self._readline()).strip()
        try:
            parsed = oauth.parse(mechanism, base64.b64decode(initial, validate=True))
        except binascii.Error:
            parsed = None
        if parsed is None:
            await self._send(S.P_ERR_SYNTAX.format(why=f"invalid {mechanism} response"))
            return
        runtime = self.runtime
        decision = runtime.auth.login_token(*parsed, backend_up=not runtime.down(Component.AUTH))
        if decision.verdict is Verdict.ACCEPTED:
            self.user = decision.username
            runtime.auth.session_started(decision.username)
            await self._send(S.P_OK_LOGGED_IN)
            return
        if decision.verdict is Verdict.REJECTED:
            challenge = base64.b64encode(oauth.error_challenge(runtime.flaws, decision.known_user)).decode()
            await self._send(f"+ {challenge}")
            await self._readline()  # RFC 7628 3.2.3: the client's dummy answer
        await self._send(await self._failure_reply(decision))

    async def _apop(self, rest: str) -> None:
        """RFC 1939 7, switched on by the flaw only, and taken in clear: MD5 of timestamp and password."""
        user, _, digest = rest.strip().partition(" ")
        stamp = self.apop_stamp or ""

        def proof(stored: str) -> bool:
            expected = hashlib.md5((stamp + stored).encode()).hexdigest()  # APOP is MD5 by definition
            return hmac.compare_digest(expected, digest.strip().lower())
        await self._check_login(user, digest, proof)

    async def _check_login(self, user: str, password: str, proof: Callable[[str], bool] | None = None) -> None:
        runtime = self.runtime
        decision = runtime.auth.login("pop3", user, password, proof=proof,
                                      backend_up=not runtime.down(Component.AUTH))
        if decision.verdict is Verdict.ACCEPTED:
            self.user = decision.username
            runtime.auth.session_started(decision.username)
            await self._send(S.P_OK_LOGGED_IN)
            return
        await self._send(await self._failure_reply(decision))

    async def _failure_reply(self, decision: Decision) -> str:
        flaws = self.runtime.flaws
        if decision.verdict is Verdict.LOCKED and not flaws.locked_says_wrong_password:
            return S.P_ERR_TEMP
        if decision.verdict is Verdict.UNAVAILABLE and not flaws.auth_down_says_wrong_password:
            return S.P_ERR_TEMP
        if flaws.auth_user_enumeration and not decision.known_user:
            return S.P_ERR_NO_SUCH_USER
        if flaws.auth_timing_oracle and decision.known_user and decision.verdict is Verdict.REJECTED:
            await asyncio.sleep(self.runtime.settings.timing_oracle_delay)
        return S.P_ERR_AUTH_FAILED

    def _messages(self) -> list[bytes]:
        assert self.user is not None
        return self.runtime.store.messages(self.user)

    async def _stat(self, rest: str) -> None:
        messages = self._messages()
        await self._send(f"+OK {len(messages)} {sum(len(m) for m in messages)}")

    async def _list(self, rest: str) -> None:
        listing = [f"{n} {len(m)}" for n, m in enumerate(self._messages(), 1)]
        await self._send("\r\n".join([f"+OK {len(listing)} messages", *listing, "."]))

    async def _retr(self, rest: str) -> None:
        messages = self._messages()
        if not rest.strip().isdigit() or not 0 < int(rest) <= len(messages):
            await self._send(S.P_ERR_SYNTAX.format(why="no such message"))
            return
        body = messages[int(rest) - 1].replace(b"\r\n.", b"\r\n..")
        body = b".." + body[1:] if body.startswith(b".") else body
        self.writer.write(b"+OK message follows\r\n" + body.rstrip(b"\r\n") + b"\r\n.\r\n")
        await self.writer.drain()

    async def _noop(self, rest: str) -> None:
        await self._send(S.P_OK.format(what="NOOP"))

    async def _quit(self, rest: str) -> None:
        await self._send(S.P_BYE)
        raise SessionEnded()


async def serve_pop3(runtime: NodeRuntime, service: str, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, starttls: ssl.SSLContext | None, implicit_tls: bool) -> None:
    """asyncio.start_server callback for one accepted connection."""
    await Pop3Session(runtime, reader, writer, starttls, implicit_tls).run()
