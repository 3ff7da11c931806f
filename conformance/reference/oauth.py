"""Bearer tokens at the reference gateway: the two SASL formats (OAUTHBEARER, RFC 7628 3.1; XOAUTH2) parsed,
and the RFC 7628 3.2.2 error a refused token gets. The tokens themselves are issued by the Gateway at start
and checked by the lockout engine (``AuthEngine.login_token``), like passwords."""

from __future__ import annotations

import json

from conformance.reference.flaws import Flaws

MECHANISMS = ("OAUTHBEARER", "XOAUTH2")
SCOPE = "mail"


def parse(mechanism: str, blob: bytes) -> tuple[str, str] | None:
    """(user, token) from a client's initial response, or None if it is not the mechanism's format."""
    text = blob.decode("utf-8", "replace")
    if mechanism == "OAUTHBEARER":
        header, sep, rest = text.partition("\x01")  # RFC 7628 3.1: gs2-header, then key=value pairs
        user = next((p[2:] for p in header.split(",") if p.startswith("a=")), "")
        pairs = rest.split("\x01")
    else:  # XOAUTH2: user=...^Aauth=Bearer ...^A^A
        sep, pairs = "\x01", text.split("\x01")
        user = next((p[5:] for p in pairs if p.startswith("user=")), "")
    auth = next((p[5:] for p in pairs if p.startswith("auth=")), "")
    if not sep or not auth.lower().startswith("bearer "):
        return None
    return user, auth[7:]


def error_challenge(flaws: Flaws, known_user: bool) -> bytes:
    """The RFC 7628 3.2.2 error for a refused token; oauth_error_reveals_user changes it for unknown users."""
    if flaws.oauth_error_reveals_user and not known_user:
        return json.dumps({"status": "invalid_request", "error_description": "no such user"}).encode()
    return json.dumps({"status": "invalid_token", "scope": SCOPE}).encode()



