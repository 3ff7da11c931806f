"""SASL exchanges and the authentication posture probe: aiosmtpd and the fake IMAP server, a
CRAM-MD5 vector from RFC 2195, and the rails (TLS only, verified certificate, nothing secret in the
transcript)."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
from fake_imap import FakeImap
from hostile import run, serving
from smtp_servers import PASSWORD, USER, aiosmtpd_server

from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.auth.sasl import AuthPosture, probe_auth_posture, responder
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Secret, Service

pytestmark = pytest.mark.unit


def cfg(anchor: Path | None) -> ProbeConfig:
    return ProbeConfig(timeout=5, trust_anchors=(anchor,) if anchor else (), use_system_store=False,
                       secrets=(PASSWORD, "pw-imap-secret"))


def test_cram_md5_rfc2195_vector() -> None:
    initial, answer = responder("CRAM-MD5", "tim", "tanstaaftanstaaf")
    assert initial is None
    response = base64.b64decode(answer(b"<1896.697170952@postoffice.reston.mci.net>")).decode()
    assert response == "tim b913a602c7eda7a495b4e6e7334d3890"


def test_login_mechanism_answers_both_prompts() -> None:
    _, answer = responder("LOGIN", "alice", "secret")
    assert base64.b64decode(answer(b"Username:")) == b"alice"
    assert base64.b64decode(answer(b"Password:")) == b"secret"


def smtp_posture(context: ssl.SSLContext, anchor: Path | None) -> Attempt[AuthPosture]:
    async def main() -> Attempt[AuthPosture]:
        async with aiosmtpd_server(context) as endpoint:
            return await probe_auth_posture(endpoint, cfg(anchor), USER, Secret(PASSWORD, "test"),
                                            wrong_username=USER, wrong_password="wrong-one")
    return run(main())


def test_smtp_posture(context: ssl.SSLContext, anchor: Path) -> None:
    result = smtp_posture(context, anchor)
    assert result.outcome is Outcome.COMPLETED, result.reason
    posture = result.result
    assert posture is not None
    assert {"PLAIN", "LOGIN"} <= posture.advertised
    assert all(m.outcome is LoginOutcome.ACCEPTED for m in posture.mechanisms), posture.mechanisms
    assert posture.wrong_password is not None and posture.wrong_password.code == "535 5.7.8"
    assert posture.anonymous is not None and posture.anonymous.outcome is not LoginOutcome.ACCEPTED
    text = "\n".join(result.transcript)
    assert PASSWORD not in text and base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode() not in text
    assert "AUTH PLAIN <redacted>" in text


def test_unverified_certificate_gets_no_password(context: ssl.SSLContext) -> None:
    result = smtp_posture(context, None)
    assert result.outcome is Outcome.LOCAL_ERROR and "not sending credentials" in result.reason


def test_imap_posture(context: ssl.SSLContext, anchor: Path) -> None:
    async def main() -> Attempt[AuthPosture]:
        server = FakeImap(context, user="alice", password="pw-imap-secret")
        async with serving(server, Service.IMAP) as endpoint:
            return await probe_auth_posture(endpoint, cfg(anchor), "alice", Secret("pw-imap-secret", "test"),
                                            wrong_username="alice", wrong_password="nope")
    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    posture = result.result
    assert posture is not None and posture.advertised == {"PLAIN", "LOGIN-COMMAND"}
    assert all(m.outcome is LoginOutcome.ACCEPTED for m in posture.mechanisms)
    assert posture.wrong_password is not None and posture.wrong_password.code == "NO [AUTHENTICATIONFAILED]"
    assert posture.anonymous is None  # not advertised: not tried on IMAP
    assert "pw-imap-secret" not in "\n".join(result.transcript)
