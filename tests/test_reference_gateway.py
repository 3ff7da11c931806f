"""The reference gateway: good behaviour seen through the project's own probes and through stdlib /
imapclient clients, and each deliberate flaw switched on alone."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from imapclient import IMAPClient

from conformance.probes.abuse.relay import probe_relay_forms
from conformance.probes.abuse.smuggling import probe_smuggling
from conformance.probes.auth.logins import LoginOutcome, probe_login
from conformance.probes.auth.sasl import SaslReply, login_once, probe_auth_posture, tls_session
from conformance.probes.imap.session import probe_imap_capabilities
from conformance.probes.smtp.session import probe_smtp_capabilities
from conformance.probes.starttls.injection import probe_starttls_injection
from conformance.probes.tls.handshake import probe_handshake
from conformance.probes.wire.config import CleartextAuth, ProbeConfig
from conformance.probes.wire.outcome import Attempt
from conformance.reference.flaws import FLAWS, Flaws
from conformance.reference.gateway import Gateway
from conformance.reference.lockout import AuthEngine, Verdict
from conformance.reference.outage import Component
from conformance.reference.runtime import Settings
from conformance.target import Endpoint, Target, load_target

# TLS 1.0 clients are what the tls1_0 flaw is about: the stdlib's deprecation warning is expected
pytestmark = [pytest.mark.reference, pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated")]


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


def run(coro: Any) -> Any:
    """A probe's result; fails the test if the probe had none."""
    attempt: Attempt[Any] = asyncio.run(coro)
    assert attempt.ok, attempt.reason
    return attempt.result


def attempt_of(coro: Any) -> Attempt[Any]:
    return asyncio.run(coro)  # type: ignore[no-any-return]


class Flawed(NamedTuple):
    gateway: Gateway
    target: Target
    cfg: ProbeConfig


@pytest.fixture
def flawed_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flawed]:
    """A gateway configured by the test's ``@pytest.mark.gateway(flaws=[...])`` marker, its target and a
    probe configuration; errors raised inside its servers fail the test."""
    marker = request.node.get_closest_marker("gateway")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid}: flawed_gateway needs @pytest.mark.gateway(flaws=[...])")
    with flawed(tmp_path, *marker.kwargs.get("flaws", ())) as (gateway, target, cfg):
        yield Flawed(gateway, target, cfg)


@contextlib.contextmanager
def flawed(tmp_path: Path, *names: str) -> Iterator[tuple[Gateway, Target, ProbeConfig]]:
    """A gateway with flaws on, its target and a probe configuration; server errors fail the test."""
    with Gateway(names, workdir=tmp_path) as gateway:
        target = load_target(gateway.write_target(tmp_path / "target.toml"))
        yield gateway, target, ProbeConfig.from_target(target)
        gateway.check_errors()


def unverified() -> ssl.SSLContext:
    return ssl._create_unverified_context()  # the certificate is judged by the probes, not here


# --- the good gateway ------------------------------------------------------------------------------------
def test_target_file_loads_with_both_nodes_and_hooks(target: Target, good: Gateway) -> None:
    assert [n.name for n in target.nodes] == ["node1", "node2"]
    assert len(target.endpoints) == 14  # mx, submission(s), imap(s), pop3(s) on two nodes
    assert all(n.hooks is not None and n.hooks.down[-1] == n.name for n in target.nodes)
    assert target.account("lockout") is not None and target.policy.lockout_threshold == 5
    assert endpoint(target, "imaps", "node2").port == good.ports[("node2", "imaps")]
    for role in ("test", "lockout", "other"):
        assert (good.workdir / f"{role}.password").stat().st_mode & 0o077 == 0


def test_smtp_capabilities_of_the_good_gateway(target: Target, cfg: ProbeConfig) -> None:
    mx = run(probe_smtp_capabilities(endpoint(target, "mx"), cfg))
    assert mx.starttls_offered and mx.tls is not None and not mx.auth_mechanisms_after_tls
    sub = run(probe_smtp_capabilities(endpoint(target, "submission", "node2"), cfg))
    assert sub.starttls_offered and not sub.auth_mechanisms_before_tls
    assert sub.cleartext_auth is CleartextAuth.REFUSED_FOR_TLS
    assert {"PLAIN", "LOGIN"} <= sub.auth_mechanisms_after_tls and "STARTTLS" not in str(sub.post_tls)
    subs = run(probe_smtp_capabilities(endpoint(target, "submissions"), cfg))
    assert subs.tls is not None and "PLAIN" in subs.auth_mechanisms_after_tls


def test_imap_capabilities_of_the_good_gateway(target: Target, cfg: ProbeConfig) -> None:
    imap = run(probe_imap_capabilities(endpoint(target, "imap"), cfg))
    assert imap.logindisabled_before_tls and imap.starttls_offered
    assert imap.cleartext_login is CleartextAuth.REFUSED_FOR_TLS
    assert imap.post_tls is not None and "STARTTLS" not in imap.post_tls and "AUTH=PLAIN" in imap.post_tls
    imaps = run(probe_imap_capabilities(endpoint(target, "imaps", "node2"), cfg))
    assert imaps.tls is not None and not imaps.preauth


@pytest.mark.parametrize("service", ["mx", "submission", "submissions", "imap", "imaps"])
def test_handshake_verifies_on_every_service(target: Target, cfg: ProbeConfig, service: str) -> None:
    for node in ("node1", "node2"):
        result = run(probe_handshake(endpoint(target, service, node), cfg))
        assert result.verified, result.verify_error
        assert result.version in ("TLSv1.3", "TLSv1.2")


@pytest.mark.parametrize("service", ["submission", "submissions", "imap", "imaps"])
def test_login_right_and_wrong_password(gw: Gateway, target: Target, cfg: ProbeConfig, service: str) -> None:
    account = target.accounts["test"]
    ok = run(probe_login(endpoint(target, service), cfg, account.username, account.password))
    assert ok.outcome is LoginOutcome.ACCEPTED, ok.reply
    bad = run(probe_login(endpoint(target, service), cfg, account.username, "not-the-password"))
    unknown = run(probe_login(endpoint(target, service), cfg, "nobody@example.test", "not-the-password"))
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
    assert all(info.fails and info.family in ("starttls", "tls", "cert", "auth", "lockout", "failover", "dns",
                                              "outbound")
               for info in FLAWS.values())
    flaws = Flaws.parse(["tls1_0"])
    assert "tls1_0" in flaws and "no_tls13" not in flaws and flaws.names == ("tls1_0",)
    with pytest.raises(ValueError, match="unknown flaw 'tls9'.*valid flaws: .*no_starttls"):
        Flaws.parse(["tls9"])


def test_cli_lists_flaws() -> None:
    out = subprocess.run([sys.executable, "-m", "conformance.cli", "serve", "--list-flaws"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert all(name in out for name in FLAWS)


# --- STARTTLS and implicit TLS flaws -----------------------------------------------------------------------
@pytest.mark.gateway(flaws=["no_starttls"])
def test_no_starttls_hides_starttls_on_the_mx_only(flawed_gateway: Flawed) -> None:
    _, target, cfg = flawed_gateway
    assert not run(probe_smtp_capabilities(endpoint(target, "mx"), cfg)).starttls_offered
    assert run(probe_smtp_capabilities(endpoint(target, "submission"), cfg)).starttls_offered


@pytest.mark.gateway(flaws=["auth_before_tls"])
def test_auth_before_tls(flawed_gateway: Flawed) -> None:
    _, target, cfg = flawed_gateway
    sub = run(probe_smtp_capabilities(endpoint(target, "submission"), cfg))
    assert sub.auth_mechanisms_before_tls and sub.cleartext_auth is CleartextAuth.CREDENTIALS_CHECKED


@pytest.mark.gateway(flaws=["imap_login_before_tls"])
def test_imap_login_before_tls(flawed_gateway: Flawed) -> None:
    _, target, cfg = flawed_gateway
    imap = run(probe_imap_capabilities(endpoint(target, "imap"), cfg))
    assert not imap.logindisabled_before_tls
    assert imap.cleartext_login is CleartextAuth.CREDENTIALS_CHECKED


@pytest.mark.gateway(flaws=["starttls_offered_twice"])
def test_starttls_offered_twice(flawed_gateway: Flawed) -> None:
    _, target, cfg = flawed_gateway
    sub = run(probe_smtp_capabilities(endpoint(target, "submission"), cfg))
    assert sub.post_tls is not None and sub.post_tls.starttls
    imap = run(probe_imap_capabilities(endpoint(target, "imap"), cfg))
    assert imap.post_tls is not None and "STARTTLS" in imap.post_tls


@pytest.mark.gateway(flaws=["no_implicit_tls"])
def test_no_implicit_tls(flawed_gateway: Flawed) -> None:
    gw, target, cfg = flawed_gateway
    assert not attempt_of(probe_handshake(endpoint(target, "submissions"), cfg)).ok
    assert not attempt_of(probe_handshake(endpoint(target, "imaps"), cfg)).ok
    with smtplib.SMTP("127.0.0.1", gw.ports[("node1", "submissions")], timeout=5) as smtp:
        assert smtp.ehlo()[0] == 250 and smtp.has_extn("auth")  # AUTH offered in plaintext


# --- TLS and certificate flaws ---------------------------------------------------------------------------
def tls_client(minimum: ssl.TLSVersion = ssl.TLSVersion.MINIMUM_SUPPORTED,
               maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED, ciphers: str | None = None,
               ) -> ssl.SSLContext:
    context = unverified()
    context.minimum_version, context.maximum_version = minimum, maximum
    if ciphers:
        context.set_ciphers(ciphers)
    return context


def handshake(port: int, context: ssl.SSLContext) -> tuple[str, str] | None:
    """(version, cipher) of a handshake with an imaps port, None if it failed."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="mx1.example.test") as tls:
            return tls.version() or "", (tls.cipher() or ("",))[0]
    except (ssl.SSLError, OSError):
        return None


TLS10: dict[str, Any] = {"minimum": ssl.TLSVersion.TLSv1, "maximum": ssl.TLSVersion.TLSv1, "ciphers": "DEFAULT:@SECLEVEL=0"}
TLS12: dict[str, Any] = {"maximum": ssl.TLSVersion.TLSv1_2}


def test_good_tls_posture(good: Gateway) -> None:
    port = good.ports[("node2", "imaps")]
    assert handshake(port, tls_client(**TLS10)) is None
    assert handshake(port, tls_client(**TLS12)) is not None
    assert (handshake(port, tls_client()) or ("",))[0] == "TLSv1.3"
    assert handshake(port, tls_client(ciphers="aNULL:@SECLEVEL=0", **TLS12)) is None
    assert handshake(port, tls_client(ciphers="AES128-GCM-SHA256", **TLS12)) is None


@pytest.mark.parametrize(("flaw", "client", "expect"), [
    ("tls1_0", TLS10, "TLSv1"),
    ("tls13_only", TLS12, None),
    ("no_tls13", {}, "TLSv1.2"),
    ("anon_suites", {"ciphers": "aNULL:@SECLEVEL=0", **TLS12}, "ADH-AES"),
    ("static_rsa", {"ciphers": "AES128-GCM-SHA256", **TLS12}, "AES128-GCM-SHA256"),
])
def test_tls_flaws(tmp_path: Path, flaw: str, client: dict[str, Any], expect: str | None) -> None:
    with flawed(tmp_path, flaw) as (gw, _, _):
        got = handshake(gw.ports[("node1", "imaps")], tls_client(**client))
        if expect is None:
            assert got is None
        else:
            assert got is not None and (got[0] == expect or got[1].startswith(expect)), got


@pytest.mark.gateway(flaws=["weak_backup_node"])
def test_weak_backup_node_accepts_tls1_0_on_node2_only(flawed_gateway: Flawed) -> None:
    gw, _, _ = flawed_gateway
    assert handshake(gw.ports[("node1", "imaps")], tls_client(**TLS10)) is None
    assert handshake(gw.ports[("node2", "imaps")], tls_client(**TLS10)) is not None


@pytest.mark.parametrize(("flaw", "defect"), [
    ("untrusted_cert", lambda r: not r.verified and not r.cert.chains_to_trust),
    ("wrong_hostname", lambda r: not r.verified and not r.cert.names_match),
    ("expired_cert", lambda r: not r.verified and r.cert.expired),
    ("expiring_cert", lambda r: r.verified and r.cert.days_to_expiry <= 5),
    ("weak_key", lambda r: r.cert.key_bits == 1024),
    ("sha1_cert", lambda r: r.cert.weak_signatures),  # the probe also finds no trusted path (cryptography)
])
def test_certificate_flaws(tmp_path: Path, flaw: str, defect: Any) -> None:
    with flawed(tmp_path, flaw) as (_, target, cfg):
        for service in ("mx", "imaps"):
            result = run(probe_handshake(endpoint(target, service, "node2"), cfg))
            assert result.cert is not None and defect(result), result


# --- SMTP policy: relay, enumeration, smuggling, STARTTLS state --------------------------------------------
@contextlib.contextmanager
def smtp(gw: Gateway, service: str = "mx", node: str = "node1", *, tls: bool = True,
         login: str | None = None) -> Iterator[smtplib.SMTP]:
    """An smtplib session (STARTTLS, optionally logged in as an account role)."""
    port = gw.ports[(node, service)]
    client = (smtplib.SMTP_SSL("127.0.0.1", port, timeout=5, context=unverified()) if service == "submissions"
              else smtplib.SMTP("127.0.0.1", port, timeout=5))
    with client:
        client.ehlo()
        if tls and service != "submissions":
            client.starttls(context=unverified())
            client.ehlo()
        if login is not None:
            client.login(*gw.accounts[login])
        yield client


BARE_LF = "<LF>.<LF>"  # one form is enough here: the flaw ends DATA at any LF
RELAY_FORMS = ["user@other.example", "user%other.example@example.test", "other.example!user@example.test",
               "@example.test:user@other.example", '"user@other.example"@example.test']


def test_good_mx_policy(gw: Gateway) -> None:
    with smtp(gw) as client:
        assert client.mail("someone@elsewhere.example")[0] == 250
        for recipient in RELAY_FORMS:
            assert client.rcpt(f"<{recipient}>")[0] == 554, recipient
        assert client.rcpt("alice@example.test")[0] == 250
        assert client.verify("alice@example.test")[0] == 252
        assert client.docmd("EXPN", "staff")[0] == 502
        assert client.docmd("AUTH", "PLAIN")[0] == 502
        assert not client.has_extn("auth")
    with smtp(gw) as client:
        client.mail("someone@elsewhere.example")
        codes = [client.rcpt(f"nobody{i}@example.test")[0] for i in range(21)]
        assert codes == [550] * 20 + [421]


def test_good_submission_policy(gw: Gateway) -> None:
    with smtp(gw, "submission", tls=False) as client:
        assert not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN") == (530, b"5.7.0 Must issue a STARTTLS command first")
        assert client.mail("alice@example.test")[0] == 530
    with smtp(gw, "submission") as client:
        assert client.mail("alice@example.test") == (530, b"5.7.0 Authentication required")
        assert client.docmd("AUTH", "ANONYMOUS")[0] == 504
        assert client.esmtp_features["auth"].split() == ["CRAM-MD5", "LOGIN", "OAUTHBEARER", "PLAIN",
                                                         "SCRAM-SHA-256", "XOAUTH2"]
    with smtp(gw, "submissions", login="test") as client:
        assert client.mail("bob@example.test")[0] == 553  # not the user's own address
        assert client.rset()[0] == 250
        assert client.mail("alice@example.test")[0] == 250
        assert client.rcpt("someone@other.example")[0] == 250  # authenticated relay is what submission is for


def test_good_starttls_resets_the_session(gw: Gateway) -> None:
    with smtp(gw, tls=False) as client:
        client.starttls(context=unverified())
        assert client.mail("someone@elsewhere.example")[0] == 503  # EHLO needed again (RFC 3207 4.2)


def _line(sock: socket.socket) -> bytes:
    found = b""
    while not found.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        assert chunk, f"closed after {found!r}"
        found += chunk
    return found


@pytest.mark.parametrize(("service", "command"), [("imap", b"a STARTTLS\r\n"), ("pop3", b"STLS\r\n")],
                         ids=["imap", "pop3"])
def test_a_client_closing_in_the_same_flight_as_its_handshake_leaves_no_asyncio_warning(
        gw: Gateway, service: str, command: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """The client's Finished and close_notify in one segment: the server's TLS layer reads the close in the
    same turn that completes the handshake, before start_tls has returned to the session."""
    with socket.create_connection(("127.0.0.1", gw.ports[("node1", service)]), timeout=5) as sock:
        _line(sock)
        sock.sendall(command)
        _line(sock)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = unverified().wrap_bio(incoming, outgoing)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()
        sock.sendall(outgoing.read())
        while sock.recv(65536):  # the gateway has handled the close once it closes too
            pass
    assert not [r.getMessage() for r in caplog.records if "eof_received" in r.getMessage()]


def test_good_gateway_resists_injection_and_smuggling(target: Target, cfg: ProbeConfig, gw: Gateway) -> None:
    for service in ("mx", "submission", "imap"):
        result = run(probe_starttls_injection(endpoint(target, service), cfg))
        assert not result.executed_after_tls and result.answered_in_plaintext is None, result
    smuggling = run(probe_smuggling(endpoint(target, "mx"), cfg, sender="probe@elsewhere.example",
                                    recipient="alice@example.test", forms=(BARE_LF,)))
    assert not smuggling.vulnerable and smuggling.forms[0].data_reply.startswith("250")
    assert b"NOOP smuggled" in gw.mailbox("alice@example.test")[0]


@pytest.mark.parametrize("flaw", ["starttls_injection", "no_state_reset"])
def test_starttls_state_flaws(tmp_path: Path, flaw: str) -> None:
    with flawed(tmp_path, flaw) as (gw, target, cfg):
        if flaw == "starttls_injection":
            for service in ("mx", "submission", "imap"):
                assert run(probe_starttls_injection(endpoint(target, service), cfg)).executed_after_tls, service
        else:
            with smtp(gw, tls=False) as client:
                client.starttls(context=unverified())
                assert client.mail("someone@elsewhere.example")[0] == 250


@pytest.mark.gateway(flaws=["starttls_response_injection"])
def test_starttls_response_injection(flawed_gateway: Flawed) -> None:
    _, target, cfg = flawed_gateway
    result = run(probe_starttls_injection(endpoint(target, "mx"), cfg))
    assert result.answered_in_plaintext is not None and "go-ahead" in result.answered_in_plaintext


@pytest.mark.gateway(flaws=["imap_preauth"])
def test_imap_preauth(flawed_gateway: Flawed) -> None:
    _, target, cfg = flawed_gateway
    assert run(probe_imap_capabilities(endpoint(target, "imaps"), cfg)).preauth
    assert not run(probe_imap_capabilities(endpoint(target, "imap"), cfg)).preauth


@pytest.mark.gateway(flaws=["open_relay"])
def test_open_relay(flawed_gateway: Flawed) -> None:
    _, target, cfg = flawed_gateway
    relay = run(probe_relay_forms(endpoint(target, "mx", "node2"), cfg, local_domain="example.test"))
    assert "plain" in {a.form for a in relay.attempts if a.accepted}, relay


@pytest.mark.gateway(flaws=["percent_hack_relay"])
def test_percent_hack_relay(flawed_gateway: Flawed) -> None:
    gw, target, cfg = flawed_gateway
    relay = run(probe_relay_forms(endpoint(target, "mx"), cfg, local_domain="example.test"))
    assert [a.form for a in relay.attempts if a.accepted] == ["percent-hack"]
    with smtp(gw) as client:
        client.mail("someone@elsewhere.example")
        assert [client.rcpt(f"<{r}>")[0] for r in RELAY_FORMS] == [554, 250, 554, 554, 554]


def test_submission_flaws(tmp_path: Path) -> None:
    with flawed(tmp_path, "unauth_submission", "sender_spoofing", "anonymous_login", "broken_mechanism") \
            as (gw, _, _):
        with smtp(gw, "submission") as client:
            assert client.mail("anyone@example.test")[0] == 250
            assert client.rcpt("someone@other.example")[0] == 250
        with smtp(gw, "submissions", login="test") as client:
            assert client.mail("bob@example.test")[0] == 250
        with smtp(gw, "submission") as client:
            assert {"ANONYMOUS", "CRAM-MD5"} <= set(client.esmtp_features["auth"].split())
            assert client.docmd("AUTH", "ANONYMOUS dHJhY2U=")[0] == 235
        with smtp(gw, "submission") as client:
            assert client.docmd("AUTH", "CRAM-MD5")[0] == 334
            assert client.docmd("YWxpY2UgMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=")[0] == 535


def test_enumeration_flaws(tmp_path: Path) -> None:
    with flawed(tmp_path, "vrfy_enabled", "unlimited_rcpt") as (gw, _, _), smtp(gw) as client:
        assert client.verify("alice@example.test")[0] == 250
        assert client.verify("nobody@example.test")[0] == 550
        client.mail("someone@elsewhere.example")
        assert {client.rcpt(f"nobody{i}@example.test")[0] for i in range(25)} == {550}


@pytest.mark.gateway(flaws=["accept_any_password", "auth_user_enumeration"])
def test_login_flaws(flawed_gateway: Flawed) -> None:
    _, target, cfg = flawed_gateway
    account = target.accounts["other"]
    for service in ("submissions", "imaps"):
        wrong = run(probe_login(endpoint(target, service), cfg, account.username, "wrong"))
        unknown = run(probe_login(endpoint(target, service), cfg, "nobody@example.test", "wrong"))
        assert wrong.accepted and not unknown.accepted and "No such user" in unknown.reply


def test_auth_timing_oracle(tmp_path: Path) -> None:
    """Only the login exchange is timed (not connection and TLS set-up), so CPU load cannot hide the delay."""

    def smtp_auth(gw: Gateway, user: str) -> float:
        with smtp(gw, "submissions") as client:
            blob = base64.b64encode(f"\0{user}\0wrong".encode()).decode()
            started = time.monotonic()
            assert client.docmd("AUTH", f"PLAIN {blob}")[0] == 535
            return time.monotonic() - started

    def imap_login(gw: Gateway, user: str) -> float:
        with IMAPClient("127.0.0.1", port=gw.ports[("node1", "imaps")], ssl=True, ssl_context=unverified(),
                        timeout=5) as imap:
            started = time.monotonic()
            with pytest.raises(IMAPClient.Error):
                imap.login(user, "wrong")
            return time.monotonic() - started

    with Gateway(["auth_timing_oracle"], workdir=tmp_path, settings=Settings(timing_oracle_delay=0.3)) as gw:
        for login in (smtp_auth, imap_login):
            assert login(gw, "bob@example.test") > login(gw, "nobody@example.test") + 0.2
        gw.check_errors()


@pytest.mark.gateway(flaws=["bare_lf_end_of_data"])
def test_bare_lf_end_of_data(flawed_gateway: Flawed) -> None:
    _, target, cfg = flawed_gateway
    for node in ("node1", "node2"):
        result = run(probe_smuggling(endpoint(target, "mx", node), cfg, sender="probe@elsewhere.example",
                                     recipient="alice@example.test", forms=(BARE_LF,)))
        assert result.vulnerable


# --- the lockout engine (fake clock: no sleeping) ------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> bool:
        self.now += seconds
        return True


def engine(*flaws: str) -> tuple[AuthEngine, Clock]:
    clock = Clock()
    return AuthEngine({"alice@example.test": "right", "bob@example.test": "right"}, Flaws.parse(flaws),
                      threshold=5, window=3.0, duration=3.0, clock=clock), clock


def fail(auth: AuthEngine, clock: Clock, user: str, times: int, protocol: str = "smtp",
         prefix: str = "wrong") -> list[Verdict]:
    verdicts = []
    for i in range(times):
        clock.now += 0.1
        verdicts.append(auth.login(protocol, user, f"{prefix}{i}").verdict)
    return verdicts


def test_lockout_engine_good_behaviour() -> None:
    auth, clock = engine()
    assert fail(auth, clock, "alice@example.test", 5) == [Verdict.REJECTED] * 5
    assert auth.login("imap", "alice@example.test", "right").verdict is Verdict.LOCKED  # shared across protocols
    assert auth.login("smtp", "bob@example.test", "right").verdict is Verdict.ACCEPTED  # no collateral
    clock.now += 3.1
    assert auth.login("smtp", "alice@example.test", "right").verdict is Verdict.ACCEPTED  # unlocked by itself
    # unknown users lock exactly like real ones: no oracle
    assert fail(auth, clock, "nobody@example.test", 6)[-1] is Verdict.LOCKED
    # a success resets the count
    fail(auth, clock, "bob@example.test", 4)
    assert auth.login("smtp", "bob@example.test", "right").verdict is Verdict.ACCEPTED
    assert fail(auth, clock, "bob@example.test", 4, prefix="again") == [Verdict.REJECTED] * 4
    assert auth.login("smtp", "bob@example.test", "right").verdict is Verdict.ACCEPTED
    # a stale password repeated counts once; attempts while the backend is down do not count
    for _ in range(10):
        clock.now += 0.1
        assert auth.login("smtp", "bob@example.test", "old-password").verdict is Verdict.REJECTED
        assert auth.login("smtp", "bob@example.test", "x", backend_up=False).verdict is Verdict.UNAVAILABLE
    assert auth.login("smtp", "bob@example.test", "right").verdict is Verdict.ACCEPTED
    for _ in range(5):
        auth.session_started("bob@example.test")
    assert auth.login("smtp", "bob@example.test", "right").verdict is Verdict.ACCEPTED  # no concurrency limit


def test_lockout_window_forgets_old_failures() -> None:
    auth, clock = engine()
    fail(auth, clock, "alice@example.test", 4)
    clock.now += 3.5
    assert fail(auth, clock, "alice@example.test", 4, prefix="later") == [Verdict.REJECTED] * 4
    assert auth.login("smtp", "alice@example.test", "right").verdict is Verdict.ACCEPTED


@pytest.mark.parametrize(("flaw", "scenario"), [
    ("no_lockout", lambda a, c: fail(a, c, "alice@example.test", 8)[-1] is Verdict.REJECTED),
    ("per_protocol_lockout", lambda a, c: fail(a, c, "alice@example.test", 5) and
     a.login("imap", "alice@example.test", "right").verdict is Verdict.ACCEPTED),
    ("permanent_lockout", lambda a, c: fail(a, c, "alice@example.test", 5) and c.advance(1e6) and
     a.login("smtp", "alice@example.test", "right").verdict is Verdict.LOCKED),
    ("success_no_reset", lambda a, c: fail(a, c, "alice@example.test", 4) and
     a.login("smtp", "alice@example.test", "right").verdict is Verdict.ACCEPTED and
     fail(a, c, "alice@example.test", 1, prefix="x") and
     a.login("smtp", "alice@example.test", "right").verdict is Verdict.LOCKED),
    ("lockout_oracle", lambda a, c: fail(a, c, "nobody@example.test", 8)[-1] is Verdict.REJECTED),
    ("outage_counts_failures", lambda a, c: [a.login("smtp", "alice@example.test", "right", backend_up=False)
                                             for _ in range(5)] and
     a.login("smtp", "alice@example.test", "right").verdict is Verdict.LOCKED),
    ("burst_login_limit", lambda a, c: [a.session_started("alice@example.test") for _ in range(3)] and
     a.login("smtp", "alice@example.test", "right").verdict is Verdict.REJECTED),
    ("stale_password_counted", lambda a, c: [a.login("smtp", "alice@example.test", "old") for _ in range(5)] and
     a.login("smtp", "alice@example.test", "right").verdict is Verdict.LOCKED),
    ("lockout_collateral", lambda a, c: fail(a, c, "alice@example.test", 5) and
     a.login("smtp", "bob@example.test", "right").verdict is Verdict.LOCKED),
])
def test_lockout_flaws(flaw: str, scenario: Any) -> None:
    good, good_clock = engine()
    bad, bad_clock = engine(flaw)
    assert scenario(bad, bad_clock)
    assert not scenario(good, good_clock)


def test_lockout_through_smtp_and_imap(gw: Gateway, target: Target, cfg: ProbeConfig) -> None:
    account = target.accounts["lockout"]
    for i in range(5):
        assert run(probe_login(endpoint(target, "submissions", f"node{i % 2 + 1}"), cfg, account.username,
                               f"wrong-{i}")).outcome is LoginOutcome.REJECTED
    for service in ("submission", "imaps", "imap"):
        locked = run(probe_login(endpoint(target, service, "node2"), cfg, account.username, account.password))
        assert locked.outcome is LoginOutcome.TEMPORARY, locked.reply
    assert "454 4.7.0" in locked.reply or "[UNAVAILABLE]" in locked.reply


# --- outages and failover -----------------------------------------------------------------------------------
def send(gw: Gateway, node: str, subject: str, *, service: str = "mx") -> tuple[int, bytes]:
    """Send one message to alice over the mx (or submission as alice); (code, text) of the DATA reply."""
    with smtp(gw, service, node, login="test" if service != "mx" else None) as client:
        client.mail("alice@example.test")
        client.rcpt("alice@example.test")
        return client.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())


def test_delivery_outage_is_temporary_and_the_other_node_stores_once(gw: Gateway) -> None:
    gw.outage("node1", "delivery", down=True)
    assert send(gw, "node1", "outage")[0] == 451
    assert send(gw, "node2", "outage")[0] == 250
    gw.outage("node1", "delivery", down=False)
    assert send(gw, "node1", "after")[0] == 250
    assert len(gw.mailbox("alice@example.test")) == 2


def test_directory_auth_and_stall_outages(gw: Gateway, target: Target, cfg: ProbeConfig) -> None:
    gw.outage("node1", "directory", down=True)
    with smtp(gw) as client:
        client.mail("someone@elsewhere.example")
        assert client.rcpt("alice@example.test")[0] == 451
    gw.outage("node1", "auth", down=True)
    account = target.accounts["test"]
    for service in ("submission", "imap"):
        for _ in range(6):  # more than the threshold: not counted
            down = run(probe_login(endpoint(target, service), cfg, account.username, account.password))
            assert down.outcome is LoginOutcome.TEMPORARY, down.reply
    gw.outage("node1", "auth", down=False)
    assert run(probe_login(endpoint(target, "imap"), cfg, account.username, account.password)).accepted
    gw.outage("node2", "stall", down=True)
    started = time.monotonic()
    assert send(gw, "node2", "stalled")[0] == 250
    assert time.monotonic() - started < 2


def test_node_down_answers_421_and_comes_back(gw: Gateway) -> None:
    with smtp(gw, "submission", "node2") as client:
        gw.outage("node2", "node", down=True)
        assert client.noop()[0] == 421  # the 421 sent at shutdown, inside TLS
    with pytest.raises(smtplib.SMTPConnectError, match="421"):
        smtplib.SMTP("127.0.0.1", gw.ports[("node2", "mx")], timeout=5)
    with pytest.raises(IMAPClient.Error):
        IMAPClient("127.0.0.1", port=gw.ports[("node2", "imap")], ssl=False, timeout=5)
    assert send(gw, "node1", "still up")[0] == 250
    gw.outage("node2", "node", down=False)
    assert send(gw, "node2", "back")[0] == 250


def test_hooks_in_the_target_take_a_node_down_and_up(gw: Gateway, target: Target) -> None:
    hooks = target.node("node1").hooks
    assert hooks is not None
    subprocess.run(hooks.down, check=True, timeout=hooks.timeout, capture_output=True)
    assert gw.outages.is_down("node1", Component.NODE)
    subprocess.run(hooks.up, check=True, timeout=hooks.timeout, capture_output=True)
    assert not gw.outages.is_down("node1", Component.NODE)
    bad = subprocess.run([*hooks.down[:-1], "node9"], check=False, timeout=hooks.timeout, capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "unknown node 'node9'" in bad.stderr
    with pytest.raises(ValueError, match="unknown component"):
        gw.outage("node1", "disk", down=True)


@pytest.mark.gateway(flaws=["permfail_during_outage"])
def test_permfail_during_outage(flawed_gateway: Flawed) -> None:
    gw, _, _ = flawed_gateway
    gw.outage("node1", "delivery", down=True)
    assert send(gw, "node1", "x")[0] == 554


@pytest.mark.gateway(flaws=["lose_mail_during_outage"])
def test_lose_mail_during_outage(flawed_gateway: Flawed) -> None:
    gw, _, _ = flawed_gateway
    gw.outage("node1", "delivery", down=True)
    assert send(gw, "node1", "x")[0] == 250
    gw.outage("node1", "delivery", down=False)
    assert gw.mailbox("alice@example.test") == []


@pytest.mark.gateway(flaws=["duplicate_after_recovery"])
def test_duplicate_after_recovery(flawed_gateway: Flawed) -> None:
    gw, _, _ = flawed_gateway
    gw.outage("node1", "delivery", down=True)
    assert send(gw, "node1", "x", service="submission")[0] == 250
    assert gw.mailbox("alice@example.test") == []
    gw.outage("node1", "delivery", down=False)
    assert len(gw.mailbox("alice@example.test")) == 2


@pytest.mark.gateway(flaws=["directory_down_550", "auth_down_says_wrong_password"])
def test_backend_outage_flaws(flawed_gateway: Flawed) -> None:
    gw, target, cfg = flawed_gateway
    gw.outage("node2", "directory", down=True)
    gw.outage("node2", "auth", down=True)
    with smtp(gw, node="node2") as client:
        client.mail("someone@elsewhere.example")
        assert client.rcpt("alice@example.test")[0] == 550
    account = target.accounts["test"]
    for service in ("submissions", "imaps", "pop3s"):
        down = run(probe_login(endpoint(target, service, "node2"), cfg, account.username, account.password))
        assert down.outcome is LoginOutcome.REJECTED


def test_slow_data_reply(tmp_path: Path) -> None:
    with Gateway(["slow_data_reply"], workdir=tmp_path, settings=Settings(stall_delay=0.5)) as gw:
        gw.outage("node1", "stall", down=True)
        started = time.monotonic()
        assert send(gw, "node1", "slow")[0] == 250
        assert time.monotonic() - started >= 0.5
        gw.check_errors()


def test_reset_on_shutdown(tmp_path: Path) -> None:
    import socket

    with flawed(tmp_path, "reset_on_shutdown") as (gw, _, _), \
            socket.create_connection(("127.0.0.1", gw.ports[("node1", "mx")]), timeout=5) as sock:
        assert sock.recv(1024).startswith(b"220")
        gw.outage("node1", "node", down=True)
        with pytest.raises(ConnectionResetError):
            sock.recv(1024)
            sock.recv(1024)


@pytest.mark.gateway(flaws=["single_node"])
def test_single_node(flawed_gateway: Flawed) -> None:
    gw, target, _ = flawed_gateway
    assert [n.name for n in target.nodes] == ["node1"] and len(gw.ports) == 7


def test_set_flaws_and_reset_keep_the_ports(gw: Gateway) -> None:
    ports = dict(gw.ports)
    try:
        gw.set_flaws(["vrfy_enabled"])
        assert gw.ports == ports
        with smtp(gw) as client:
            assert client.verify("alice@example.test")[0] == 250
    finally:
        gw.set_flaws([])
    assert gw.ports == ports


def test_burst_limit_is_scoped_to_the_flaw_users() -> None:
    auth, _ = engine("burst_login_limit")
    auth.flaw_users = frozenset({"bob@example.test"})
    for user in ("alice@example.test", "bob@example.test"):
        for _ in range(3):
            auth.session_started(user)
    assert auth.login("smtp", "alice@example.test", "right").verdict is Verdict.ACCEPTED
    assert auth.login("smtp", "bob@example.test", "right").verdict is Verdict.REJECTED


# --- SASL mechanisms -------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["submission", "submissions", "imap", "imaps"])
def test_every_advertised_mechanism_is_tried(gw: Gateway, target: Target, cfg: ProbeConfig, service: str) -> None:
    account = target.accounts["test"]
    posture = run(probe_auth_posture(endpoint(target, service), cfg, account.username, account.password,
                                     wrong_username=account.username, wrong_password="wrong",
                                     token=account.token))
    assert {"CRAM-MD5", "SCRAM-SHA-256", "OAUTHBEARER", "XOAUTH2"} <= posture.advertised
    assert {m.mechanism: m.outcome for m in posture.mechanisms} == dict.fromkeys(posture.advertised,
                                                                               LoginOutcome.ACCEPTED)


@pytest.mark.parametrize("mechanism", ["CRAM-MD5", "SCRAM-SHA-256"])
@pytest.mark.parametrize(("service", "code"), [("submissions", "535 5.7.8"), ("imaps", "NO [AUTHENTICATIONFAILED]")])
def test_challenge_response_wrong_password_is_rejected(gw: Gateway, target: Target, cfg: ProbeConfig,
                                                       mechanism: str, service: str, code: str) -> None:
    async def wrong() -> SaslReply:
        where = endpoint(target, service)
        async with tls_session(where, cfg, cfg.transcript(where)) as session:
            return await login_once(session, mechanism, target.accounts["other"].username, "wrong")
    reply = asyncio.run(wrong())
    assert reply.outcome is LoginOutcome.REJECTED and reply.code == code, reply.reply


@pytest.mark.gateway(flaws=["broken_mechanism"])
def test_broken_mechanism(flawed_gateway: Flawed) -> None:
    _, target, cfg = flawed_gateway
    account = target.accounts["test"]
    posture = run(probe_auth_posture(endpoint(target, "submissions"), cfg, account.username, account.password,
                                     wrong_username=account.username, wrong_password="wrong",
                                     token=account.token))
    assert {m.mechanism for m in posture.mechanisms if m.outcome is not LoginOutcome.ACCEPTED} == {"CRAM-MD5"}
