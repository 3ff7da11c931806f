"""The session-ticket probe's thread discipline (its verdicts: tests/test_checks_tls_vulns.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
