"""The session-ticket probe's thread discipline (its verdicts: tests/test_checks_tls_vulns.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from hostile import run, serving

from conformance.probes.tls import early_data
from conformance.probes.tls.wire import (
    AlertDescription,
    ClientHello,
    ContentType,
    ExtensionType,
    HandshakeBuffer,
    NamedGroup,
    Reader,
    Record,
    TlsVersion,
)
from conformance.probes.wire.outcome import ProtocolViolation
from conformance.target import Service

pytestmark = pytest.mark.unit

# In a fresh interpreter: the first probe must find tlslite-ng imported before its worker thread starts.
_FIRST_PROBE = """
import asyncio, sys
from unittest import mock
from conformance.probes.tls import early_data
from conformance.target import Endpoint, Service

class Transport(asyncio.ReadTransport):
    def pause_reading(self): pass

async def main():
    seen = []
    async def to_thread(function, *args):
        seen.append("tlslite.tlsconnection" in sys.modules)
        raise TimeoutError
    writer = mock.Mock(transport=Transport())
    writer.get_extra_info.return_value = __import__("socket").socket()
    with mock.patch.object(early_data.asyncio, "to_thread", to_thread):
        try:
            await early_data.session_tickets(asyncio.StreamReader(), writer,
                                             Endpoint(Service.IMAPS, "n", "localhost", 993), 1.0)
        except TimeoutError:
            pass
    print(seen)

asyncio.run(main())
"""


def test_tlslite_is_imported_in_the_loop_thread_before_any_worker() -> None:
    """Scans of several endpoints once imported tlslite-ng in their threads at the same time and met its
    circular imports half-initialised (ImportError on the real tier's seven endpoints)."""
    done = subprocess.run([sys.executable, "-c", _FIRST_PROBE], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.stdout.strip() == "[True]", done.stdout + done.stderr


async def _hello_the_probe_sends() -> ClientHello:
    """The ClientHello of the probe, caught by a server that refuses it with handshake_failure."""
    caught: list[bytes] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(Record.HEADER)
        caught.append(await reader.readexactly(Record.parse_header(header)[2]))
        writer.write(Record(ContentType.ALERT, TlsVersion.TLS1_2, bytes([2, AlertDescription.HANDSHAKE_FAILURE]))
                     .to_bytes())
        await writer.drain()

    async with serving(refuse, Service.IMAPS) as endpoint:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(endpoint.address, endpoint.port), 5)
        try:
            with pytest.raises(ProtocolViolation):
                await early_data.session_tickets(reader, writer, endpoint, 5.0)
        finally:
            writer.close()
    message = next(iter(HandshakeBuffer().feed(caught[0])))
    return ClientHello.parse(message.body)


def test_the_hello_offers_pinned_groups_whatever_tlslite_ng_can_do() -> None:
    """tlslite-ng offers X25519MLKEM768 by default where kyber-py is installed (the test extra), not on a
    runtime install: pinned, both send the same hello."""
    extensions = {e.type: e.data for e in run(_hello_the_probe_sends()).extensions}
    groups = Reader(extensions[ExtensionType.SUPPORTED_GROUPS], "supported_groups").uints(2, 2)
    shares, entries = [], Reader(extensions[ExtensionType.KEY_SHARE], "key_share").vector(2, "client_shares")
    while entries.remaining():
        shares.append(entries.uint(2, "group"))
        entries.vector(2, "key_exchange")
    assert shares == [NamedGroup.X25519, NamedGroup.SECP256R1]
    assert groups[:2] == (NamedGroup.X25519, NamedGroup.SECP256R1)
    assert not {NamedGroup.X25519MLKEM768, NamedGroup.SECP256R1MLKEM768} & set(groups), groups
