"""OAuth 2.0 at the reference gateway as the suite's probes see it: tokens it issued log in over SMTP AUTH,
IMAP AUTHENTICATE and POP3 AUTH; tokens nobody issued get the RFC 7628 error; basic auth is retired for the
OAuth-only account; the three OAuth flaws. No token or password ever reaches a transcript."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.auth.mechanisms import oauth as oauth_responder
from conformance.probes.auth.oauth import probe_basic_auth, probe_oauth_refusals
from conformance.probes.auth.sasl import probe_auth_posture
from conformance.probes.imap.session import probe_imap_capabilities
from conformance.probes.pop3.session import probe_pop3_capabilities
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt
from conformance.reference import oauth as reference_oauth
from conformance.reference.gateway import Gateway
from conformance.target import Target, load_target

pytestmark = pytest.mark.reference

SERVICES = ("submission", "imap", "pop3s")


@contextlib.contextmanager
def _gateway(tmp_path: Path, *flaws: str) -> Iterator[tuple[Target, ProbeConfig]]:
    with Gateway(flaws, workdir=tmp_path) as gateway:
        target = load_target(gateway.write_target(tmp_path / "target.toml"))
        yield target, ProbeConfig.from_target(target)
        gateway.check_errors()


def _done(found: Attempt[Any]) -> Any:
    assert found.ok, found.reason
    return found.result


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
def test_both_formats_parse_back_to_user_and_token(mechanism: str) -> None:
    initial, answer = oauth_responder(mechanism, "alice@example.test", "tok-123")
    assert reference_oauth.parse(mechanism, base64.b64decode(initial)) == ("alice@example.test", "tok-123")
    assert reference_oauth.parse(mechanism, b"user=x") is None
    assert base64.b64decode(answer(b"{}")) in (b"\x01", b"")  # RFC 7628 3.2.3: the dummy answer


def test_issued_tokens_log_in_everywhere_and_stay_out_of_transcripts(tmp_path: Path) -> None:
    with _gateway(tmp_path) as (target, cfg):
        test = target.account("test")
        assert test is not None and test.token is not None
        for service in SERVICES:
            endpoint = target.endpoints_for(service)[0]
            found = asyncio.run(probe_auth_posture(endpoint, cfg, test.username, test.password,
                                                   wrong_username=test.username, wrong_password="nope",
                                                   token=test.token))
            posture = _done(found)
            oauth = {m.mechanism: m.outcome for m in posture.mechanisms if m.mechanism in reference_oauth.MECHANISMS}
            assert oauth == dict.fromkeys(reference_oauth.MECHANISMS, LoginOutcome.ACCEPTED), service
            assert test.token.reveal() not in "\n".join(found.transcript)


@pytest.mark.parametrize(("flaws", "alike"), [((), True), (("oauth_error_reveals_user",), False)])
def test_refused_tokens_carry_the_rfc_7628_error(tmp_path: Path, flaws: tuple[str, ...], alike: bool) -> None:
    with _gateway(tmp_path, *flaws) as (target, cfg):
        test = target.account("test")
        assert test is not None
        for service in SERVICES:
            posture = _done(asyncio.run(probe_oauth_refusals(target.endpoints_for(service)[0], cfg,
                                                             known_user=test.username,
                                                             unknown_user="nobody@example.test")))
            for refusal in posture.refusals:
                assert refusal.known.outcome is refusal.unknown.outcome is LoginOutcome.REJECTED
                assert json.loads(refusal.known.challenge) == {"status": "invalid_token", "scope": "mail"}
                assert (refusal.known.challenge == refusal.unknown.challenge) is alike


@pytest.mark.parametrize(("flaws", "let_in"), [((), False), (("basic_auth_still_on",), True)])
def test_the_oauth_only_account_keeps_its_password_out(tmp_path: Path, flaws: tuple[str, ...],
                                                       let_in: bool) -> None:
    with _gateway(tmp_path, *flaws) as (target, cfg):
        account = target.account("oauth")
        assert account is not None and target.policy.basic_auth == "forbidden"
        for service in SERVICES:
            logins = _done(asyncio.run(probe_basic_auth(target.endpoints_for(service)[0], cfg, account.username,
                                                        account.password)))
            assert {x.answer.outcome is LoginOutcome.ACCEPTED for x in logins} == {let_in}, service


@pytest.mark.parametrize(("flaws", "in_clear"), [((), set()), (("oauth_before_tls",), {"OAUTHBEARER", "XOAUTH2"})])
def test_oauth_offered_before_tls_only_with_the_flaw(tmp_path: Path, flaws: tuple[str, ...],
                                                     in_clear: set[str]) -> None:
    with _gateway(tmp_path, *flaws) as (target, cfg):
        imap = _done(asyncio.run(probe_imap_capabilities(target.endpoints_for("imap")[0], cfg)))
        pop3 = _done(asyncio.run(probe_pop3_capabilities(target.endpoints_for("pop3")[0], cfg)))
        oauth_caps = {f"AUTH={m}" for m in ("OAUTHBEARER", "XOAUTH2")}
        assert {c.removeprefix("AUTH=") for c in imap.pre_tls & oauth_caps} == in_clear
        assert {c.removeprefix("SASL=") for c in pop3.pre_tls if c.startswith("SASL=")} == in_clear
        assert {"SASL=OAUTHBEARER", "SASL=XOAUTH2"} <= pop3.post_tls
