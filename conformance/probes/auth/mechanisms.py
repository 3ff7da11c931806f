"""The client half of each SASL mechanism a username and password can drive: an initial response and
an answer to every server challenge. Protocol-free: SMTP AUTH and IMAP AUTHENTICATE both use it.

SCRAM (RFC 5802, RFC 7677) is scramp's; PLAIN, LOGIN, CRAM-MD5 and DIGEST-MD5 are a few lines of
hashing each over the RFCs' own test vectors, which no well-kept library offers as a client alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets as _random
from collections.abc import Callable

from scramp import ScramClient, ScramException

from conformance.probes.wire.outcome import LocalError
from conformance.target import Secret

SCRAM = ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "SCRAM-SHA3-512")
TESTABLE = ("PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", *SCRAM)
OAUTH = ("OAUTHBEARER", "XOAUTH2")   # driven by a bearer token, not a password
BASIC = ("PLAIN", "LOGIN", "LOGIN-COMMAND")   # what "basic authentication" means to a mail client
ANONYMOUS_TRACE = "mailconform-conformance-probe"
CANCEL = "*"  # RFC 4954 4 / RFC 9051 6.2.2: the client ends the exchange

Responder = Callable[[bytes], str]


def b64(data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def reveal(secret: Secret | str) -> str:
    return secret.reveal() if isinstance(secret, Secret) else secret


def untested_reason(mechanism: str) -> str:
    return f"untested: mailconform does not speak {mechanism}"


def responder(mechanism: str, username: str, password: Secret | str, *, service: str = "smtp",
              host: str = "localhost") -> tuple[str | None, Responder]:
    """The initial response (None: wait for the first challenge) and the answer to each challenge.
    ``service`` and ``host`` name the digest-uri of DIGEST-MD5. Raises LocalError for a mechanism
    outside TESTABLE and ANONYMOUS."""
    mechanism = mechanism.upper()
    if mechanism == "PLAIN":
        token = b64(f"\0{username}\0{reveal(password)}")
        return token, lambda challenge: token
    if mechanism == "LOGIN":  # draft-murchison-sasl-login: "Username:" then "Password:"
        return None, lambda challenge: b64(reveal(password) if b"pass" in challenge.lower() else username)
    if mechanism == "CRAM-MD5":  # RFC 2195: "user hex(HMAC-MD5(password, challenge))"
        def cram(challenge: bytes) -> str:
            digest = hmac.new(reveal(password).encode("utf-8"), challenge, hashlib.md5).hexdigest()
            return b64(f"{username} {digest}")
        return None, cram
    if mechanism == "DIGEST-MD5":
        return None, digest_md5(username, reveal(password), f"{service}/{host}")
    if mechanism in SCRAM:
        return scram(mechanism, username, reveal(password))
    if mechanism in OAUTH:  # ``password`` is the bearer token here
        return oauth(mechanism, username, reveal(password))
    if mechanism == "ANONYMOUS":  # RFC 4505: an optional trace string, no credentials
        return b64(ANONYMOUS_TRACE), lambda challenge: b64(ANONYMOUS_TRACE)
    raise LocalError(untested_reason(mechanism))


def oauth(mechanism: str, username: str, token: str) -> tuple[str, Responder]:
    """OAUTHBEARER (RFC 7628 3.1: a GS2 header, then auth=Bearer) or XOAUTH2 (Google's format). A server
    refusing the token sends its error as a challenge; the client's only answer is a dummy (RFC 7628 3.2.3:
    a single ^A), after which the server sends its final failure."""
    if mechanism == "OAUTHBEARER":
        initial = b64(f"n,a={username},\x01auth=Bearer {token}\x01\x01")
        return initial, lambda challenge: b64("\x01")
    return b64(f"user={username}\x01auth=Bearer {token}\x01\x01"), lambda challenge: ""


def scram(mechanism: str, username: str, password: str) -> tuple[str, Responder]:
    """RFC 5802: client-first, then client-final with the proof; the server's final message is checked
    (it proves the server knows the password) and answered with an empty line, or cancelled if wrong."""
    client = ScramClient([mechanism], username, password)
    seen: list[str] = []

    def answer(challenge: bytes) -> str:
        seen.append(challenge.decode("utf-8", "replace"))
        try:
            if len(seen) == 1:
                client.set_server_first(seen[0])
                return b64(client.get_client_final())
            client.set_server_final(seen[-1])
        except ScramException:
            return CANCEL
        return ""

    return b64(client.get_client_first()), answer


_DIGEST_FIELD = re.compile(r'([\w-]+)=("(?:[^"\\]|\\.)*"|[^,]*)')


def digest_md5(username: str, password: str, digest_uri: str, cnonce: str | None = None) -> Responder:
    """RFC 2831 2.1.2 with qop=auth; the second challenge (rspauth) is acknowledged with an empty line."""
    cnonce = cnonce or _random.token_hex(12)

    def answer(challenge: bytes) -> str:
        fields = {k: re.sub(r"\\(.)", r"\1", v[1:-1]) if v.startswith('"') else v
                  for k, v in _DIGEST_FIELD.findall(challenge.decode("utf-8", "replace"))}
        if "rspauth" in fields:
            return ""
        realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
        secret = hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()
        a1 = secret + f":{nonce}:{cnonce}".encode()
        a2 = f"AUTHENTICATE:{digest_uri}".encode()
        response = hashlib.md5(":".join((hashlib.md5(a1).hexdigest(), nonce, "00000001", cnonce, "auth",
                                         hashlib.md5(a2).hexdigest())).encode()).hexdigest()
        charset = ",charset=utf-8" if fields.get("charset") == "utf-8" else ""
        return b64(f'username="{username}",realm="{realm}",nonce="{nonce}",cnonce="{cnonce}",nc=00000001,'
                   f'qop=auth,digest-uri="{digest_uri}",response={response}{charset}')

    return answer
