"""Bounded line reads: lines the server sent before its connection broke are still read, in order."""

from __future__ import annotations

import asyncio

import pytest
from hostile import run

from conformance.probes.wire.outcome import Unreachable
from conformance.probes.wire.streams import read_line

pytestmark = pytest.mark.unit


def test_lines_that_arrived_before_a_reset_are_read_first() -> None:
    """asyncio's readuntil raises a stored reset before looking at its buffer; read_line must not."""
    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"250 2.0.0 queued\r\n554 5.5.0 synchronization error\r\n")
        reader.set_exception(ConnectionResetError(104, "Connection reset by peer"))
        assert await read_line(reader, timeout=1, what="reading") == b"250 2.0.0 queued\r\n"
        assert await read_line(reader, timeout=1, what="reading") == b"554 5.5.0 synchronization error\r\n"
        with pytest.raises(Unreachable, match="connection reset by the server while reading"):
            await read_line(reader, timeout=1, what="reading")

    run(main())
