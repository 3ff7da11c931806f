"""Open relay (stops before DATA) and bare-LF end-of-data smuggling, against aiosmtpd and naive servers."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import certgen
import pytest
from certgen import make_pki
from hostile import Behaviour, run, serving
from smtp_servers import Recorder, aiosmtpd_server

from conformance.probes.abuse.oneshot import (
    RelayResult,
    SmugglingResult,
    probe_bare_lf_end_of_data,
    probe_open_relay,
)
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Service

pytestmark = pytest.mark.unit

CFG = ProbeConfig(timeout=5, use_system_store=False)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    pki = make_pki()
    return certgen.server_context(pki, pki.leaf("localhost"), tmp_path_factory.mktemp("abuse"))


def line_server(*, bare_lf_ends_data: bool, relay: bool = False) -> Any:
    """A naive SMTP server: reads lines split at LF; optionally ends DATA at '.' on an LF-only line."""
    commands: list[bytes] = []

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 naive\r\n")
        in_data = False
        while line := await asyncio.wait_for(reader.readline(), 10):
            if in_data:
                ends = line == b".\r\n" or (bare_lf_ends_data and line == b".\n")
                if ends:
                    in_data = False
                    writer.write(b"250 2.0.0 queued\r\n")
                continue
            verb = line.strip().upper()
            commands.append(verb)
            if verb.startswith(b"RCPT"):
                writer.write(b"250 ok\r\n" if relay else b"554 5.7.1 relay access denied\r\n")
            elif verb == b"DATA":
                in_data = True
                writer.write(b"354 go\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            elif verb.startswith((b"EHLO", b"MAIL", b"RSET", b"NOOP")):
                writer.write(b"250 ok\r\n")
            else:
                writer.write(b"500 5.5.2 what?\r\n")
            await writer.drain()

    behaviour.commands = commands
    return behaviour


def smuggle(behaviour: Behaviour) -> Attempt[SmugglingResult]:
    async def main() -> Attempt[SmugglingResult]:
        async with serving(behaviour, Service.MX) as endpoint:
            return await probe_bare_lf_end_of_data(endpoint, CFG, sender="a@example.test",
                                                   recipient="b@example.test")
    return run(main())


def test_bare_lf_server_is_caught() -> None:
    result = smuggle(line_server(bare_lf_ends_data=True, relay=True))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.bare_lf_ends_data
    assert result.result.trailing_replies[0] == "250 ok"  # the smuggled NOOP ran


def test_crlf_only_server_passes() -> None:
    result = smuggle(line_server(bare_lf_ends_data=False, relay=True))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and not result.result.bare_lf_ends_data


def test_aiosmtpd_end_of_data(context: ssl.SSLContext) -> None:
    recorder = Recorder()

    async def main() -> Attempt[SmugglingResult]:
        async with aiosmtpd_server(context, recorder=recorder, service=Service.MX) as endpoint:
            return await probe_bare_lf_end_of_data(endpoint, CFG, sender="a@example.test",
                                                   recipient="b@example.test")

    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and not result.result.bare_lf_ends_data, result.result
    assert len(recorder.messages) == 1 and b"smuggled" in recorder.messages[0]


@pytest.mark.parametrize("relay", [True, False])
def test_open_relay_never_sends_data(relay: bool) -> None:
    server = line_server(bare_lf_ends_data=False, relay=relay)

    async def main() -> Attempt[RelayResult]:
        async with serving(server, Service.MX) as endpoint:
            return await probe_open_relay(endpoint, CFG)

    result = run(main())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.result is not None and result.result.accepted is relay
    assert b"DATA" not in server.commands and server.commands[-2:] == [b"RSET", b"QUIT"]


def test_refused_recipient_is_not_a_server_finding() -> None:
    result = smuggle(line_server(bare_lf_ends_data=False, relay=False))
    assert result.outcome is Outcome.LOCAL_ERROR
    assert "554 5.7.1 relay access denied" in result.reason
