"""The reference gateway's POP3 services (conformance/reference/pop3.py) as the POP3 probes see them:
STLS and implicit TLS, RFC 3206 answers, mail read back, and the two POP3 flaws."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.probes.auth.logins import LoginOutcome, probe_login
from conformance.probes.pop3.session import Pop3Session, probe_pop3_capabilities
from conformance.probes.pop3.wire import read_multiline
from conformance.probes.starttls.state import EhloState, probe_starttls_state
from conformance.probes.wire.config import CleartextAuth, ProbeConfig
from conformance.probes.wire.outcome import Attempt
from conformance.reference.gateway import LOCKOUT_THRESHOLD, Gateway
from conformance.target import Endpoint, Target, load_target

pytestmark = pytest.mark.reference


def _result(coro: Any) -> Any:
    found: Attempt[Any] = asyncio.run(coro)
    assert found.ok, found.reason
    return found.result


def _endpoint(target: Target, service: str) -> Endpoint:
    return next(e for e in target.endpoints_for(service) if e.node == "node1")


@contextlib.contextmanager
def _gateway(tmp_path: Path, *flaws: str) -> Iterator[tuple[Gateway, Target, ProbeConfig]]:
    with Gateway(flaws, workdir=tmp_path) as gateway:
        target = load_target(gateway.write_target(tmp_path / "target.toml"))
        yield gateway, target, ProbeConfig.from_target(target)
        gateway.check_errors()


@pytest.fixture
def good(tmp_path: Path) -> Iterator[tuple[Gateway, Target, ProbeConfig]]:
    with _gateway(tmp_path) as running:
        yield running


def test_stls_offered_and_no_password_taken_before_it(good: tuple[Gateway, Target, ProbeConfig]) -> None:
    _, target, cfg = good
    caps = _result(probe_pop3_capabilities(_endpoint(target, "pop3"), cfg))
    assert caps.stls_offered and caps.tls is not None and "STLS" not in caps.post_tls
    assert {"USER", "SASL=PLAIN"} <= caps.post_tls and "USER" not in caps.pre_tls
    assert caps.cleartext.user_verdict is caps.cleartext.auth_verdict is CleartextAuth.REFUSED_FOR_TLS
    implicit = _result(probe_pop3_capabilities(_endpoint(target, "pop3s"), cfg))
    assert implicit.tls is not None and implicit.pre_tls is None


@pytest.mark.parametrize("service", ["pop3", "pop3s"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_logins_answer_with_rfc_3206_codes(good: tuple[Gateway, Target, ProbeConfig], service: str,
                                           mechanism: str) -> None:
    _, target, cfg = good
    account, ep = target.account("test"), _endpoint(target, service)
    assert account is not None
    right = _result(probe_login(ep, cfg, account.username, account.password, mechanism=mechanism))
    wrong = _result(probe_login(ep, cfg, account.username, "not-it", mechanism=mechanism))
    assert right.outcome is LoginOutcome.ACCEPTED and right.tls is not None
    assert wrong.outcome is LoginOutcome.REJECTED and wrong.code == "-ERR [AUTH]"


def test_mail_is_read_back_over_pop3s(good: tuple[Gateway, Target, ProbeConfig]) -> None:
    gateway, target, cfg = good
    account = target.account("test")
    assert account is not None
    gateway.store.deliver([account.address], b"Subject: hello\r\n\r\n.dot-stuffed line\r\n")

    async def read() -> list[str]:
        async with Pop3Session(_endpoint(target, "pop3s"), cfg) as pop3:
            await pop3.connect()
            _, answer = await pop3.user_pass(account.username, account.password)
            assert answer is not None and answer.ok
            assert (await pop3.command("RETR 1")).ok
            lines = await read_multiline(pop3.streams[0], timeout=cfg.timeout, what="reading RETR")
            await pop3.quit()
            return list(lines)

    assert asyncio.run(read()) == ["Subject: hello", "", ".dot-stuffed line"]


def test_pop3_user_before_tls_flaw_takes_passwords_in_clear(tmp_path: Path) -> None:
    with _gateway(tmp_path, "pop3_user_before_tls") as (_, target, cfg):
        caps = _result(probe_pop3_capabilities(_endpoint(target, "pop3"), cfg))
        assert caps.cleartext.user_verdict is CleartextAuth.CREDENTIALS_CHECKED
        assert "USER" in caps.pre_tls


@pytest.mark.parametrize(("flaws", "pop3_after_imap_lock"), [((), LoginOutcome.TEMPORARY),
                                                             (("pop3_separate_lockout",), LoginOutcome.ACCEPTED)])
def test_one_lock_across_imap_and_pop3_unless_flawed(tmp_path: Path, flaws: tuple[str, ...],
                                                     pop3_after_imap_lock: LoginOutcome) -> None:
    with _gateway(tmp_path, *flaws) as (_, target, cfg):
        account = target.account("lockout")
        assert account is not None
        for n in range(LOCKOUT_THRESHOLD):
            _result(probe_login(_endpoint(target, "imaps"), cfg, account.username, f"wrong-{n}", mechanism="LOGIN"))
        after = _result(probe_login(_endpoint(target, "pop3s"), cfg, account.username, account.password))
        assert after.outcome is pop3_after_imap_lock, after.reply
        if after.outcome is LoginOutcome.TEMPORARY:
            assert after.code == "-ERR [SYS/TEMP]"


@pytest.mark.parametrize(("flaw", "kept", "injected"), [("", False, False), ("no_state_reset", True, False),
                                                        ("starttls_response_injection", False, True)])
def test_stls_state_flaws(tmp_path: Path, flaw: str, kept: bool, injected: bool) -> None:
    with _gateway(tmp_path, *([flaw] if flaw else [])) as (_, target, cfg):
        state = _result(probe_starttls_state(_endpoint(target, "pop3"), cfg, window=0.3))
    assert state.response_injected is injected
    if not injected:
        assert state.ehlo_state is (EhloState.KEPT if kept else EhloState.FORGOTTEN), state


def test_apop_flaw_checks_the_digest_in_clear(tmp_path: Path) -> None:
    """pop3_apop_before_tls: the greeting offers APOP and the same APOP answer comes before and inside TLS."""
    with _gateway(tmp_path, "pop3_apop_before_tls") as (_, target, cfg):
        caps = _result(probe_pop3_capabilities(_endpoint(target, "pop3"), cfg))
        assert caps.cleartext.apop is not None and caps.cleartext.apop_verdict is CleartextAuth.CREDENTIALS_CHECKED

        async def apop_in_clear() -> tuple[str, str]:
            account = target.account("test")
            assert account is not None
            async with Pop3Session(_endpoint(target, "pop3"), cfg) as pop3:
                await pop3.connect()
                wrong, right = await pop3.apop(account.username, "wrong"), await pop3.apop(account.username,
                                                                                            account.password)
                return str(wrong), str(right)
        wrong, right = asyncio.run(apop_in_clear())
    assert wrong.startswith("-ERR [AUTH]") and right.startswith("+OK"), (wrong, right)


def test_good_gateway_offers_no_apop(good: tuple[Gateway, Target, ProbeConfig]) -> None:
    _, target, cfg = good
    caps = _result(probe_pop3_capabilities(_endpoint(target, "pop3"), cfg))
    assert caps.cleartext.apop is None and caps.cleartext.apop_verdict is CleartextAuth.NOT_TRIED
