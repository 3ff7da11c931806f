"""OAuth 2.0 logins (OAUTHBEARER, RFC 7628; XOAUTH2) and the retirement of basic authentication, inside TLS only.

Two probes: how an endpoint refuses a bearer token it never issued, for a known and for an unknown user
(the error a client reads, RFC 7628 3.2.2, and whether it tells the two apart), and whether an account that
should log in with a token only still gets in with its password over PLAIN, LOGIN or the protocol's own
login command. Tokens and passwords go out only inside TLS to a certificate that verifies (``tls_session``).
"""

from __future__ import annotations

import json
import secrets as _random
from dataclasses import dataclass

from conformance.probes.auth.mechanisms import OAUTH
from conformance.probes.auth.sasl import (
    SaslReply,
    advertised_mechanisms,
    end_session,
    login_once,
    tls_session,
)
from conformance.probes.wire.config import ProbeConfig, scrubbed
from conformance.probes.wire.outcome import Attempt, attempt
from conformance.target import Endpoint, Secret

# What "basic authentication" is on each protocol: SASL PLAIN and LOGIN, and IMAP LOGIN / POP3 USER/PASS.
_BASIC = {"smtp": ("PLAIN", "LOGIN"), "imap": ("PLAIN", "LOGIN-COMMAND"), "pop3": ("PLAIN", "LOGIN-COMMAND")}


def oauth_error(reply: SaslReply) -> dict[str, object] | None:
    """The RFC 7628 3.2.2 error the server sent as its challenge (a JSON object), or None."""
    try:
        found = json.loads(reply.challenge) if reply.challenge.strip() else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def invalid_token() -> str:
    """A token no authorization server issued: random, so it is never a real credential."""
    return "mailconform-invalid-" + _random.token_urlsafe(24)


@dataclass(frozen=True)
class OAuthRefusal:
    mechanism: str
    known: SaslReply        # the known user with a token nobody issued
    unknown: SaslReply      # an unknown user with another such token


@dataclass(frozen=True)
class OAuthPosture:
    advertised: frozenset[str]            # OAuth mechanisms offered inside TLS
    refusals: tuple[OAuthRefusal, ...]


async def probe_oauth_refusals(endpoint: Endpoint, cfg: ProbeConfig, *, known_user: str,
                               unknown_user: str) -> Attempt[OAuthPosture]:
    """Each OAuth mechanism offered inside TLS, once with the known user and once with an unknown one, both
    with a random token (one session each, so the first answer cannot colour the second)."""
    transcript = cfg.transcript(endpoint)

    async def run() -> OAuthPosture:
        async with tls_session(endpoint, cfg, transcript) as first:
            advertised = frozenset(advertised_mechanisms(first) & set(OAUTH))
            await end_session(first)
        refusals = []
        for mechanism in sorted(advertised):
            answers = []
            for user in (known_user, unknown_user):
                async with tls_session(endpoint, cfg, transcript) as session:
                    answers.append(await login_once(session, mechanism, user, invalid_token()))
                    await end_session(session)
            refusals.append(OAuthRefusal(mechanism, *answers))
        return OAuthPosture(advertised, tuple(refusals))

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)


@dataclass(frozen=True)
class BasicLogin:
    mechanism: str
    advertised: bool
    answer: SaslReply


async def probe_basic_auth(endpoint: Endpoint, cfg: ProbeConfig, username: str,
                           password: Secret) -> Attempt[tuple[BasicLogin, ...]]:
    """The correct password over every basic mechanism of the protocol, advertised or not (a hidden one that
    still lets the password in is the finding), each in its own TLS session."""
    transcript = cfg.transcript(endpoint)

    async def run() -> tuple[BasicLogin, ...]:
        async with tls_session(endpoint, cfg, transcript) as first:
            advertised = advertised_mechanisms(first)
            await end_session(first)
        found = []
        for mechanism in _BASIC[endpoint.protocol]:
            async with tls_session(endpoint, cfg, transcript) as session:
                found.append(BasicLogin(mechanism, mechanism in advertised,
                                        await login_once(session, mechanism, username, password)))
                await end_session(session)
        return tuple(found)

    return scrubbed(await attempt(endpoint.id, transcript, run()), cfg)
