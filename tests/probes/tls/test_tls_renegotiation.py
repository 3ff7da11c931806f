"""The client-initiated renegotiation probe against independent stacks: OpenSSL's own ``s_server`` (which
accepts with ``-client_renegotiation``), tlslite-ng (which cannot renegotiate) and Python's ssl; the
check's verdicts on the reference gateway are in tests/test_flaws.py (flaw ``client_renegotiation``)."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from tls_servers import openssl_s_server, openssl_server, tlslite_server

from conformance.probes.tls.renegotiation import RENEGOTIATIONS, Renegotiation, probe_renegotiation
from conformance.probes.wire.config import ProbeConfig
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint

pytestmark = pytest.mark.unit


def _probe(endpoint: Endpoint, timeout: float = 5) -> Attempt[Renegotiation]:
    return asyncio.run(probe_renegotiation(endpoint, ProbeConfig(timeout=timeout)))


def _tls12_only(context: ssl.SSLContext) -> None:
    context.maximum_version = ssl.TLSVersion.TLSv1_2


def test_s_server_with_client_renegotiation_accepts_every_one() -> None:
    with openssl_s_server("-client_renegotiation") as served:
        probe = _probe(served.endpoint)
    assert probe.result == Renegotiation(RENEGOTIATIONS, None), probe
    assert str(probe.result) == f"accepted a client-initiated renegotiation ({RENEGOTIATIONS + 1} handshakes on one connection)"


@pytest.mark.parametrize("options", [(), ("-no_renegotiation",)], ids=["default", "no-renegotiation"])
def test_s_server_refuses_with_a_no_renegotiation_warning(options: tuple[str, ...]) -> None:
    with openssl_s_server(*options) as served:
        probe = _probe(served.endpoint)
    assert probe.result == Renegotiation(0, "the server sent the warning alert 'no renegotiation'"), probe


def test_a_server_that_closes_refuses() -> None:
    """tlslite-ng has no renegotiation; the test server closes the connection after its handshake."""
    with tlslite_server(min_version=(3, 3), cipher_names=("aes128gcm",), key_exchange_names=("ecdhe_rsa",),
                        smtp=True) as served:
        probe = _probe(served.endpoint)
    assert probe.result is not None and not probe.result.accepted, probe
    assert probe.result.refusal in ("the server closed the connection",
                                    "the server sent the warning alert 'close notify'"), probe


def test_silence_after_the_renegotiation_hello_is_inconclusive_with_the_timeout() -> None:
    with openssl_server(_tls12_only, linger=True) as served:
        probe = _probe(served.endpoint, timeout=2)
    assert probe.outcome is Outcome.INCONCLUSIVE, probe
    assert probe.reason == "the server did not answer a TLS 1.2 handshake message within 2 s", probe


def test_a_tls13_only_server_refuses_the_tls12_handshake_in_words() -> None:
    with openssl_s_server("-tls1_3") as served:
        probe = _probe(served.endpoint)
    assert probe.outcome is Outcome.SERVER_ERROR, probe
    assert probe.reason == ("the TLS 1.2 handshake before any renegotiation failed: the server sent the fatal "
                            "alert 'protocol version'"), probe
