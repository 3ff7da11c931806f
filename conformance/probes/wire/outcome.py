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
import re
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


# In words, never an exception class name: the reason goes to an operator.
_LOST_HOW: dict[type[BaseException], str] = {
    ConnectionResetError: "reset by the server",
    BrokenPipeError: "closed by the server (broken pipe)",
    asyncio.IncompleteReadError: "closed by the server",
}


@contextlib.contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    """The one boundary where low-level errors become ours; `what` says what we were doing."""
    try:
        yield
    except ProbeError:
        raise
    except TimeoutError as exc:
        raise ProbeTimeout(f"timed out while {what}") from exc
    except ssl.SSLError as exc:
        raise ProtocolViolation(f"TLS error while {what}: {exc.reason or exc}") from exc
    except ConnectionRefusedError as exc:
        raise Unreachable(f"connection refused while {what}") from exc
    except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError) as exc:
        raise Unreachable(f"connection {_LOST_HOW[type(exc)]} while {what}") from exc
    except OSError as exc:
        raise Unreachable(f"network error while {what}: {exc.strerror or exc}") from exc


async def attempt(endpoint: str, transcript: Transcript, coro: asyncio.Future[R] | object) -> Attempt[R]:
    """Await a probe coroutine and fold its result or ProbeError into an Attempt."""
    try:
        result = await coro  # type: ignore[misc]
    except ProbeError as exc:
        return Attempt(endpoint, outcome_of(exc), None, str(exc), tuple(transcript.lines))
    return Attempt(endpoint, Outcome.COMPLETED, result, "", tuple(transcript.lines))
