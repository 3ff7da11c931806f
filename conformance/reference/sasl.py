"""Server halves of the challenge-response mechanisms the gateway offers: CRAM-MD5 (RFC 2195) and
SCRAM-SHA-256 (RFC 7677, scramp's). Each turns a client's answers into a username and a proof that
the lockout engine checks against the stored password, so every mechanism counts failures alike."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

from scramp import ScramException, ScramMechanism

from conformance.reference.lockout import AuthEngine

SCRAM_ITERATIONS = 4096   # RFC 7677 4: the minimum a server should use
Proof = Callable[[str], bool]


class CramMd5:
    """One CRAM-MD5 exchange: a fresh challenge; ``answer`` parses "user hex-digest"."""

    def __init__(self, host: str) -> None:
        self.challenge = f"<{secrets.token_hex(8)}.mailconform@{host}>".encode()

    def answer(self, response: bytes) -> tuple[str, Proof] | None:
        user, _, digest = response.decode("utf-8", "replace").rpartition(" ")
        if not user or not digest:
            return None
        challenge = self.challenge
        return user, lambda stored: hmac.compare_digest(
            hmac.new(stored.encode(), challenge, hashlib.md5).hexdigest(), digest.lower())


class ScramSha256:
    """One SCRAM-SHA-256 exchange. Unknown users get keys derived from a per-user salt, so the
    server-first message does not tell them apart from known ones."""

    def __init__(self, engine: AuthEngine) -> None:
        self.mechanism = ScramMechanism("SCRAM-SHA-256")
        self.engine = engine
        self.server = self.mechanism.make_server(self._keys)
        self.username = ""

    def _keys(self, username: str) -> tuple[bytes, bytes, bytes, int]:
        self.username = username
        stored = self.engine.stored_password(username)
        salt = hashlib.sha256(b"mailconform-scram-salt\0" + username.lower().encode()).digest()[:16]
        return self.mechanism.make_auth_info(stored if stored is not None else secrets.token_hex(16),
                                             iteration_count=SCRAM_ITERATIONS, salt=salt)

    def first(self, client_first: bytes) -> str | None:
        """The server-first message, or None for a malformed client-first."""
        try:
            self.server.set_client_first(client_first.decode("utf-8"))
            return str(self.server.get_server_first())
        except (ScramException, UnicodeDecodeError):
            return None

    def final(self, client_final: bytes) -> tuple[bool, str]:
        """Whether the client's proof holds, and the server-final message to send if it does."""
        try:
            self.server.set_client_final(client_final.decode("utf-8"))
            return True, str(self.server.get_server_final())
        except (ScramException, UnicodeDecodeError):
            return False, ""
