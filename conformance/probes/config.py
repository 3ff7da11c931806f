"""What every session probe needs to know about a run, taken once from the Target."""

from __future__ import annotations

import secrets as _random
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from conformance.probes.connect import HostLimiter
from conformance.probes.outcome import Transcript
from conformance.target import Endpoint, Target


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
    def from_target(cls, target: Target, *, timeout: float | None = None) -> ProbeConfig:
        return cls(timeout=timeout or target.timeout, ehlo_name=target.ehlo_name,
                   trust_anchors=target.trust_anchors, secrets=target.secrets(),
                   limiter=HostLimiter.from_target(target))

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
