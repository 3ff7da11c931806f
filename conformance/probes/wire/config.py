"""What every session probe needs to know about a run, taken once from the Target."""

from __future__ import annotations

import base64
import contextlib
import secrets as _random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from conformance.probes.wire.connect import EndpointHealth, HostLimiter
from conformance.probes.wire.outcome import Attempt, ProbeError, Transcript
from conformance.target import Endpoint, Target

R = TypeVar("R")


@dataclass(frozen=True)
class ProbeConfig:
    """``timeout`` bounds each connect, read and write; ``session_timeout`` one whole probe session."""

    timeout: float = 10.0
    ehlo_name: str = "mailconform.invalid"
    trust_anchors: tuple[Path, ...] = ()
    use_system_store: bool = True
    secrets: tuple[str, ...] = field(default=(), repr=False)
    limiter: HostLimiter | None = field(default=None, compare=False)
    session_timeout: float | None = None

    @classmethod
    def from_target(cls, target: Target, *, timeout: float | None = None,
                    health: EndpointHealth | None = None) -> ProbeConfig:
        """``health``: the run's memory of dead endpoints (the suite's fixtures give one; without it every
        probe connects afresh, as probes that watch a node go down and come back must)."""
        return cls(timeout=timeout or target.timeout, ehlo_name=target.ehlo_name,
                   trust_anchors=target.trust_anchors,
                   secrets=tuple(form for account in target.accounts.values()
                                 for form in (*secret_forms(account.username, account.password.reveal()),
                                              *token_forms(account.username, account.token.reveal()
                                                           if account.token else ""))),
                   limiter=HostLimiter.from_target(target, health))

    @property
    def session_budget(self) -> float:
        """Default session budget: enough for a dozen exchanges at the per-read timeout."""
        return self.session_timeout or self.timeout * 12

    def transcript(self, endpoint: Endpoint) -> Transcript:
        return Transcript(endpoint.id, self.secrets)


def throwaway_credentials() -> tuple[str, str]:
    """A random username and password for probing how a server treats cleartext authentication:
    never a real account's password, so nothing of value crosses the wire in clear."""
    return f"mailconform-probe-{_random.token_hex(4)}", _random.token_urlsafe(18)


class CleartextAuth(StrEnum):
    """How a server treated AUTH/LOGIN with throwaway credentials before TLS."""

    NOT_TRIED = "not-tried"                # implicit TLS, or not a submission service and AUTH not offered
    REFUSED_FOR_TLS = "refused-for-tls"    # 530/538 (SMTP), BAD or [PRIVACYREQUIRED] (IMAP): the right answer
    REFUSED = "refused"                    # refused, but not naming TLS (e.g. 502/503/504: AUTH not available)
    CREDENTIALS_CHECKED = "credentials-checked"  # 535 / NO [AUTHENTICATIONFAILED]: the server read them in clear
    ACCEPTED = "accepted"                  # 235 / OK with random credentials: very wrong


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Remove known secret values from text a server may have echoed (a reason, an evidence value)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def scrubbed(result: Attempt[R], cfg: ProbeConfig) -> Attempt[R]:
    """The attempt with known secrets removed from its reason: a hostile server can echo anything
    into the words we quote (the transcript scrubs its own lines)."""
    reason = scrub(result.reason, cfg.secrets)
    return result if reason == result.reason else replace(result, reason=reason)


@contextlib.contextmanager
def scrubbing_errors(secrets: tuple[str, ...]) -> Iterator[None]:
    """Re-raise a ProbeError whose message quotes a known secret (a server echoing what we sent)
    as the same error type with the secret removed, its context suppressed."""
    try:
        yield
    except ProbeError as exc:
        text = scrub(str(exc), secrets)
        if text == str(exc):
            raise
        raise type(exc)(text) from None


def secret_forms(username: str, password: str) -> tuple[str, ...]:
    """The password and the encodings in which SMTP/IMAP carry it (SASL PLAIN token, AUTH LOGIN line),
    so the transcript's backstop also catches a server echoing the encoded form."""
    if not password:
        return ()
    return (password, _b64(password), _b64(f"\0{username}\0{password}"))


def token_forms(username: str, token: str) -> tuple[str, ...]:
    """A bearer token and the SASL initial responses that carry it (OAUTHBEARER, RFC 7628 3.1; XOAUTH2)."""
    if not token:
        return ()
    return (token, _b64(f"n,a={username},\x01auth=Bearer {token}\x01\x01"),
            _b64(f"user={username}\x01auth=Bearer {token}\x01\x01"))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
