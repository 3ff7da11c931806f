"""The private Unbound of the real tier: it starts on a loopback address and free port, resolves a stub
zone served on loopback (``do-not-query-localhost: no``, the built-in ``test.`` zone switched off), and
stops with its own control command. Its validation from a lab trust anchor is proven against Knot's
signed zone in test_real_dns.py."""

from __future__ import annotations

import dns.message
import dns.query
import pytest

from conformance.reference.dns import DnsResponder
from tests.real.daemon import missing
from tests.real.processes import process_alive, read_pid
from tests.real.unbound import BINARIES, Unbound

pytestmark = [pytest.mark.real,
              pytest.mark.skipif(bool(missing(*BINARIES)), reason="Unbound not installed: run ci/install-real-servers.sh")]


def test_unbound_resolves_a_loopback_stub_zone_and_stops_by_its_own_command() -> None:
    with DnsResponder({("mail.example.test", "MX"): ["10 mx1.mail.example.test."]}) as upstream:
        unbound = Unbound(stub_zones={"mail.example.test.": ("127.0.0.1", upstream.port)})
        with unbound:
            pid = read_pid(unbound.pid_file)
            answer = dns.query.udp(dns.message.make_query("mail.example.test", "MX"), unbound.address,
                                   port=unbound.port, timeout=5)
            assert [rr.to_text() for rrset in answer.answer for rr in rrset] == ["10 mx1.mail.example.test."]
        assert pid is not None and not process_alive(pid)
        assert not unbound.workdir.exists()
