"""The auth family's checks as functions over typed probe results: each passes on a good result, fails
with a message naming the endpoint and the server's reply on a bad one, and skips or turns
inconclusive (never passes) when the probe could not see anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conformance.checks import test_auth, test_enumeration, test_injection, test_relay, test_smuggling
from conformance.evidence import Evidence
from conformance.probes.abuse.relay import (
    RcptAttempt,
    Refusal,
    RelayFormsResult,
    SpoofResult,
    SubmissionResult,
    classify,
)
from conformance.probes.abuse.smuggling import FormResult, SmugglingResult
from conformance.probes.auth.enumeration import EnumerationResult, LoginSample, RcptLimitResult, VrfyResult
from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.auth.sasl import AuthPosture, MechanismResult, SaslReply
from conformance.probes.smtp.wire import SmtpReply
from conformance.probes.starttls.injection import InjectionResult
from conformance.probes.starttls.state import EhloState, ImplicitGreeting, StartTlsState
from conformance.probes.wire.outcome import Attempt, Outcome
from conformance.target import Endpoint, Service
from conformance.verdict import Inconclusive

pytestmark = pytest.mark.unit

MX = Endpoint(Service.MX, "node1", "mx1.example.test", 25)
SUB = Endpoint(Service.SUBMISSION, "node1", "mx1.example.test", 587)
IMAPS = Endpoint(Service.IMAPS, "node1", "mx1.example.test", 993)


def ok(endpoint: Endpoint, result: object) -> dict[str, Attempt[Any]]:
    return {endpoint.id: Attempt(endpoint.id, Outcome.COMPLETED, result, "", ("S: 220 hello",))}


def verdict(check: Callable[..., None], endpoint: Endpoint, data: dict[str, Attempt[Any]]) -> str:
    """pass / fail / skip / inconclusive, and for a failure its message must name the endpoint."""
    evidence = Evidence()
    try:
        check(endpoint, data, evidence)
    except AssertionError as exc:
        assert str(endpoint) in str(exc), exc
        return "fail"
    except Inconclusive:
        return "inconclusive"
    except pytest.skip.Exception:
        return "skip"
    assert evidence.transcripts, "a passing check keeps the probe's transcript as evidence"
    return "pass"


def state(**kw: Any) -> StartTlsState:
    base: dict[str, Any] = {"protocol": "smtp", "go_ahead": "220 go", "injected": None, "tls_version": "TLSv1.3",
                            "tls_error": None, "probe_command": "MAIL FROM:<>",
                            "probe_reply": "503 5.5.1 EHLO first", "ehlo_state": EhloState.FORGOTTEN}
    base.update(kw)
    return StartTlsState(**base)


@pytest.mark.parametrize(("result", "expected"), [
    (state(), "pass"),
    (state(ehlo_state=EhloState.KEPT, probe_reply="250 ok"), "fail"),
    (state(ehlo_state=EhloState.NEVER_REQUIRED), "inconclusive"),
    (state(injected="250 x"), "skip"),
])
def test_state_reset(result: StartTlsState, expected: str) -> None:
    assert verdict(test_injection.test_state_reset_after_starttls, MX, ok(MX, result)) == expected


def test_response_injection() -> None:
    assert verdict(test_injection.test_no_response_injection, MX, ok(MX, state())) == "pass"
    assert verdict(test_injection.test_no_response_injection, MX, ok(MX, state(injected="250 x"))) == "fail"


def test_missing_starttls_skips_rather_than_fails() -> None:
    data: dict[str, Attempt[Any]] = {MX.id: Attempt(MX.id, Outcome.SERVER_ERROR, None, "STARTTLS not offered in the EHLO reply")}
    assert verdict(test_injection.test_no_response_injection, MX, data) == "skip"


def test_timeout_is_inconclusive() -> None:
    data: dict[str, Attempt[Any]] = {MX.id: Attempt(MX.id, Outcome.INCONCLUSIVE, None, "no complete line within 10 s")}
    assert verdict(test_injection.test_no_command_injection, MX, data) == "inconclusive"


def test_command_injection() -> None:
    good = InjectionResult("220 go", None, False, "221 bye", False)
    bad = InjectionResult("220 go", None, True, "250 ok", False)
    assert verdict(test_injection.test_no_command_injection, MX, ok(MX, good)) == "pass"
    assert verdict(test_injection.test_no_command_injection, MX, ok(MX, bad)) == "fail"


@pytest.mark.parametrize("result", [
    InjectionResult("220 go", None, False, None, False, tls_error="TLS error while TLS handshake: the server "
                                                                  "sent the TLS alert 'handshake failure'"),
    InjectionResult("220 go", None, False, None, True),
], ids=["handshake-failed", "closed-inside-tls"])
def test_command_injection_without_evidence_is_inconclusive(result: InjectionResult) -> None:
    """No TLS session, or no answer inside it: nothing shows the pipelined command was discarded."""
    assert verdict(test_injection.test_no_command_injection, MX, ok(MX, result)) == "inconclusive"


def test_breaking_off_only_the_injected_session_passes() -> None:
    """Dovecot resets the handshake of a session with a command pipelined behind STARTTLS; a clean session
    answers inside TLS: the break-off is the safe reaction."""
    result = InjectionResult("S2 OK Begin TLS negotiation now.", None, False, None, True, control_answer="Q1 OK")
    assert verdict(test_injection.test_no_command_injection, MX, ok(MX, result)) == "pass"


def test_preauth_and_fallback() -> None:
    good = ImplicitGreeting(True, "* OK ready", False, None, None)
    assert verdict(test_injection.test_no_preauth_or_plaintext_fallback, IMAPS, ok(IMAPS, good)) == "pass"
    for bad in (ImplicitGreeting(True, "* PREAUTH hi", True, None, None),
                ImplicitGreeting(True, "* OK ready", False, None, "* OK plaintext")):
        assert verdict(test_injection.test_no_preauth_or_plaintext_fallback, IMAPS, ok(IMAPS, bad)) == "fail"
    no_tls = ImplicitGreeting(True, None, False, "TLS error", None)
    assert verdict(test_injection.test_no_preauth_or_plaintext_fallback, IMAPS, ok(IMAPS, no_tls)) == "skip"


def posture(**kw: Any) -> AuthPosture:
    base: dict[str, Any] = {
        "advertised": frozenset({"PLAIN", "LOGIN"}),
        "mechanisms": (MechanismResult("LOGIN", LoginOutcome.ACCEPTED, "235 ok"),
                       MechanismResult("PLAIN", LoginOutcome.ACCEPTED, "235 ok")),
        "wrong_password": SaslReply(LoginOutcome.REJECTED, "535 5.7.8 invalid", "invalid", "535 5.7.8"),
        "wrong_mechanism": "PLAIN",
        "anonymous": SaslReply(LoginOutcome.REFUSED, "504 5.5.4 no", "no", "504 5.5.4")}
    base.update(kw)
    return AuthPosture(**base)


@pytest.mark.parametrize(("check", "result", "expected"), [
    (test_auth.test_wrong_password_refused, posture(), "pass"),
    (test_auth.test_wrong_password_refused,
     posture(wrong_password=SaslReply(LoginOutcome.ACCEPTED, "235 ok", "ok", "235 2.7.0")), "fail"),
    (test_auth.test_wrong_password_refused,
     posture(wrong_password=SaslReply(LoginOutcome.REFUSED, "550 5.7.1 no", "no", "550 5.7.1")), "fail"),
    (test_auth.test_wrong_password_refused,
     posture(wrong_password=SaslReply(LoginOutcome.TEMPORARY, "454 4.7.0 later", "later", "454 4.7.0")), "skip"),
    (test_auth.test_no_anonymous_login, posture(), "pass"),
    (test_auth.test_no_anonymous_login,
     posture(anonymous=SaslReply(LoginOutcome.ACCEPTED, "235 ok", "ok", "235")), "fail"),
    (test_auth.test_advertised_mechanisms_work, posture(), "pass"),
    (test_auth.test_advertised_mechanisms_work,
     posture(mechanisms=(MechanismResult("CRAM-MD5", LoginOutcome.REJECTED, "535 5.7.8 invalid"),)), "fail"),
    (test_auth.test_advertised_mechanisms_work,
     posture(mechanisms=(MechanismResult("XOAUTH2", None, "not exercised"),)), "skip"),
    (test_auth.test_advertised_mechanisms_work, posture(preauth=True), "skip"),
])
def test_auth_checks(check: Callable[..., None], result: AuthPosture, expected: str) -> None:
    assert verdict(check, SUB, ok(SUB, result)) == expected


def test_unverified_certificate_skips() -> None:
    data: dict[str, Attempt[Any]] = {SUB.id: Attempt(SUB.id, Outcome.LOCAL_ERROR, None,
                            "not sending credentials: the certificate does not verify (expired)")}
    assert verdict(test_auth.test_wrong_password_refused, SUB, data) == "skip"


def forms(*accepted: str) -> RelayFormsResult:
    names = ("plain", "percent-hack", "bang-path", "source-route", "quoted-local-part")
    return RelayFormsResult("250 ok", tuple(
        RcptAttempt(n, f"{n}@x", "250 ok" if n in accepted else "554 5.7.1 denied",
                    Refusal.ACCEPTED if n in accepted else Refusal.RELAY_DENIED) for n in names), None)


@pytest.mark.parametrize(("check", "result", "expected"), [
    (test_relay.test_no_open_relay, forms(), "pass"),
    (test_relay.test_no_open_relay, forms("plain"), "fail"),
    (test_relay.test_no_relay_by_address_tricks, forms(), "pass"),
    (test_relay.test_no_relay_by_address_tricks, forms("percent-hack"), "fail"),
    (test_relay.test_no_relay_by_address_tricks, forms("plain", "source-route"), "pass"),
    (test_relay.test_no_relay_by_address_tricks, forms("source-route"), "fail"),
    (test_relay.test_no_relay_by_address_tricks, forms("plain", "percent-hack"), "fail"),
    (test_relay.test_no_open_relay, RelayFormsResult("550 no", (), None), "inconclusive"),
])
def test_relay_checks(check: Callable[..., None], result: RelayFormsResult, expected: str) -> None:
    assert verdict(check, MX, ok(MX, result)) == expected


def test_submission_and_spoofing() -> None:
    refused = SubmissionResult("530 5.7.0 Must issue a STARTTLS command first", Refusal.STARTTLS_FIRST,
                               "530 5.7.0 Authentication required", Refusal.AUTH_REQUIRED, None, None)
    accepted = SubmissionResult(None, None, "250 ok", Refusal.ACCEPTED, "250 ok", Refusal.ACCEPTED)
    assert verdict(test_relay.test_submission_requires_auth, SUB, ok(SUB, refused)) == "pass"
    assert verdict(test_relay.test_submission_requires_auth, SUB, ok(SUB, accepted)) == "fail"
    # MAIL taken without AUTH, the test account's own address "unknown": no authentication refusal seen
    unknown = SubmissionResult(None, None, "250 2.1.0 ok", Refusal.ACCEPTED, "550 user unknown",
                               classify(SmtpReply.parse(b"550 user unknown\r\n")))
    assert unknown.rcpt_kind is Refusal.OTHER  # "own" inside "unknown" is no ownership refusal
    assert verdict(test_relay.test_submission_requires_auth, SUB, ok(SUB, unknown)) == "inconclusive"
    policy = SubmissionResult(None, None, "250 2.1.0 ok", Refusal.ACCEPTED,
                              "553 5.7.1 <a@x>: Sender address rejected: not logged in", Refusal.NOT_OWNER)
    assert verdict(test_relay.test_submission_requires_auth, SUB, ok(SUB, policy)) == "pass"
    spoof_ok = SpoofResult("250 ok", "bob@example.test", "553 5.7.1 not owner", None, Refusal.NOT_OWNER)
    spoof_bad = SpoofResult("250 ok", "bob@example.test", "250 ok", "250 ok", Refusal.ACCEPTED)
    assert verdict(test_relay.test_no_sender_spoofing, SUB, ok(SUB, spoof_ok)) == "pass"
    assert verdict(test_relay.test_no_sender_spoofing, SUB, ok(SUB, spoof_bad)) == "fail"


def test_vrfy() -> None:
    good = VrfyResult("a@x", "n@x", "252 maybe", "252 maybe", "502 no", 252, 252, 502)
    confirms = VrfyResult("a@x", "n@x", "250 a@x", "550 no", "502 no", 250, 550, 502)
    apart = VrfyResult("a@x", "n@x", "252 maybe", "550 no", "502 no", 252, 550, 502)
    assert verdict(test_enumeration.test_vrfy_expn_confirm_nobody, MX, ok(MX, good)) == "pass"
    assert verdict(test_enumeration.test_vrfy_expn_confirm_nobody, MX, ok(MX, confirms)) == "fail"
    assert verdict(test_enumeration.test_vrfy_expn_confirm_nobody, MX, ok(MX, apart)) == "fail"


def samples(known_text: str = "invalid", known_delay: float = 0.0, outcome: LoginOutcome = LoginOutcome.REJECTED,
            **kw: Any) -> EnumerationResult:
    rows = []
    for i in range(15):
        rows.append(LoginSample(False, LoginOutcome.REJECTED, "535 5.7.8", "invalid", "535 5.7.8 invalid",
                                0.010 + i * 1e-4))
        rows.append(LoginSample(True, outcome, "535 5.7.8", known_text, f"535 5.7.8 {known_text}",
                                0.010 + known_delay + i * 1e-4))
    return EnumerationResult("PLAIN", "bob@x", "nobody@x", tuple(rows), False, **kw)


@pytest.mark.parametrize(("check", "result", "expected"), [
    (test_enumeration.test_login_answers_alike, samples(), "pass"),
    (test_enumeration.test_login_answers_alike, samples(known_text="wrong password"), "fail"),
    (test_enumeration.test_login_timing_alike, samples(), "pass"),
    (test_enumeration.test_login_timing_alike, samples(known_delay=0.15), "fail"),
    (test_enumeration.test_login_timing_alike, samples(known_delay=0.005), "fail"),  # a few ms, separated: caught
    (test_enumeration.test_login_timing_alike, samples(known_delay=0.0005), "pass"),  # below the 1 ms floor
    (test_enumeration.test_login_answers_alike,
     samples(outcome=LoginOutcome.TEMPORARY, throttled="454 4.7.0 later"), "skip"),
    (test_enumeration.test_login_timing_alike, samples(outcome=LoginOutcome.TEMPORARY), "inconclusive"),
])
def test_enumeration_checks(check: Callable[..., None], result: EnumerationResult, expected: str) -> None:
    assert verdict(check, SUB, ok(SUB, result)) == expected


def test_rcpt_limit() -> None:
    cut = RcptLimitResult(21, ("550 no",) * 20 + ("421 too many",), 20, None, False, "250 ok")
    unlimited = RcptLimitResult(30, ("550 no",) * 30, None, None, False, "250 ok")
    assert verdict(test_enumeration.test_rcpt_harvesting_limited, MX, ok(MX, cut)) == "pass"
    assert verdict(test_enumeration.test_rcpt_harvesting_limited, MX, ok(MX, unlimited)) == "fail"


def test_smuggling_check() -> None:
    safe = SmugglingResult((FormResult("<LF>.<LF>", "250 queued", ()),))
    bad = SmugglingResult((FormResult("<LF>.<LF>", "250 queued", ("250 ok", "500 unknown")),))
    assert verdict(test_smuggling.test_no_smtp_smuggling, MX, ok(MX, safe)) == "pass"
    assert verdict(test_smuggling.test_no_smtp_smuggling, MX, ok(MX, bad)) == "fail"


def test_smuggling_split_without_a_second_message_still_fails() -> None:
    """The bare form ended DATA; the rest was refused, then a reset: a failure, and the evidence says so."""
    split = FormResult("<LF>.<LF>", "250 queued", ("554 5.5.0 synchronization error",),
                       "connection reset by the server while reading")
    with pytest.raises(AssertionError, match="no second message went through here"):
        test_smuggling.test_no_smtp_smuggling(MX, ok(MX, SmugglingResult((split,))), Evidence())


def test_smuggling_without_a_second_reply_or_221_is_inconclusive() -> None:
    lost = FormResult("<LF>.<LF>", "250 queued", (), "connection reset by the server while reading", 2)
    refused = FormResult("<CR>.<CR>", "521 5.5.2 bare <LF> received", (), "the server closed the connection")
    assert verdict(test_smuggling.test_no_smtp_smuggling, MX, ok(MX, SmugglingResult((lost, refused)))) \
        == "inconclusive"
    assert verdict(test_smuggling.test_no_smtp_smuggling, MX, ok(MX, SmugglingResult((refused,)))) == "pass"
