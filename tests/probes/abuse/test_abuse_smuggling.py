"""SMTP smuggling: the four end-of-data forms against aiosmtpd (safe) and naive parsers that each
honour some of them; messages go to the named recipient only."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from hostile import Behaviour, bare_lf_splitter, run, serving
from smtp_servers import PASSWORD, USER, Recorder, aiosmtpd_server

from conformance.probes.abuse.smuggling import FORMS, SmugglingResult, probe_body, probe_smuggling
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Secret, Service

pytestmark = pytest.mark.unit

CFG = ProbeConfig(timeout=5, use_system_store=False)


def test_every_body_ends_properly_once() -> None:
    for form in FORMS:
        body = probe_body(form)
        assert body.endswith(b"\r\n.\r\n") and body.count(b"\r\n.\r\n") == 1
        assert FORMS[form] in body


def test_aiosmtpd_honours_no_form(context: ssl.SSLContext) -> None:
    recorder = Recorder()

    async def main() -> Attempt[SmugglingResult]:
        async with aiosmtpd_server(context, service=Service.MX, recorder=recorder) as endpoint:
            return await probe_smuggling(endpoint, CFG, sender="probe@mailconform.invalid", recipient=USER)
    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.vulnerable == ()
    assert len(recorder.messages) == 4 and all(b"NOOP smuggled" in m for m in recorder.messages)


def test_authenticated_submission(context: ssl.SSLContext, anchor: Path) -> None:
    async def main() -> Attempt[SmugglingResult]:
        async with aiosmtpd_server(context) as endpoint:
            cfg = ProbeConfig(timeout=5, trust_anchors=(anchor,), use_system_store=False, secrets=(PASSWORD,))
            return await probe_smuggling(endpoint, cfg, sender=USER, recipient=USER, username=USER,
                                         password=Secret(PASSWORD, "t"), forms=("<LF>.<LF>",))
    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert PASSWORD not in "\n".join(result.transcript)


def lenient(ends: tuple[bytes, ...]):  # type: ignore[no-untyped-def]
    """A naive server whose DATA ends at <CRLF>.<CRLF> and at each of ``ends`` (checked on the raw stream)."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 naive\r\n")
        buffer = b""
        in_data = False
        while chunk := await asyncio.wait_for(reader.read(4096), 10):
            buffer += chunk
            while True:
                if in_data:
                    cut = [(buffer.find(e), e) for e in (b"\r\n.\r\n", *ends) if buffer.find(e) >= 0]
                    if not cut:
                        break
                    at, end = min(cut)
                    buffer = buffer[at + len(end):]
                    in_data = False
                    writer.write(b"250 2.0.0 queued\r\n")
                    continue
                line, sep, rest = buffer.partition(b"\n")
                if not sep:
                    break
                buffer = rest
                verb = line.strip().upper()
                if verb == b"DATA":
                    in_data = True
                    writer.write(b"354 go\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    return
                elif verb.startswith((b"EHLO", b"MAIL", b"RCPT", b"NOOP", b"RSET")):
                    writer.write(b"250 ok\r\n")
                else:
                    writer.write(b"500 5.5.2 unknown command\r\n")
            await writer.drain()
    return behaviour


def test_refused_recipient_is_not_a_server_finding() -> None:
    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted\r\n")
        while line := await asyncio.wait_for(reader.readline(), 10):
            refused = line.upper().startswith(b"RCPT")
            writer.write(b"554 5.7.1 relay access denied\r\n" if refused else b"250 ok\r\n")
            await writer.drain()

    async def main() -> Attempt[SmugglingResult]:
        async with serving(refusing, Service.MX) as endpoint:
            return await probe_smuggling(endpoint, CFG, sender="a@example.test", recipient="b@example.test")

    result = run(main())
    assert result.outcome is Outcome.LOCAL_ERROR
    assert "554 5.7.1 relay access denied" in result.reason


@pytest.mark.parametrize("form", list(FORMS))
def test_each_form_is_caught(form: str) -> None:
    async def main() -> Attempt[SmugglingResult]:
        async with serving(lenient((FORMS[form],)), Service.MX) as endpoint:
            return await probe_smuggling(endpoint, CFG, sender="probe@mailconform.invalid", recipient=USER)
    result = run(main())
    assert result.result is not None, result.reason
    flagged = [f.form for f in result.result.vulnerable]
    assert form in flagged
    # a parser honouring <LF>.<LF> also ends at <CR><LF>.<LF>, which contains it; nothing else is flagged
    assert all(FORMS[form] in FORMS[other] for other in flagged)


def smuggle(behaviour: Behaviour) -> Attempt[SmugglingResult]:
    async def main() -> Attempt[SmugglingResult]:
        async with serving(behaviour, Service.MX) as endpoint:
            return await probe_smuggling(endpoint, CFG, sender="probe@mailconform.invalid", recipient=USER,
                                         forms=("<LF>.<LF>", "<CR>.<CR>"))
    return run(main())


@pytest.mark.parametrize(("after_split", "ran"), [
    (b"554 5.5.0 SMTP synchronization error\r\n", False),
    (b"250 2.0.0 ok\r\n", True),
], ids=["sync-error-then-reset", "noop-run-then-reset"])
def test_split_then_reset_is_caught_every_time(after_split: bytes, ran: bool) -> None:
    """250 at <LF>.<LF>, one more reply, then a reset: the replies that came before the reset decide,
    whether or not the smuggled command ran (it used to read as a pass or as 'ConnectionResetError')."""
    for _ in range(3):
        result = smuggle(bare_lf_splitter(after_split))
        assert result.outcome is Outcome.COMPLETED, result.reason
        assert result.result is not None
        lf, cr = result.result.forms
        assert lf.ends_data and lf.smuggled_command_ran is ran and lf.data_reply.startswith("250")
        assert not cr.ends_data and not cr.undetermined


def test_reset_right_after_the_reply_is_undetermined_after_one_retry() -> None:
    """250 at <LF>.<LF> and a reset with nothing else: no second reply, no 221; tried twice, then unknown."""
    result = smuggle(bare_lf_splitter(b""))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None
    lf = result.result.forms[0]
    assert lf.undetermined and lf.sessions == 2 and not lf.ends_data
    assert lf.lost is not None and ("reset" in lf.lost or "closed" in lf.lost) and "Error" not in lf.lost
