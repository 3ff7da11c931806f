"""The reference gateway: good behaviour seen through the project's own probes and through stdlib /
imapclient clients, and each deliberate flaw switched on alone."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from conformance.probes.auth import LoginOutcome, probe_login
from conformance.probes.config import CleartextAuth, ProbeConfig
from conformance.probes.handshake import probe_handshake
from conformance.probes.imap import probe_imap_capabilities
from conformance.probes.outcome import Attempt
from conformance.probes.smtp import probe_smtp_capabilities
from conformance.reference.flaws import FLAWS, Flaws
from conformance.reference.gateway import Gateway
from conformance.target import Endpoint, Target, load_target

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(workdir=tmp_path_factory.mktemp("good")) as gateway:
        yield gateway
        gateway.check_errors()


@pytest.fixture
def gw(good: Gateway) -> Gateway:
    good.reset()
    return good


@pytest.fixture(scope="module")
def target(good: Gateway) -> Target:
    return load_target(good.write_target(good.workdir / "target.toml"))


@pytest.fixture(scope="module")
def cfg(target: Target) -> ProbeConfig:
    return ProbeConfig.from_target(target)


def endpoint(target: Target, service: str, node: str = "node1") -> Endpoint:
    return next(e for e in target.endpoints if e.service == service and e.node == node)


def run(coro: Any) -> Attempt[Any]:
    attempt: Attempt[Any] = asyncio.run(coro)
    assert attempt.ok, attempt.reason
    return attempt


def flawed(tmp_path: Path, *names: str) -> tuple[Gateway, Target, ProbeConfig]:
    """Start a gateway with flaws (the caller stops it)."""
    gateway = Gateway(names, workdir=tmp_path)
    gateway.start()
    target = load_target(gateway.write_target(tmp_path / "target.toml"))
    return gateway, target, ProbeConfig.from_target(target)


def unverified() -> ssl.SSLContext:
    return ssl._create_unverified_context()  # the certificate is judged by the probes, not here


# --- the good gateway ------------------------------------------------------------------------------------
def test_target_file_loads_with_both_nodes_and_hooks(target: Target, good: Gateway) -> None:
    assert [n.name for n in target.nodes] == ["node1", "node2"]
    assert len(target.endpoints) == 10
    assert all(n.hooks is not None and n.hooks.down[-1] == n.name for n in target.nodes)
    assert target.account("lockout") is not None and target.policy.lockout_threshold == 5
    assert endpoint(target, "imaps", "node2").port == good.ports[("node2", "imaps")]
    for role in ("test", "lockout", "other"):
        assert (good.workdir / f"{role}.password").stat().st_mode & 0o077 == 0


def test_smtp_capabilities_of_the_good_gateway(target: Target, cfg: ProbeConfig) -> None:
    mx = run(probe_smtp_capabilities(endpoint(target, "mx"), cfg)).result
    assert mx.starttls_offered and mx.tls is not None and not mx.auth_mechanisms_after_tls
    sub = run(probe_smtp_capabilities(endpoint(target, "submission", "node2"), cfg)).result
    assert sub.starttls_offered and not sub.auth_mechanisms_before_tls
    assert sub.cleartext_auth is CleartextAuth.REFUSED_FOR_TLS
    assert {"PLAIN", "LOGIN"} <= sub.auth_mechanisms_after_tls and "STARTTLS" not in str(sub.post_tls)
    subs = run(probe_smtp_capabilities(endpoint(target, "submissions"), cfg)).result
    assert subs.tls is not None and "PLAIN" in subs.auth_mechanisms_after_tls


def test_imap_capabilities_of_the_good_gateway(target: Target, cfg: ProbeConfig) -> None:
    imap = run(probe_imap_capabilities(endpoint(target, "imap"), cfg)).result
    assert imap.logindisabled_before_tls and imap.starttls_offered
    assert imap.cleartext_login is CleartextAuth.REFUSED_FOR_TLS
    assert imap.post_tls is not None and "STARTTLS" not in imap.post_tls and "AUTH=PLAIN" in imap.post_tls
    imaps = run(probe_imap_capabilities(endpoint(target, "imaps", "node2"), cfg)).result
    assert imaps.tls is not None and not imaps.preauth


@pytest.mark.parametrize("service", ["mx", "submission", "submissions", "imap", "imaps"])
def test_handshake_verifies_on_every_service(target: Target, cfg: ProbeConfig, service: str) -> None:
    for node in ("node1", "node2"):
        result = run(probe_handshake(endpoint(target, service, node), cfg)).result
        assert result.verified, result.verify_error
        assert result.version in ("TLSv1.3", "TLSv1.2")


@pytest.mark.parametrize("service", ["submission", "submissions", "imap", "imaps"])
def test_login_right_and_wrong_password(gw: Gateway, target: Target, cfg: ProbeConfig, service: str) -> None:
    account = target.accounts["test"]
    ok = run(probe_login(endpoint(target, service), cfg, account.username, account.password)).result
    assert ok.outcome is LoginOutcome.ACCEPTED, ok.reply
    bad = run(probe_login(endpoint(target, service), cfg, account.username, "not-the-password")).result
    unknown = run(probe_login(endpoint(target, service), cfg, "nobody@example.test", "not-the-password")).result
    assert bad.outcome is unknown.outcome is LoginOutcome.REJECTED
    assert bad.reply == unknown.reply  # no user enumeration


def test_mail_submitted_over_smtp_is_read_back_over_imap(gw: Gateway) -> None:
    user, password = gw.accounts["test"]
    with smtplib.SMTP("127.0.0.1", gw.ports[("node1", "submission")], timeout=5) as smtp:
        smtp.starttls(context=unverified())
        smtp.login(user, password)
        smtp.sendmail(user, [user], b"Subject: round trip\r\n\r\nhello\r\n")
    with IMAPClient("127.0.0.1", port=gw.ports[("node2", "imaps")], ssl=True, ssl_context=unverified(),
                    timeout=5) as imap:
        imap.login(user, password)
        imap.select_folder("INBOX", readonly=True)
        ids = imap.search(["HEADER", "Subject", "round trip"])
        assert len(ids) == 1
        assert imap.fetch(ids, ["RFC822"])[ids[0]][b"RFC822"].endswith(b"hello\r\n")
    assert len(gw.mailbox(user)) == 1


def test_flaw_catalogue_and_parse() -> None:
    assert all(info.fails and info.family in ("starttls", "tls", "cert", "auth", "lockout", "failover")
               for info in FLAWS.values())
    flaws = Flaws.parse(["tls1_0"])
    assert "tls1_0" in flaws and "no_tls13" not in flaws and flaws.names == ("tls1_0",)
    with pytest.raises(ValueError, match="unknown flaw 'tls9'.*valid flaws: .*no_starttls"):
        Flaws.parse(["tls9"])


def test_cli_lists_flaws() -> None:
    out = subprocess.run([sys.executable, "-m", "conformance.cli", "serve", "--list-flaws"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert all(name in out for name in FLAWS)
