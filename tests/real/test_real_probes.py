"""The project's probes against real Postfix and Dovecot: each configuration is what its files say."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Coroutine
from email.message import EmailMessage
from typing import Any, TypeVar

import imapclient
import pytest

from conformance.probes.abuse.relay import RcptAttempt, probe_relay_forms
from conformance.probes.failover.delivery import build_report, new_run_id, read_back, submit_batch
from conformance.probes.imap.session import probe_imap_capabilities
from conformance.probes.smtp.session import probe_smtp_capabilities
from conformance.probes.tls.handshake import probe_handshake
from conformance.probes.tls.scan import TlsScan, scan_endpoint
from conformance.probes.tls.suites import Grade
from conformance.probes.tls.wire import TlsVersion
from conformance.probes.wire.config import CleartextAuth, ProbeConfig
from conformance.probes.wire.outcome import Attempt
from conformance.target import Endpoint, Service
from tests.real.servers import CONFIGS, DOMAIN, HOST, RealTarget

pytestmark = pytest.mark.real

Factory = Callable[[str], RealTarget]
R = TypeVar("R")
DELIVERY_TIMEOUT = 30.0  # seconds for Postfix to hand a message to Dovecot over LMTP


def _endpoint(real: RealTarget, service: str) -> Endpoint:
    return real.target.endpoints_for(service)[0]


def _cfg(real: RealTarget) -> ProbeConfig:
    return ProbeConfig.from_target(real.target)


def _result(coro: Coroutine[Any, Any, Attempt[R]]) -> R:
    """Run a probe; its result, or an assertion naming the outcome and the transcript."""
    attempt = asyncio.run(coro)
    assert attempt.ok and attempt.result is not None, (
        f"{attempt.outcome}: {attempt.reason}\n" + "\n".join(attempt.transcript))
    return attempt.result


def _plain_relay(real: RealTarget) -> RcptAttempt:
    """RCPT TO a foreign recipient, without AUTH, as the relay check sees it (never DATA)."""
    attempt = _result(probe_relay_forms(_endpoint(real, "mx"), _cfg(real), local_domain=DOMAIN)).form("plain")
    assert attempt is not None, "MAIL FROM was refused: no recipient tried"
    return attempt


def _scan(real: RealTarget, service: str) -> TlsScan:
    scan = _result(scan_endpoint(_endpoint(real, service), real.target))
    # Dovecot closes a TLS 1.1 hello carrying the fallback SCSV without any alert when it allows only
    # TLS 1.2+: the scanner rightly calls that inconclusive. Versions and suites must all be determined.
    undetermined = [i for i in scan.inconclusive if not i.startswith("fallback SCSV")]
    assert not undetermined, undetermined
    return scan


@pytest.mark.parametrize("name", list(CONFIGS))
def test_configuration_starts_on_every_port(real_target: Factory, name: str) -> None:
    real = real_target(name)
    assert {e.service.value for e in real.target.endpoints} == {s.value for s in Service}
    assert real.servers.workdir.is_dir()


def test_start_and_stop_twice_leaves_nothing_running() -> None:
    """Fresh temporary directories each time; stop really ends both masters and removes the directory."""
    from tests.real.processes import dovecot_pid_file, postfix_pid_file, process_alive, read_pid
    from tests.real.servers import GOOD, MailServers, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    dirs = []
    for _ in range(2):
        with MailServers(GOOD) as servers:
            pids = [read_pid(postfix_pid_file(servers.workdir)), read_pid(dovecot_pid_file(servers.workdir))]
            assert all(pids), servers.log_tail()
            dirs.append(servers.workdir)
        assert not any(process_alive(pid) for pid in pids if pid)
    assert dirs[0] != dirs[1] and not dirs[0].exists() and not dirs[1].exists()


# -- good --------------------------------------------------------------------------------------------------

def test_good_smtp_starttls_and_no_auth_before_tls(good_target: RealTarget) -> None:
    mx = _result(probe_smtp_capabilities(_endpoint(good_target, "mx"), _cfg(good_target)))
    assert mx.starttls_offered and mx.tls is not None and mx.tls.version == "TLSv1.3"
    assert not mx.auth_mechanisms_before_tls and not mx.auth_mechanisms_after_tls  # no AUTH on the MX
    sub = _result(probe_smtp_capabilities(_endpoint(good_target, "submission"), _cfg(good_target)))
    assert sub.starttls_offered and not sub.auth_mechanisms_before_tls
    assert sub.cleartext_auth is CleartextAuth.REFUSED_FOR_TLS, sub.auth_before_tls
    assert {"PLAIN", "LOGIN"} <= sub.auth_mechanisms_after_tls
    subs = _result(probe_smtp_capabilities(_endpoint(good_target, "submissions"), _cfg(good_target)))
    assert subs.tls is not None and "PLAIN" in subs.auth_mechanisms_after_tls


def test_good_imap_logindisabled_before_tls(good_target: RealTarget) -> None:
    imap = _result(probe_imap_capabilities(_endpoint(good_target, "imap"), _cfg(good_target)))
    assert imap.starttls_offered and imap.logindisabled_before_tls
    assert imap.cleartext_login is CleartextAuth.REFUSED_FOR_TLS
    assert imap.tls is not None and "LOGINDISABLED" not in (imap.post_tls or ())
    imaps = _result(probe_imap_capabilities(_endpoint(good_target, "imaps"), _cfg(good_target)))
    assert imaps.tls is not None and imaps.tls.version == "TLSv1.3"


@pytest.mark.parametrize("service", ["mx", "submission", "submissions", "imap", "imaps"])
def test_good_certificate_verifies(good_target: RealTarget, service: str) -> None:
    result = _result(probe_handshake(_endpoint(good_target, service), _cfg(good_target)))
    assert result.verified, result.verify_error


@pytest.mark.parametrize("service", ["mx", "imap"])
def test_good_tls_scan_only_tls12_13_strong_suites(good_target: RealTarget, service: str) -> None:
    scan = _scan(good_target, service)
    assert scan.accepted_versions == {TlsVersion.TLS1_2, TlsVersion.TLS1_3}, scan.summary()
    assert scan.weakest is Grade.STRONG, sorted(s.name for s in scan.all_suites)
    assert scan.compression is False and scan.secure_renegotiation is True


def test_good_mx_is_no_open_relay(good_target: RealTarget) -> None:
    relay = _plain_relay(good_target)
    assert not relay.accepted, relay.reply


def test_submitted_message_is_read_back_over_imap(good_target: RealTarget) -> None:
    """Independent clients: smtplib submits (STARTTLS, AUTH) through Postfix, Postfix hands the message
    to Dovecot over LMTP, imapclient reads it back over IMAPS. Both verify the certificate for HOST."""
    account = good_target.servers.accounts["test"]
    context = _named(ssl.create_default_context(cafile=str(good_target.servers.ca_path)))
    sub, imaps = _endpoint(good_target, "submission"), _endpoint(good_target, "imaps")
    marker = f"mailconform-{uuid.uuid4()}"
    message = EmailMessage()
    message["From"] = message["To"] = account.username
    message["Subject"] = marker
    message.set_content("delivered by the real-server proving ground\n")
    with smtplib.SMTP(sub.connect_host, sub.port, local_hostname="client.example.test", timeout=10) as smtp:
        smtp.starttls(context=context)
        smtp.login(account.username, account.password)
        smtp.send_message(message)
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    with imapclient.IMAPClient(imaps.connect_host, imaps.port, ssl=True, ssl_context=context, timeout=10) as imap:
        imap.login(account.username, account.password)
        imap.select_folder("INBOX")
        while not (uids := imap.search(["SUBJECT", marker])):
            assert time.monotonic() < deadline, good_target.servers.log_tail()
            time.sleep(0.2)  # delivery is asynchronous (qmgr -> lmtp); bounded by the deadline
            imap.noop()
        body = imap.fetch(uids[-1:], ["RFC822"])[uids[-1]][b"RFC822"]
    assert marker.encode() in body and b"Received:" in body


def test_delivery_probe_submits_and_reads_back(good_target: RealTarget) -> None:
    """The suite's own delivery probes: tagged messages through Postfix submission (STARTTLS, AUTH), over
    LMTP into Dovecot, counted over IMAPS: each delivered exactly once."""
    target, cfg = good_target.target, _cfg(good_target)
    account = target.account("test")
    assert account is not None
    run_id = new_run_id()
    submissions = asyncio.run(submit_batch(target.endpoints_for("submission", "submissions"), cfg, account,
                                           run_id, "real", range(3)))
    readback = read_back(_endpoint(good_target, "imaps"), cfg, account, run_id, [s.token for s in submissions],
                         deadline=DELIVERY_TIMEOUT)
    assert readback.ok, readback.reason
    assert readback.result is not None
    report = build_report(submissions, readback.result)
    assert (report.sent, report.accepted, report.delivered) == (3, 3, 3), (report.summary(), report.replies)
    assert not (report.lost or report.duplicated or report.late), report.summary()


def _named(context: ssl.SSLContext) -> ssl.SSLContext:
    """A context that checks the certificate for HOST whatever address the client connected to (smtplib
    and imapclient pass the connect address, 127.0.0.2, as the server name)."""
    class Named(ssl.SSLContext):
        def wrap_socket(self, sock: socket.socket, server_side: bool = False, do_handshake_on_connect: bool = True,
                        suppress_ragged_eofs: bool = True, server_hostname: str | bytes | None = None,
                        session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
            return context.wrap_socket(sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, HOST,
                                       session)
    return Named(ssl.PROTOCOL_TLS_CLIENT)


# -- weak configurations --------------------------------------------------------------------------------

@pytest.mark.parametrize("service", ["mx", "imaps"])
def test_weak_tls_accepts_tls10_and_weak_suites(real_target: Factory, service: str) -> None:
    scan = _scan(real_target("weak-tls"), service)
    assert {TlsVersion.TLS1_0, TlsVersion.TLS1_1} <= scan.accepted_versions, scan.summary()
    kexes = {s.kex for s in scan.all_suites}
    assert "RSA" in kexes, kexes  # static RSA key exchange
    assert any(not s.aead for s in scan.all_suites)  # CBC
    assert not any(s.kex.endswith("anon") for s in scan.all_suites)  # one weakness at a time: no aNULL


@pytest.mark.parametrize("service", ["submissions", "imap"])
def test_anon_tls_accepts_anonymous_suites_only_besides_strong_ones(real_target: Factory, service: str) -> None:
    scan = _scan(real_target("anon-tls"), service)
    assert scan.accepted_versions == {TlsVersion.TLS1_2, TlsVersion.TLS1_3}, scan.summary()
    anonymous = {s.name for s in scan.all_suites if s.kex.endswith("anon")}
    assert anonymous == {"TLS_DH_anon_WITH_AES_128_GCM_SHA256", "TLS_DH_anon_WITH_AES_256_GCM_SHA384"}
    assert all(s.aead for s in scan.all_suites)


def test_auth_before_tls_offers_auth_in_clear(real_target: Factory) -> None:
    real = real_target("auth-before-tls")
    sub = _result(probe_smtp_capabilities(_endpoint(real, "submission"), _cfg(real)))
    assert {"PLAIN", "LOGIN"} <= sub.auth_mechanisms_before_tls
    assert sub.cleartext_auth is not CleartextAuth.REFUSED_FOR_TLS


def test_imap_cleartext_allows_login_before_tls(real_target: Factory) -> None:
    real = real_target("imap-cleartext")
    imap = _result(probe_imap_capabilities(_endpoint(real, "imap"), _cfg(real)))
    assert not imap.logindisabled_before_tls
    assert imap.cleartext_login is CleartextAuth.CREDENTIALS_CHECKED, imap.login_before_tls


def test_open_relay_accepts_foreign_recipient(real_target: Factory) -> None:
    real = real_target("open-relay")
    relay = _plain_relay(real)
    assert relay.accepted, relay.reply


@pytest.mark.parametrize("name, problem", [("expired-cert", "expired"), ("wrong-name-cert", HOST)])
def test_bad_certificates_do_not_verify(real_target: Factory, name: str, problem: str) -> None:
    real = real_target(name)
    for service in ("mx", "imaps"):
        result = _result(probe_handshake(_endpoint(real, service), _cfg(real)))
        assert not result.verified and problem in (result.verify_error or ""), result.verify_error
