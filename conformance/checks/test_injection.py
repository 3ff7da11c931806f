"""STARTTLS state and injection: nothing from before the handshake survives it, nothing pipelined
behind STARTTLS is executed inside TLS, nothing is sent between the go-ahead and the handshake, and
no port lets a client in without TLS and a login (PREAUTH, plaintext fallback)."""

from __future__ import annotations

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.auth import require_session
from conformance.probes.starttls.injection import InjectionResult
from conformance.probes.starttls.state import EhloState, ImplicitGreeting, StartTlsState
from conformance.probes.wire.outcome import Attempt
from conformance.target import Endpoint
from conformance.verdict import Inconclusive


@pytest.mark.requirement("STARTTLS-RESET-01")
@pytest.mark.service("mx", "submission", "imap", "pop3")
def test_state_reset_after_starttls(endpoint: Endpoint, starttls_state: dict[str, Attempt[StartTlsState]],
                                    evidence: Evidence) -> None:
    """RFC 3207 4.2 / RFC 9051 6.2.1 / RFC 2595 4: after the handshake the server discards what it learnt before."""
    state = require_session(evidence, starttls_state[endpoint.id])
    if state.response_injected or state.tls_version is None:
        pytest.skip(f"{endpoint}: no clean TLS session after STARTTLS "
                    f"({state.tls_error or 'bytes after the go-ahead'}; see STARTTLS-INJECT-02 / STARTTLS-OFFER-01)")
    if state.protocol == "pop3":
        _judge_pop3_state(endpoint, state, evidence)
        return
    evidence.add("inside_tls_without_ehlo", f"{state.probe_command} -> {state.probe_reply}")
    if state.protocol == "imap":
        evidence.add("capability_after_tls", state.capabilities_after_tls or "none")
        assert not state.logindisabled_after_tls, (
            f"{endpoint}: CAPABILITY inside TLS still says LOGINDISABLED: the server kept its pre-TLS state "
            f"(RFC 9051 6.2.1); clients cannot log in")
        return
    if state.ehlo_state is EhloState.NEVER_REQUIRED:
        raise Inconclusive(f"{endpoint}: the server takes MAIL without any EHLO, even before TLS "
                           f"({state.control_reply}); a kept EHLO cannot be told from a lax server")
    if state.ehlo_state is EhloState.UNKNOWN:
        raise Inconclusive(f"{endpoint}: inside TLS without EHLO, {state.probe_command} answered "
                           f"{state.probe_reply}; neither 503 (EHLO first) nor an acceptance")
    assert state.ehlo_state is EhloState.FORGOTTEN, (
        f"{endpoint}: inside TLS, without a new EHLO, '{state.probe_command}' was answered "
        f"'{state.probe_reply}': the server kept the pre-TLS EHLO state. RFC 3207 4.2 requires it to forget "
        f"everything from before STARTTLS and answer 503 until the client sends EHLO again")


def _judge_pop3_state(endpoint: Endpoint, state: StartTlsState, evidence: Evidence) -> None:
    evidence.add("user_before_tls", state.control_reply or "none")
    evidence.add("user_inside_tls", state.probe_reply or "none")
    if state.ehlo_state is EhloState.NEVER_REQUIRED:
        pytest.skip(f"{endpoint}: USER is taken in clear ({state.control_reply}), so no pre-TLS refusal can "
                    f"survive STLS; STARTTLS-POP3-01 judges the cleartext login")
    if state.ehlo_state is EhloState.UNKNOWN:
        raise Inconclusive(f"{endpoint}: USER was refused before STLS ('{state.control_reply}') and inside TLS "
                           f"('{state.probe_reply}') with CAPA {sorted(state.capabilities_after_tls or ())}; "
                           f"neither a login that goes on nor the same refusal")
    assert state.ehlo_state is EhloState.FORGOTTEN, (
        f"{endpoint}: inside TLS, USER was refused exactly as before STLS ('{state.probe_reply}') although CAPA "
        f"inside TLS offers USER: the server kept its pre-TLS session state. After STLS it must judge commands "
        f"by the TLS session alone (RFC 2595 4); clients that tried USER in clear cannot log in")


@pytest.mark.requirement("STARTTLS-INJECT-01")
@pytest.mark.service("mx", "submission", "imap", "pop3")
def test_no_command_injection(endpoint: Endpoint, starttls_injection: dict[str, Attempt[InjectionResult]],
                              evidence: Evidence) -> None:
    """CVE-2011-0411 class: a command sent in the same write as STARTTLS must be discarded."""
    result = require_session(evidence, starttls_injection[endpoint.id])
    if not result.tls_started:
        pytest.skip(f"{endpoint}: STARTTLS with a pipelined command was not started ({result.starttls_reply}); "
                    "nothing can be injected")
    evidence.add("starttls_reply", result.starttls_reply)
    if result.tls_error is not None:
        raise Inconclusive(f"{endpoint}: STARTTLS with a pipelined command was answered '{result.starttls_reply}', "
                           f"then {result.tls_error}: without a working TLS session nothing shows whether the "
                           f"pipelined command would run inside it (see STARTTLS-OFFER-01)")
    if result.first_answer_after_tls is None:
        if result.control_answer is None:
            raise Inconclusive(f"{endpoint}: the server broke off the session and no session without a pipelined "
                               f"command was tried; nothing shows what it would do inside TLS")
        evidence.add("session_with_pipelined_command", "broken off by the server")
        evidence.add("first_answer_inside_tls_without_pipelining", result.control_answer)
        return  # it drops only the session carrying an injected command: the safe reaction
    evidence.add("first_answer_inside_tls", result.first_answer_after_tls)
    assert not result.executed_after_tls, (
        f"{endpoint}: a command pipelined behind STARTTLS (sent in clear, in the same write) was executed "
        f"inside the TLS session: the first answer inside TLS was '{result.first_answer_after_tls}', not the "
        f"answer to our own command. A man in the middle can inject commands (CVE-2011-0411); the server must "
        f"discard its input buffer when TLS starts (RFC 3207 4.2)")


@pytest.mark.requirement("STARTTLS-INJECT-02")
@pytest.mark.service("mx", "submission", "imap", "pop3")
def test_no_response_injection(endpoint: Endpoint, starttls_state: dict[str, Attempt[StartTlsState]],
                               evidence: Evidence) -> None:
    """After the go-ahead to STARTTLS the client speaks first (ClientHello): the server sends nothing."""
    state = require_session(evidence, starttls_state[endpoint.id])
    evidence.add("starttls_reply", state.go_ahead)
    evidence.add("bytes_after_go_ahead", state.injected or "none")
    farewell = (state.injected or "").lstrip()
    if state.response_injected and farewell.startswith(("421", "* BYE", "-ERR [SYS/TEMP]")):
        # A node going down says goodbye to every open session, also one between go-ahead and handshake.
        raise Inconclusive(f"{endpoint}: the server closed the session after its STARTTLS go-ahead: {farewell!r}")
    assert not state.response_injected, (
        f"{endpoint}: after its go-ahead '{state.go_ahead}' to STARTTLS the server sent more plaintext before "
        f"the TLS handshake: {state.injected!r}. A client that reads it as a reply inside TLS can be fed "
        f"forged answers (response injection); nothing may follow the go-ahead")


@pytest.mark.requirement("STARTTLS-PREAUTH-01")
@pytest.mark.service("imap", "imaps", "submissions", "pop3s")
def test_no_preauth_or_plaintext_fallback(endpoint: Endpoint,
                                          implicit_greetings: dict[str, Attempt[ImplicitGreeting]],
                                          evidence: Evidence) -> None:
    """No PREAUTH greeting (a session without login; RFC 9051 7.1.4) and no plaintext on implicit-TLS ports."""
    result = require_session(evidence, implicit_greetings[endpoint.id])
    if result.implicit_tls and result.greeting is None:
        pytest.skip(f"{endpoint}: no TLS on this implicit-TLS port ({result.tls_error}); see TLS-IMPLICIT-01")
    evidence.add("greeting", result.greeting or "none")
    assert not result.preauth, (
        f"{endpoint}: the server greets with PREAUTH ('{result.greeting}'): every client is logged in without "
        f"a password, and a STARTTLS client cannot upgrade (RFC 9051 7.1.4). Disable pre-authentication")
    if result.implicit_tls:
        evidence.add("answer_to_plaintext", result.plaintext_answer or "none (TLS only)")
        assert not result.plaintext_fallback, (
            f"{endpoint}: this implicit-TLS port also answers a client that speaks plaintext "
            f"({result.plaintext_answer!r}): a man in the middle can strip TLS. RFC 8314 3.3: implicit-TLS "
            f"ports speak TLS only")
