"""POP3 wire parsing, Pop3Session and the POP3 capability probe against scripted servers (tests/hostile.py)."""

from __future__ import annotations

import pytest
from hostile import pop3_server, run, script, serving, silent

from conformance.probes.pop3.session import (
    Pop3Session,
    classify_apop,
    classify_sasl,
    classify_user_pass,
    probe_pop3_capabilities,
)
from conformance.probes.pop3.wire import MAX_MULTILINE, apop_timestamp, capabilities, parse_status
from conformance.probes.wire.config import CleartextAuth, ProbeConfig
from conformance.probes.wire.outcome import Outcome
from conformance.target import Service

pytestmark = pytest.mark.unit

PASSWORD = "pop-Secret-horse"


def cfg(timeout: float = 2.0) -> ProbeConfig:
    return ProbeConfig(timeout=timeout, use_system_store=False, secrets=(PASSWORD,))


def test_status_lines_codes_and_capabilities() -> None:
    reply = parse_status("-ERR [SYS/TEMP] try later")
    assert reply is not None and not reply.ok and reply.code == "SYS/TEMP" and reply.temporary
    assert reply.short == "-ERR [SYS/TEMP]" and str(reply) == "-ERR [SYS/TEMP] try later"
    auth = parse_status("-ERR [AUTH] Authentication failed")
    assert auth is not None and not auth.temporary and auth.short == "-ERR [AUTH]"
    assert parse_status("+OK") == parse_status("+ok")
    assert parse_status("* OK imap") is None
    assert capabilities(("STLS", "sasl plain login", "")) == {"STLS", "SASL", "SASL=PLAIN", "SASL=LOGIN"}
    greeting = parse_status("+OK POP3 <1896.697170952@dbc.mtview.ca.us>")
    assert greeting is not None and apop_timestamp(greeting) == "<1896.697170952@dbc.mtview.ca.us>"


def test_cleartext_classification() -> None:
    refused = parse_status("-ERR [AUTH] Plaintext authentication disallowed")
    ok, failed = parse_status("+OK"), parse_status("-ERR [AUTH] wrong")
    assert refused is not None and ok is not None and failed is not None
    assert classify_user_pass(refused, None) is CleartextAuth.REFUSED_FOR_TLS  # the password never went out
    assert classify_user_pass(ok, failed) is CleartextAuth.CREDENTIALS_CHECKED
    assert classify_user_pass(ok, ok) is CleartextAuth.ACCEPTED
    assert classify_sasl(False, refused) is CleartextAuth.REFUSED_FOR_TLS
    assert classify_sasl(True, failed) is CleartextAuth.CREDENTIALS_CHECKED



def test_apop_classified_by_comparing_with_the_answer_inside_tls() -> None:
    refused = parse_status("-ERR [AUTH] Plaintext authentication disallowed")
    ok, failed, temp = parse_status("+OK"), parse_status("-ERR [AUTH] wrong"), parse_status("-ERR [SYS/TEMP] later")
    assert refused is not None and ok is not None and failed is not None and temp is not None
    assert classify_apop(ok, None) is CleartextAuth.ACCEPTED
    assert classify_apop(failed, failed) is CleartextAuth.CREDENTIALS_CHECKED  # checked in clear as inside TLS
    assert classify_apop(refused, failed) is CleartextAuth.REFUSED_FOR_TLS
    assert classify_apop(failed, None) is CleartextAuth.REFUSED  # nothing to compare with
    assert classify_apop(temp, temp) is CleartextAuth.REFUSED


def test_probe_finds_passwords_read_in_clear_and_keeps_them_out_of_the_transcript() -> None:
    server = pop3_server({"USER": b"+OK\r\n", "PASS": b"-ERR [AUTH] wrong\r\n", "AUTH": b"+ \r\n"})

    async def scenario() -> None:
        async with serving(server, Service.POP3) as endpoint:
            found = await probe_pop3_capabilities(endpoint, cfg())
        assert found.outcome is Outcome.COMPLETED, found.reason
        caps = found.result
        assert caps is not None and not caps.stls_offered and caps.tls is None
        assert caps.cleartext.user_verdict is CleartextAuth.CREDENTIALS_CHECKED
        assert caps.cleartext.auth_verdict is CleartextAuth.CREDENTIALS_CHECKED
        transcript = "\n".join(found.transcript)
        assert "C: PASS <redacted>" in transcript and "C: <redacted>" in transcript
        assert "mailconform-probe-" in transcript  # the throwaway user name is shown, never its password

    run(scenario())


def test_real_password_is_redacted_even_when_the_server_echoes_it() -> None:
    server = pop3_server({"PASS": f"-ERR [AUTH] bad password {PASSWORD}\r\n".encode()})

    async def scenario() -> None:
        async with serving(server, Service.POP3) as endpoint:
            async with Pop3Session(endpoint, cfg()) as pop3:
                await pop3.connect()
                _, answer = await pop3.user_pass("alice", PASSWORD)
                assert answer is not None and not answer.ok
            text = "\n".join(pop3.transcript.lines)
            assert PASSWORD not in text and "C: PASS <redacted>" in text

    run(scenario())


@pytest.mark.parametrize(("behaviour", "outcome", "words"), [
    (script(b"-ERR [SYS/TEMP] too busy\r\n"), Outcome.INCONCLUSIVE, "server refused the session: -ERR [SYS/TEMP]"),
    (script(b"220 smtp.test ESMTP\r\n"), Outcome.SERVER_ERROR, "not a POP3 status line"),
    (silent, Outcome.INCONCLUSIVE, "no complete line"),
    (pop3_server({"CAPA": b"+OK\r\n" + b"X\r\n" * (MAX_MULTILINE + 5)}), Outcome.SERVER_ERROR,
     f"more than {MAX_MULTILINE} lines"),
], ids=["busy-greeting", "smtp-banner", "silent", "endless-capa"])
def test_hostile_servers_give_a_reason_in_words(behaviour, outcome: Outcome, words: str) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        async with serving(behaviour, Service.POP3) as endpoint:
            found = await probe_pop3_capabilities(endpoint, cfg(timeout=1.0))
        assert found.outcome is outcome and words in found.reason, (found.outcome, found.reason)
        assert "Error" not in found.reason  # words, never an exception class name

    run(scenario())
