"""SMTP smuggling: the four end-of-data forms against aiosmtpd (safe) and naive parsers that each
honour some of them; messages go to the named recipient only."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from hostile import run, serving
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
