"""MTA-STS: the record and policy grammars, the §4.1 wildcard rule, and the policy fetch against scripted HTTPS
hosts on loopback (good, redirecting, wrong media type, wrong certificate, 10 MB, a tarpit, nobody there)."""

from __future__ import annotations

import socket
import ssl
import tracemalloc
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from conformance.probes.dns.mtasts import (
    FetchedPolicy,
    fetch_policy,
    mx_matches,
    parse_policy,
    parse_sts_record,
    tls_context,
)
from conformance.probes.dns.policy import RecordError
from conformance.probes.wire.outcome import Attempt, Outcome
from tests.certgen import make_pki, server_context
from tests.hostile import Behaviour, http_answer, http_flood, run, serving, trickle

pytestmark = pytest.mark.unit

POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.example.net\r\nmax_age: 86400\r\n"
TEXT = {"Content-Type": "text/plain; charset=utf-8"}


def test_sts_record_needs_version_first_and_an_id() -> None:
    assert parse_sts_record("v=STSv1; id=20261201T000000;") == "20261201T000000"
    for bad, words in (("id=1; v=STSv1", "first tag"), ("v=STSv1", "id="), ("v=STSv1; id=not-alnum", "id=")):
        with pytest.raises(RecordError, match=words):
            parse_sts_record(bad)


def test_policy_fields_parsed_with_lf_or_crlf() -> None:
    policy = parse_policy(POLICY.decode().replace("\r\n", "\n"))
    assert (policy.mode, policy.max_age, policy.mx) == ("enforce", 86400, ("mx1.example.test", "*.example.net"))
    assert policy.line_for("mode") == "mode: enforce"


@pytest.mark.parametrize("text, words", [
    ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n", "max_age"),
    ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1e9\n", "max_age"),
    ("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", "version"),
    ("version: STSv1\nmode: report\nmx: a.test\nmax_age: 1\n", "mode"),
    ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx line"),
    ("version: STSv1\nmode: enforce\nmode: testing\nmx: a.test\nmax_age: 1\n", "2 'mode' lines"),
    ("<html>version: STSv1</html>\n", "not 'key: value'"),
])
def test_malformed_policies_say_which_line(text: str, words: str) -> None:
    with pytest.raises(RecordError, match=words):
        parse_policy(text)


def test_wildcard_matches_exactly_one_label() -> None:
    assert mx_matches("*.example.test", "MX1.example.test.")
    assert not mx_matches("*.example.test", "example.test")
    assert not mx_matches("*.example.test", "a.mx1.example.test")
    assert mx_matches("mx1.example.test", "mx1.example.test") and not mx_matches("mx1.example.test", "mx2.example.test")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext, ssl.SSLContext]:
    """(server context for mta-sts.example.test, one for another name, the client context trusting the root)."""
    directory = tmp_path_factory.mktemp("pki")
    pki = make_pki()
    good = server_context(pki, pki.leaf("mta-sts.example.test"), directory)
    other = server_context(pki, pki.leaf("www.example.test"), directory)
    root = directory / "root.pem"
    root.write_bytes(pki.root.cert.public_bytes(serialization.Encoding.PEM))
    return good, other, tls_context((Path(root),))


def _fetch(behaviour: Behaviour, server: ssl.SSLContext, client: ssl.SSLContext,
           timeout: float = 3.0) -> Attempt[FetchedPolicy]:
    async def go() -> Attempt[FetchedPolicy]:
        async with serving(behaviour, tls=server) as endpoint:
            return await fetch_policy("example.test", "127.0.0.1", endpoint.port, client, timeout)
    return run(go())


def test_a_good_policy_host_is_fetched(tls: tuple[ssl.SSLContext, ...]) -> None:
    found = _fetch(http_answer("200 OK", TEXT, POLICY), tls[0], tls[2])
    assert found.outcome is Outcome.COMPLETED and found.result is not None
    assert parse_policy(found.result.body).mode == "enforce"
    assert found.result.url == "https://mta-sts.example.test/.well-known/mta-sts.txt"


@pytest.mark.parametrize("behaviour, words", [
    (http_answer("301 Moved Permanently", {"Location": "https://www.example.test/p"}), "redirect to"),
    (http_answer("404 Not Found", TEXT, b"no"), "HTTP 404"),
    (http_answer("200 OK", {"Content-Type": "text/html"}, POLICY), "not text/plain"),
])
def test_a_policy_host_that_breaks_section_3_3_fails_in_words(tls: tuple[ssl.SSLContext, ...], behaviour: Behaviour,
                                                              words: str) -> None:
    found = _fetch(behaviour, tls[0], tls[2])
    assert found.outcome is Outcome.SERVER_ERROR and words in found.reason, found


def test_a_certificate_for_another_name_fails(tls: tuple[ssl.SSLContext, ...]) -> None:
    found = _fetch(http_answer("200 OK", TEXT, POLICY), tls[1], tls[2])
    assert found.outcome is Outcome.SERVER_ERROR, found
    assert "not valid for mta-sts.example.test" in found.reason and "Error" not in found.reason


def test_ten_megabytes_are_refused_after_64_kib(tls: tuple[ssl.SSLContext, ...]) -> None:
    tracemalloc.start()
    found = _fetch(http_flood(10), tls[0], tls[2])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert found.outcome is Outcome.SERVER_ERROR and "exceeds 64 KiB" in found.reason, found
    assert peak < 4 << 20, f"reading a 10 MB policy used {peak} bytes at peak"


def test_a_tarpit_policy_host_is_cut_off_at_the_budget(tls: tuple[ssl.SSLContext, ...]) -> None:
    """The bound is the whole fetch, not one read: a byte every 50 ms never trips a read timeout."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n" + POLICY * 1000
    found = _fetch(trickle(head, 0.05), tls[0], tls[2], timeout=0.6)
    assert found.outcome is Outcome.INCONCLUSIVE and "within 0.6 s" in found.reason, found


def test_nobody_listening_is_inconclusive_in_words(tls: tuple[ssl.SSLContext, ...]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    found = run(fetch_policy("example.test", "127.0.0.1", port, tls[2], 2.0))
    assert found.outcome is Outcome.INCONCLUSIVE and "refused" in found.reason, found
