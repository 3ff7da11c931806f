"""probe_login: one login over TLS only, never to an unverified certificate unless told so."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import certgen
import pytest
from certgen import Pki
from fake_imap import FakeImap
from hostile import run, serving
from smtp_servers import PASSWORD, USER, Recorder, aiosmtpd_server

from conformance.probes.auth.logins import LoginOutcome, LoginResult, probe_login
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Secret, Service

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def good_context(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return certgen.server_context(pki, pki.leaf("localhost"), tmp_path_factory.mktemp("good"))


def cfg(anchor: Path | None) -> ProbeConfig:
    return ProbeConfig(timeout=5, trust_anchors=(anchor,) if anchor else (), use_system_store=False,
                       secrets=(PASSWORD,))


def smtp_login(context: ssl.SSLContext, anchor: Path | None, password: str, mechanism: str = "PLAIN",
               recorder: Recorder | None = None, **kwargs: Any) -> Attempt[LoginResult]:
    async def main() -> Attempt[LoginResult]:
        async with aiosmtpd_server(context, recorder=recorder) as endpoint:
            return await probe_login(endpoint, cfg(anchor), USER, Secret(password, "test"), mechanism=mechanism,
                                     **kwargs)
    return run(main())


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smtp_login_accepted_and_rejected(good_context: ssl.SSLContext, anchor: Path, mechanism: str) -> None:
    good = smtp_login(good_context, anchor, PASSWORD, mechanism)
    bad = smtp_login(good_context, anchor, "wrong", mechanism)
    assert good.outcome is Outcome.COMPLETED, good.reason
    assert good.result is not None and good.result.accepted and good.result.tls is not None
    assert bad.result is not None and bad.result.outcome is LoginOutcome.REJECTED
    assert bad.result.reply.startswith("535")
    assert PASSWORD not in "\n".join(good.transcript)


def test_smtp_unverified_certificate_gets_no_password(good_context: ssl.SSLContext) -> None:
    recorder = Recorder()
    result = smtp_login(good_context, None, PASSWORD, recorder=recorder)  # no anchor: does not verify
    assert result.outcome is Outcome.LOCAL_ERROR
    assert "certificate does not verify" in result.reason
    assert recorder.logins == []  # the server never saw an AUTH


def test_smtp_unverified_allowed_when_asked(good_context: ssl.SSLContext) -> None:
    result = smtp_login(good_context, None, PASSWORD, require_verified_tls=False)
    assert result.result is not None and result.result.accepted


def test_smtp_without_starttls_gets_no_password() -> None:
    seen: list[bytes] = []
    replies = iter([b"250 AUTH PLAIN\r\n", b"502 5.5.1 no STARTTLS here\r\n"])

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx\r\n")
        while line := await reader.readline():
            seen.append(line)
            writer.write(next(replies, b"221 bye\r\n"))

    async def main() -> Attempt[LoginResult]:
        async with serving(behaviour) as endpoint:
            return await probe_login(endpoint, cfg(None), USER, PASSWORD)

    result = run(main())
    assert result.outcome is not Outcome.COMPLETED
    assert "502 5.5.1 no STARTTLS here" in result.reason
    assert seen and not any(line.startswith(b"AUTH") for line in seen)


def test_smtp_421_after_failures_is_temporary(good_context: ssl.SSLContext, anchor: Path) -> None:
    from aiosmtpd.smtp import SMTP

    class Throttling(SMTP):  # type: ignore[misc]
        async def smtp_AUTH(self, arg: str) -> None:
            await self.push("421 4.7.0 too many failed logins, try later")

    async def main() -> Attempt[LoginResult]:
        from conformance.target import Endpoint
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Throttling(Recorder(), tls_context=good_context), "127.0.0.1", 0)
        endpoint = Endpoint(Service.SUBMISSION, "node1", "localhost", server.sockets[0].getsockname()[1],
                            "127.0.0.1")
        try:
            return await probe_login(endpoint, cfg(anchor), USER, PASSWORD)
        finally:
            server.close()
            await server.wait_closed()

    result = run(main())
    assert result.result is not None and result.result.outcome is LoginOutcome.TEMPORARY
    assert "too many failed logins" in result.result.reply


@pytest.mark.parametrize(("mechanism", "password", "expected"), [
    ("LOGIN", "pw", LoginOutcome.ACCEPTED), ("PLAIN", "pw", LoginOutcome.ACCEPTED),
    ("LOGIN", "nope", LoginOutcome.REJECTED),
])
def test_imap_login(good_context: ssl.SSLContext, anchor: Path, mechanism: str, password: str,
                    expected: LoginOutcome) -> None:
    async def main() -> Attempt[LoginResult]:
        async with serving(FakeImap(good_context, user="alice", password="pw"), Service.IMAP) as endpoint:
            return await probe_login(endpoint, cfg(anchor), "alice", password, mechanism=mechanism)

    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.outcome is expected


def test_imap_without_starttls_gets_no_password(good_context: ssl.SSLContext, anchor: Path) -> None:
    fake = FakeImap(good_context, starttls=False, logindisabled=False)

    async def main() -> Attempt[LoginResult]:
        async with serving(fake, Service.IMAP) as endpoint:
            return await probe_login(endpoint, cfg(anchor), "alice", "pw")

    result = run(main())
    assert result.outcome is Outcome.SERVER_ERROR and "STARTTLS not offered" in result.reason
    assert fake.logins == []
