"""What every probe returns: a typed attempt (result or reason) and a redacted transcript.

Exception tree (mapped from OSError / ssl.SSLError / TimeoutError at one boundary, ``mapped_errors``):

    ProbeError
    ├── Unreachable          connect refused, DNS failure, reset before greeting   -> inconclusive
    ├── ProbeTimeout         connect or read timed out (tarpit, hung server)       -> inconclusive
    ├── ServerUnavailable    421 / 4xx greeting / rate limit / greylist / BYE      -> inconclusive
    ├── ProtocolViolation    the server answered something that breaks the RFC     -> a finding
    └── LocalError           our own bug or bad input                              -> inconclusive
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

R = TypeVar("R")


class ProbeError(Exception):
    """Root of every error a probe raises; the message is one line an operator can act on."""


class Unreachable(ProbeError):
    pass


class ProbeTimeout(ProbeError):
    pass


class ServerUnavailable(ProbeError):
    """The server said 'not now' (421, 4xx greeting, BYE, rate limit): no verdict can be drawn."""


class ProtocolViolation(ProbeError):
    """The server broke the protocol (garbage reply, wrong sequence). A finding against the server."""


class LocalError(ProbeError):
    pass


class Outcome(StrEnum):
    COMPLETED = "completed"          # result is set
    SERVER_ERROR = "server-error"    # the server misbehaved: checks may fail on this
    INCONCLUSIVE = "inconclusive"    # could not connect / timed out / server unavailable
    LOCAL_ERROR = "local-error"      # our bug or bad input: inconclusive, flagged as ours


_OUTCOME_OF: dict[type[ProbeError], Outcome] = {
    ProtocolViolation: Outcome.SERVER_ERROR,
    Unreachable: Outcome.INCONCLUSIVE,
    ProbeTimeout: Outcome.INCONCLUSIVE,
    ServerUnavailable: Outcome.INCONCLUSIVE,
    LocalError: Outcome.LOCAL_ERROR,
}


def outcome_of(error: ProbeError) -> Outcome:
    for kind, outcome in _OUTCOME_OF.items():
        if isinstance(error, kind):
            return outcome
    return Outcome.LOCAL_ERROR


_AUTH_LINE = re.compile(r"^(?P<head>(?:\S+\s+)?(?:AUTH(?:ENTICATE)?\s+\S+|LOGIN)\s*)(?P<rest>.*)$", re.IGNORECASE)


class Transcript:
    """The dialogue a probe had, line by line. Secrets never enter it: AUTH/LOGIN arguments and
    SASL continuation lines are replaced, and any known secret value is scrubbed as a backstop."""

    def __init__(self, endpoint: str = "", secrets: tuple[str, ...] = ()) -> None:
        self.endpoint = endpoint
        self.lines: list[str] = []
        self._secrets = tuple(s for s in secrets if s)
        self._redact_client = False

    def client(self, line: str, *, secret: bool = False) -> None:
        if secret or self._redact_client:
            self.lines.append("C: <redacted>")
            return
        match = _AUTH_LINE.match(line.rstrip("\r\n"))
        if match and match.group("rest"):
            self.lines.append(f"C: {match.group('head')}<redacted>")
        else:
            self.lines.append("C: " + self._scrub(line.rstrip("\r\n")))

    def server(self, line: str) -> None:
        self.lines.append("S: " + self._scrub(line.rstrip("\r\n")))

    def note(self, text: str) -> None:
        self.lines.append("-- " + self._scrub(text))

    @contextlib.contextmanager
    def redacting(self) -> Iterator[None]:
        """Everything the client sends inside this block (a SASL exchange) is redacted."""
        self._redact_client = True
        try:
            yield
        finally:
            self._redact_client = False

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def tail(self, n: int = 12) -> str:
        return "\n".join(self.lines[-n:])

    def __str__(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class Attempt(Generic[R]):
    """A probe's answer: its result, or why there is none. An outcome, not an exception."""

    endpoint: str
    outcome: Outcome
    result: R | None = None
    reason: str = ""
    transcript: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.COMPLETED


# OpenSSL reason codes a broken or hostile server provokes, in words an operator can act on.
_TLS_REASONS = {
    "WRONG_VERSION_NUMBER": "the server's answer is not TLS (wrong version number)",
    "PACKET_LENGTH_TOO_LONG": "the server sent an oversized TLS record",
    "ENCRYPTED_LENGTH_TOO_LONG": "the server sent an oversized TLS record",
    "DATA_LENGTH_TOO_LONG": "the server sent an oversized TLS record",
    "RECORD_LAYER_FAILURE": "the server sent a malformed or oversized TLS record",
    "EXCESSIVE_MESSAGE_SIZE": "the server sent an oversized TLS handshake message",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common with the server",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common with the server",
    "UNEXPECTED_EOF_WHILE_READING": "the server closed the connection in the middle of TLS",
    "UNEXPECTED_MESSAGE": "the server sent a TLS message out of order",
}
_ALERT = re.compile(r"^(?:SSLV3|TLSV1|TLSV13)_(?:ALERT_)?(?P<name>[A-Z_]+)$")
_SSL_NOISE = re.compile(r"^\[[A-Z_]+: [A-Z0-9_]+\]\s*|\s*\(_ssl\.c:\d+\)$")


def alert_words(name: str) -> str:
    """A TLS alert by its RFC 8446 name, as words ('HANDSHAKE_FAILURE' or 'handshake_failure' alike)."""
    return f"the server sent the TLS alert '{name.lower().replace('_', ' ')}'"


def tls_error_words(exc: ssl.SSLError) -> str:
    """An OpenSSL error as a sentence: alerts by name, known reason codes in words, never a bare code."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the certificate did not verify: {exc.verify_message or 'unknown reason'}"
    if isinstance(exc, ssl.SSLZeroReturnError):
        return "the server closed the TLS session"
    if isinstance(exc, ssl.SSLEOFError):
        return "the server closed the connection in the middle of TLS"
    reason = exc.reason or ""
    alert = _ALERT.match(reason)
    if alert:
        return alert_words(alert.group('name'))
    if reason in _TLS_REASONS:
        return _TLS_REASONS[reason]
    text = reason.lower().replace("_", " ") or _SSL_NOISE.sub("", str(exc.args[1] if len(exc.args) > 1 else exc))
    return text or "unknown reason"


# Connection errors in words; the class name (ConnectionResetError) means nothing to an operator.
_CONNECTION_WORDS: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused by the server"),
    (ConnectionResetError, "connection reset by the server"),
    (ConnectionAbortedError, "connection aborted"),
    (BrokenPipeError, "the server closed the connection (broken pipe)"),
    (asyncio.IncompleteReadError, "the server closed the connection"),
    (EOFError, "the server closed the connection"),
)


def os_error_words(exc: BaseException) -> str:
    """An OSError (or a lost stream) as words: what happened, never the exception's class name."""
    for kind, words in _CONNECTION_WORDS:
        if isinstance(exc, kind):
            return words
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or 'no address'})"
    if isinstance(exc, OSError):
        text = exc.strerror or (os.strerror(exc.errno) if exc.errno else "")
        if text:
            return f"network error: {text[0].lower()}{text[1:]}"
    return "network error"


@contextlib.contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    """The one boundary where low-level errors become ours; `what` says what we were doing.
    Every reason is words: the server's deed and our step, never an exception class name or code."""
    try:
        yield
    except ProbeError:
        raise
    except TimeoutError as exc:
        raise ProbeTimeout(f"timed out while {what}") from exc
    except ssl.SSLError as exc:
        raise ProtocolViolation(f"TLS error while {what}: {tls_error_words(exc)}") from exc
    except (ConnectionError, asyncio.IncompleteReadError, EOFError) as exc:
        raise Unreachable(f"{os_error_words(exc)} while {what}") from exc
    except OSError as exc:
        raise Unreachable(f"{os_error_words(exc)} while {what}") from exc


async def attempt(endpoint: str, transcript: Transcript, coro: asyncio.Future[R] | object) -> Attempt[R]:
    """Await a probe coroutine and fold its result or ProbeError into an Attempt."""
    try:
        result = await coro  # type: ignore[misc]
    except ProbeError as exc:
        return Attempt(endpoint, outcome_of(exc), None, str(exc), tuple(transcript.lines))
    return Attempt(endpoint, Outcome.COMPLETED, result, "", tuple(transcript.lines))
