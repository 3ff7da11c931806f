"""The gateway's IMAP services (imap with STARTTLS, imaps): a small IMAP4rev1 server on asyncio streams.

Enough of RFC 9051/3501 for a client to log in and read its mail back: CAPABILITY, NOOP, LOGOUT,
STARTTLS, LOGIN, AUTHENTICATE PLAIN, CRAM-MD5 and SCRAM-SHA-256 (with SASL-IR), SELECT/EXAMINE INBOX, LIST, SEARCH and FETCH
(with their UID forms), CLOSE/UNSELECT. UIDs equal sequence numbers: nothing is ever expunged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import ssl
from email.parser import BytesHeaderParser

from conformance.reference import oauth
from conformance.reference import statuscodes as S
from conformance.reference.lines import LineSession, SessionEnded
from conformance.reference.lockout import Decision, Verdict
from conformance.reference.outage import Component
from conformance.reference.runtime import NodeRuntime
from conformance.reference.sasl import CramMd5, Proof, ScramSha256

MAX_LINE = 65536
MAX_LITERAL = 1 << 20
_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"|(\((?:[^()]|\([^()]*\))*\))|([^\s()]+)')
_LITERAL_AT_END = re.compile(rb"\{(\d+)(\+?)\}\r?\n?$")
_FETCH_ITEM = re.compile(r"BODY(?:\.PEEK)?\[[^\]]*\](?:<[\d.]+>)?|[A-Z0-9.]+", re.IGNORECASE)


def _b64decode(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        return None


class ImapSession(LineSession):
    """One IMAP connection. ``shutdown`` is called by the node going down."""

    max_line = MAX_LINE
    node_down = S.I_BYE_NODE_DOWN

    def __init__(self, runtime: NodeRuntime, service: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, starttls: ssl.SSLContext | None, implicit_tls: bool) -> None:
        # the service is TLS by contract (even with no_implicit_tls)
        super().__init__(runtime, reader, writer, starttls, implicit_tls)
        self.service = service
        self.selected: bool = False

    # --- lifecycle ---------------------------------------------------------------------------------------
    async def converse(self) -> None:
        if self.service == "imaps" and self.runtime.flaws.imap_preauth:
            self.user = self.runtime.preauth_user
            await self._send(S.I_PREAUTH.format(caps=self._caps(), user=self.user))
        else:
            await self._send(S.I_GREETING.format(caps=self._caps()))
        while True:
            tokens, raw = await self._read_command()
            if not tokens:
                continue
            tag = tokens[0].decode("utf-8", "replace")
            if len(tokens) < 2:
                await self._send(S.I_BAD_SYNTAX.format(tag=tag, why="missing command"))
                continue
            await self._dispatch(tag, [t.decode("utf-8", "replace") for t in tokens[1:]], raw)

    def ended_user(self) -> str | None:
        """The PREAUTH user never started an auth session."""
        return None if self.user == self.runtime.preauth_user else self.user

    async def _read_command(self) -> tuple[list[bytes], str]:
        """Tokens of one command (atoms, quoted strings, literals, parenthesised lists) and its raw text."""
        tokens: list[bytes] = []
        raw = b""
        line = await self._readline()
        while True:
            literal = _LITERAL_AT_END.search(line)
            text = line[:literal.start()] if literal else line.rstrip(b"\r\n")
            raw += text
            for quoted, group, atom in _TOKEN.findall(text):
                tokens.append(group or atom or re.sub(rb"\\(.)", rb"\1", quoted))
            if literal is None:
                return tokens, raw.decode("utf-8", "replace")
            size = int(literal.group(1))
            if size > MAX_LITERAL:
                raise SessionEnded()
            if not literal.group(2):
                await self._send("+ Ready for literal data")
            data = await self.reader.readexactly(size)
            tokens.append(data)
            raw += b"{literal}"
            line = await self._readline()

    # --- commands --------------------------------------------------------------------------------------------
    def _caps(self) -> str:
        flaws = self.runtime.flaws
        caps = ["IMAP4rev1", "LITERAL+", "SASL-IR"]
        if self.user is not None:
            return " ".join(caps)
        oauth_caps = [f"AUTH={m}" for m in oauth.MECHANISMS]
        if not self.tls:
            caps.append("STARTTLS")
            caps += ["AUTH=PLAIN"] if flaws.imap_login_before_tls else ["LOGINDISABLED"]
            caps += oauth_caps if flaws.oauth_before_tls else []
        else:
            if flaws.starttls_offered_twice and self._did_starttls:
                caps.append("STARTTLS")
            caps += ["AUTH=PLAIN", "AUTH=CRAM-MD5", "AUTH=SCRAM-SHA-256", *oauth_caps]
        return " ".join(caps)

    async def _dispatch(self, tag: str, args: list[str], raw: str) -> None:
        command = args[0].upper()
        rest = args[1:]
        if command == "UID" and rest:
            command, rest = "UID " + rest[0].upper(), rest[1:]
        handler = {
            "CAPABILITY": self._capability, "NOOP": self._noop, "LOGOUT": self._logout,
            "STARTTLS": self._starttls, "LOGIN": self._login, "AUTHENTICATE": self._authenticate,
            "SELECT": self._select, "EXAMINE": self._select, "LIST": self._list, "CLOSE": self._close,
            "UNSELECT": self._close, "SEARCH": self._search, "UID SEARCH": self._search,
            "FETCH": self._fetch, "UID FETCH": self._fetch,
        }.get(command)
        if handler is None:
            await self._send(S.I_BAD_SYNTAX.format(tag=tag, why=f"unknown command {command}"))
            return
        needs_auth = command not in ("CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "LOGIN", "AUTHENTICATE")
        needs_select = command in ("CLOSE", "UNSELECT", "SEARCH", "UID SEARCH", "FETCH", "UID FETCH")
        if (needs_auth and self.user is None) or (needs_select and not self.selected):
            await self._send(S.I_BAD_STATE.format(tag=tag, command=command))
            return
        await handler(tag, command, rest, raw)

    async def _capability(self, tag: str, command: str, args: list[str], raw: str) -> None:
        await self._send(f"* CAPABILITY {self._caps()}")
        await self._send(S.I_OK.format(tag=tag, what="CAPABILITY"))

    async def _noop(self, tag: str, command: str, args: list[str], raw: str) -> None:
        await self._send(S.I_OK.format(tag=tag, what="NOOP"))

    async def _logout(self, tag: str, command: str, args: list[str], raw: str) -> None:
        await self._send(S.I_BYE_LOGOUT)
        await self._send(S.I_OK.format(tag=tag, what="LOGOUT"))
        raise SessionEnded()

    async def _starttls(self, tag: str, command: str, args: list[str], raw: str) -> None:
        if self.tls or self.starttls_context is None:
            await self._send(S.I_BAD_TLS_ACTIVE.format(tag=tag))
            return
        flaws = self.runtime.flaws
        self.writer.write(S.I_OK_BEGIN_TLS.format(tag=tag).encode() + b"\r\n")
        if not flaws.starttls_injection:
            # RFC 9051 11.1 / CVE-2011-0411: nothing pipelined behind STARTTLS survives into TLS
            self.reader._buffer.clear()  # type: ignore[attr-defined]
        await self._start_tls()

    async def _login(self, tag: str, command: str, args: list[str], raw: str) -> None:
        if len(args) != 2:
            await self._send(S.I_BAD_SYNTAX.format(tag=tag, why="LOGIN user password"))
            return
        await self._check_login(tag, args[0], args[1])

    async def _authenticate(self, tag: str, command: str, args: list[str], raw: str) -> None:
        mechanism = args[0].upper() if args else ""
        initial = args[1].encode() if len(args) > 1 else None
        if mechanism == "PLAIN":
            await self._plain(tag, initial)
        elif mechanism == "CRAM-MD5" and self.tls:
            await self._cram_md5(tag)
        elif mechanism == "SCRAM-SHA-256" and self.tls:
            await self._scram_sha_256(tag, initial)
        elif mechanism in oauth.MECHANISMS and self.tls:
            await self._oauth(tag, mechanism, initial)
        else:
            await self._send(S.I_NO_MECHANISM.format(tag=tag))

    async def _challenge(self, tag: str, data: bytes) -> bytes | None:
        """One "+" continuation and the client's decoded answer; None once the exchange was answered
        (BAD for a cancel with "*", RFC 9051 6.2.2, or for a line that is not base64)."""
        await self._send(b"+ " + base64.b64encode(data))
        line = (await self._readline()).strip()
        try:
            if line != b"*":
                return base64.b64decode(line, validate=True)
        except binascii.Error:
            pass
        await self._send(S.I_BAD_SYNTAX.format(tag=tag, why="AUTHENTICATE cancelled or not base64"))
        return None

    async def _plain(self, tag: str, blob: bytes | None) -> None:
        if blob is None:
            await self._send("+ ")
            blob = (await self._readline()).strip()
        if blob == b"*":
            await self._send(S.I_BAD_SYNTAX.format(tag=tag, why="AUTHENTICATE cancelled"))
            return
        try:
            _, user, password = base64.b64decode(blob, validate=True).split(b"\0")
        except (binascii.Error, ValueError):
            await self._send(S.I_BAD_SYNTAX.format(tag=tag, why="invalid PLAIN response"))
            return
        await self._check_login(tag, user.decode("utf-8", "replace"), password.decode("utf-8", "replace"),
                                sasl=True)

    async def _cram_md5(self, tag: str) -> None:
        exchange = CramMd5(self.runtime.host)
        response = await self._challenge(tag, exchange.challenge)
        parsed = exchange.answer(response) if response is not None else None
        if response is not None and parsed is None:
            await self._send(S.I_BAD_SYNTAX.format(tag=tag, why="invalid CRAM-MD5 response"))
        if response is None or parsed is None:
            return
        await self._check_login(tag, parsed[0], response.decode("utf-8", "replace"), sasl=True, proof=parsed[1])

    async def _scram_sha_256(self, tag: str, initial: bytes | None) -> None:
        """RFC 7677; the server-final message goes out as a last continuation (RFC 9051 6.2.2)."""
        exchange = ScramSha256(self.runtime.auth)
        client_first = await self._challenge(tag, b"") if initial is None else _b64decode(initial)
        server_first = exchange.first(client_first) if client_first is not None else None
        if client_first is not None and server_first is None:
            await self._send(S.I_BAD_SYNTAX.format(tag=tag, why="invalid SCRAM client-first message"))
        if server_first is None:
            return
        client_final = await self._challenge(tag, server_first.encode())
        if client_final is None:
            return
        ok, server_final = exchange.final(client_final)
        if ok and await self._challenge(tag, server_final.encode()) is None:
            return
        await self._check_login(tag, exchange.username, client_final.decode("utf-8", "replace"), sasl=True,
                                proof=lambda _: ok)

    async def _oauth(self, tag: str, mechanism: str, initial: bytes | None) -> None:
        """RFC 7628 over AUTHENTICATE: a refused token gets the 3.2.2 error as a continuation first."""
        blob = _b64decode(initial) if initial is not None else await self._challenge(tag, b"")
        parsed = oauth.parse(mechanism, blob) if blob is not None else None
        if parsed is None:
            if blob is not None:
                await self._send(S.I_BAD_SYNTAX.format(tag=tag, why=f"invalid {mechanism} response"))
            return
        if self.user is not None:
            await self._send(S.I_BAD_STATE.format(tag=tag, command="AUTHENTICATE"))
            return
        runtime = self.runtime
        decision = runtime.auth.login_token(*parsed, backend_up=not runtime.down(Component.AUTH))
        if decision.verdict is Verdict.ACCEPTED:
            self.user = decision.username
            runtime.auth.session_started(decision.username)
            await self._send(S.I_OK_LOGGED_IN.format(tag=tag, caps=self._caps()))
            return
        if decision.verdict is Verdict.REJECTED:
            await self._send(b"+ " + base64.b64encode(oauth.error_challenge(runtime.flaws, decision.known_user)))
            await self._readline()  # RFC 7628 3.2.3: the client's dummy answer
        await self._send(await self._failure_reply(tag, decision))

    async def _check_login(self, tag: str, user: str, password: str, *, sasl: bool = False,
                           proof: Proof | None = None) -> None:
        runtime, flaws = self.runtime, self.runtime.flaws
        if self.user is not None:
            await self._send(S.I_BAD_STATE.format(tag=tag, command="LOGIN"))
            return
        if not self.tls and not (flaws.imap_login_before_tls or (sasl and flaws.imap_authenticate_before_tls)):
            await self._send(S.I_NO_PRIVACY_REQUIRED.format(tag=tag))
            return
        decision = runtime.auth.login("imap", user, password, proof=proof,
                                      backend_up=not runtime.down(Component.AUTH))
        if decision.verdict is Verdict.ACCEPTED:
            self.user = decision.username
            runtime.auth.session_started(decision.username)
            await self._send(S.I_OK_LOGGED_IN.format(tag=tag, caps=self._caps()))
            return
        await self._send(await self._failure_reply(tag, decision))

    async def _failure_reply(self, tag: str, decision: Decision) -> str:
        flaws = self.runtime.flaws
        if decision.verdict is Verdict.LOCKED and not flaws.locked_says_wrong_password:
            return S.I_NO_UNAVAILABLE.format(tag=tag)
        if decision.verdict is Verdict.UNAVAILABLE and not flaws.auth_down_says_wrong_password:
            return S.I_NO_UNAVAILABLE.format(tag=tag)
        if flaws.auth_user_enumeration and not decision.known_user:
            return S.I_NO_NO_SUCH_USER.format(tag=tag)
        if flaws.auth_timing_oracle and decision.known_user and decision.verdict is Verdict.REJECTED:
            await asyncio.sleep(self.runtime.settings.timing_oracle_delay)
        return S.I_NO_AUTH_FAILED.format(tag=tag)

    def _messages(self) -> list[bytes]:
        assert self.user is not None
        return self.runtime.store.messages(self.user)

    async def _select(self, tag: str, command: str, args: list[str], raw: str) -> None:
        if not args or args[0].upper() != "INBOX":
            self.selected = False
            await self._send(S.I_NO_NONEXISTENT.format(tag=tag))
            return
        count = len(self._messages())
        for line in (f"* {count} EXISTS", "* 0 RECENT", "* FLAGS (\\Seen)", "* OK [PERMANENTFLAGS ()] read-only",
                     "* OK [UIDVALIDITY 1] UIDs valid", f"* OK [UIDNEXT {count + 1}] next UID"):
            await self._send(line)
        self.selected = True
        mode = "READ-ONLY" if command == "EXAMINE" else "READ-WRITE"
        await self._send(f"{tag} OK [{mode}] {command} completed")

    async def _list(self, tag: str, command: str, args: list[str], raw: str) -> None:
        await self._send('* LIST (\\HasNoChildren) "/" INBOX')
        await self._send(S.I_OK.format(tag=tag, what="LIST"))

    async def _close(self, tag: str, command: str, args: list[str], raw: str) -> None:
        self.selected = False
        await self._send(S.I_OK.format(tag=tag, what=command))

    async def _search(self, tag: str, command: str, args: list[str], raw: str) -> None:
        messages = self._messages()
        try:
            hits = [n for n, msg in enumerate(messages, 1) if _matches(msg, n, len(messages), list(args))]
        except ValueError as exc:
            await self._send(S.I_BAD_SYNTAX.format(tag=tag, why=str(exc)))
            return
        await self._send("* SEARCH" + "".join(f" {n}" for n in hits))
        await self._send(S.I_OK.format(tag=tag, what=command))

    async def _fetch(self, tag: str, command: str, args: list[str], raw: str) -> None:
        messages = self._messages()
        match = re.match(r"\S+\s+(?:UID\s+)?FETCH\s+(\S+)\s+(.+)$", raw, re.IGNORECASE)
        if match is None:
            await self._send(S.I_BAD_SYNTAX.format(tag=tag, why="FETCH sequence items"))
            return
        try:
            numbers = _sequence(match.group(1), len(messages))
        except ValueError as exc:
            await self._send(S.I_BAD_SYNTAX.format(tag=tag, why=str(exc)))
            return
        spec = match.group(2).strip()
        spec = {"ALL": "FLAGS INTERNALDATE RFC822.SIZE", "FAST": "FLAGS INTERNALDATE RFC822.SIZE",
                "FULL": "FLAGS INTERNALDATE RFC822.SIZE"}.get(spec.upper(), spec)
        if spec.startswith("(") and spec.endswith(")"):
            spec = spec[1:-1]
        items = _FETCH_ITEM.findall(spec)
        if command == "UID FETCH" and "UID" not in (i.upper() for i in items):
            items.insert(0, "UID")
        for n in numbers:
            parts: list[bytes] = []
            for item in items:
                rendered = _fetch_item(item, n, messages[n - 1])
                if rendered is None:
                    await self._send(S.I_BAD_SYNTAX.format(tag=tag, why=f"unsupported FETCH item {item}"))
                    return
                parts.append(rendered)
            self.writer.write(f"* {n} FETCH (".encode() + b" ".join(parts) + b")\r\n")
        await self._send(S.I_OK.format(tag=tag, what=command))


def _sequence(text: str, count: int) -> list[int]:
    """Numbers in an IMAP sequence set ("1:*", "2,4:5"); out-of-range numbers are skipped."""
    numbers: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition(":")
        try:
            first = count if low == "*" else int(low)
            last = first if not high else (count if high == "*" else int(high))
        except ValueError:
            raise ValueError(f"bad sequence set {text!r}") from None
        first, last = min(first, last), max(first, last)
        numbers.update(range(max(first, 1), min(last, count) + 1))
    return sorted(numbers)


def _header_text(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[:end + 4]


def _matches(message: bytes, number: int, count: int, criteria: list[str]) -> bool:
    """All search keys must match (RFC 9051 6.4.4: keys are ANDed). Raises ValueError on an unknown key."""
    headers = BytesHeaderParser().parsebytes(message)
    while criteria:
        key = criteria.pop(0).upper()
        if key == "ALL":
            continue
        if key == "CHARSET":
            criteria.pop(0)
            continue
        if key in ("HEADER", "SUBJECT", "FROM", "TO", "TEXT", "BODY"):
            field = criteria.pop(0) if key == "HEADER" and criteria else key
            if not criteria:
                raise ValueError(f"{key} needs a string")
            needle = criteria.pop(0).lower()
            if key in ("TEXT", "BODY"):
                haystack = message.decode("utf-8", "replace").lower()
            else:
                haystack = " ".join(str(v) for v in headers.get_all(field, [])).lower()
            if needle not in haystack:
                return False
            continue
        if key == "UID" and criteria:
            if number not in _sequence(criteria.pop(0), count):
                return False
            continue
        raise ValueError(f"unsupported search key {key}")
    return True


def _fetch_item(item: str, number: int, message: bytes) -> bytes | None:
    upper = item.upper()

    def literal(name: str, data: bytes) -> bytes:
        return f"{name} {{{len(data)}}}\r\n".encode() + data

    if upper == "UID":
        return f"UID {number}".encode()
    if upper == "FLAGS":
        return b"FLAGS ()"
    if upper == "RFC822.SIZE":
        return f"RFC822.SIZE {len(message)}".encode()
    if upper == "INTERNALDATE":
        return b'INTERNALDATE "01-Jan-2026 00:00:00 +0000"'
    if upper == "RFC822":
        return literal("RFC822", message)
    if upper == "RFC822.HEADER":
        return literal("RFC822.HEADER", _header_text(message))
    section = re.fullmatch(r"BODY(?:\.PEEK)?\[([^\]]*)\]", upper)
    if section is None:
        return None
    part = section.group(1)
    if part == "":
        return literal("BODY[]", message)
    if part == "HEADER":
        return literal("BODY[HEADER]", _header_text(message))
    if part == "TEXT":
        return literal("BODY[TEXT]", message[len(_header_text(message)):])
    return None


async def serve_imap(runtime: NodeRuntime, service: str, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, starttls: ssl.SSLContext | None, implicit_tls: bool) -> None:
    """asyncio.start_server callback for one accepted connection."""
    await ImapSession(runtime, service, reader, writer, starttls, implicit_tls).run()
