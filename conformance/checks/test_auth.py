"""Authentication: a wrong password is refused with the right codes, nobody logs in anonymously, and
every mechanism the server advertises works with valid credentials."""

from __future__ import annotations

import pytest

from conformance.evidence import Evidence
from conformance.fixtures.auth import require_session
from conformance.probes.auth.logins import LoginOutcome
from conformance.probes.auth.sasl import AuthPosture
from conformance.probes.wire.outcome import Attempt
from conformance.target import Endpoint
from conformance.verdict import Inconclusive

_SERVICES = ("submission", "submissions", "imap", "imaps", "pop3", "pop3s")


def _posture(endpoint: Endpoint, auth_posture: dict[str, Attempt[AuthPosture]], evidence: Evidence) -> AuthPosture:
    posture = require_session(evidence, auth_posture[endpoint.id])
    evidence.add("mechanisms_inside_tls", posture.advertised)
    if posture.preauth:
        pytest.skip(f"{endpoint}: greets with PREAUTH, so there is no login to test (see STARTTLS-PREAUTH-01)")
    return posture


@pytest.mark.requirement("AUTH-WRONG-01")
@pytest.mark.service(*_SERVICES)
def test_wrong_password_refused(endpoint: Endpoint, auth_posture: dict[str, Attempt[AuthPosture]],
                                evidence: Evidence) -> None:
    """RFC 4954 6: 535 5.7.8 for bad credentials; RFC 5530 3 / RFC 9051: NO [AUTHENTICATIONFAILED]."""
    posture = _posture(endpoint, auth_posture, evidence)
    wrong = posture.wrong_password
    if wrong is None:
        pytest.skip(f"{endpoint}: no password mechanism advertised inside TLS")
    evidence.add("wrong_password_reply", f"{posture.wrong_mechanism}: {wrong.reply}")
    assert wrong.outcome is not LoginOutcome.ACCEPTED, (
        f"{endpoint}: a login with a WRONG password was accepted ({posture.wrong_mechanism}: '{wrong.reply}'): "
        f"anyone who knows a user name can log in. Fix the authentication backend")
    if wrong.outcome is LoginOutcome.TEMPORARY:
        pytest.skip(f"{endpoint}: the wrong-password login was refused as temporary ('{wrong.reply}'), the "
                    "account is locked or throttled, so the failure code cannot be checked now (see LOCK-*)")
    if endpoint.protocol == "smtp":
        assert wrong.code in ("535 5.7.8", "535"), (
            f"{endpoint}: a wrong password was answered '{wrong.reply}'; RFC 4954 6 says 535 5.7.8 "
            f"(clients and lockout logic key on it)")
    elif endpoint.protocol == "pop3":
        assert wrong.code in ("-ERR [AUTH]", "-ERR"), (
            f"{endpoint}: a wrong password was answered '{wrong.reply}'; expected -ERR [AUTH] (RFC 3206 5): "
            f"[SYS/TEMP] tells clients to retry the same password")
    else:
        assert wrong.code in ("NO [AUTHENTICATIONFAILED]", "NO"), (
            f"{endpoint}: a wrong password was answered '{wrong.reply}'; expected NO [AUTHENTICATIONFAILED] "
            f"(RFC 5530 3)")


@pytest.mark.requirement("AUTH-ANON-01")
@pytest.mark.service(*_SERVICES)
def test_no_anonymous_login(endpoint: Endpoint, auth_posture: dict[str, Attempt[AuthPosture]],
                            evidence: Evidence) -> None:
    """SASL ANONYMOUS (RFC 4505) gives a session without credentials: never on submission or IMAP."""
    posture = _posture(endpoint, auth_posture, evidence)
    anonymous = posture.anonymous
    evidence.add("anonymous_reply", anonymous.reply if anonymous else "not advertised, not tried")
    assert anonymous is None or anonymous.outcome is not LoginOutcome.ACCEPTED, (
        f"{endpoint}: AUTH{'ENTICATE' if endpoint.protocol == 'imap' else ''} ANONYMOUS was accepted "
        f"('{anonymous.reply if anonymous else ''}'): anyone can submit or read mail without an account. "
        f"Remove ANONYMOUS from the mechanisms")


@pytest.mark.requirement("AUTH-MECH-01")
@pytest.mark.service(*_SERVICES)
def test_advertised_mechanisms_work(endpoint: Endpoint, auth_posture: dict[str, Attempt[AuthPosture]],
                                    evidence: Evidence) -> None:
    """Each mechanism advertised inside TLS logs the test account in (ones mailconform does not speak are
    listed by name as untested)."""
    posture = _posture(endpoint, auth_posture, evidence)
    tested = [m for m in posture.mechanisms if m.outcome is not None]
    for m in posture.mechanisms:
        evidence.add(f"mechanism {m.mechanism}", m.reply if m.outcome is None else f"{m.outcome}: {m.reply}")
    untested = sorted(m.mechanism for m in posture.mechanisms if m.outcome is None)
    if untested:
        evidence.add("untested_mechanisms", untested)
    if not tested:
        pytest.skip(f"{endpoint}: no advertised mechanism is one mailconform speaks (untested: "
                    f"{', '.join(untested) or 'none advertised'})")
    temporary = [m for m in tested if m.outcome is LoginOutcome.TEMPORARY]
    broken = [m for m in tested if m.outcome not in (LoginOutcome.ACCEPTED, LoginOutcome.TEMPORARY)]
    assert not broken, (
        f"{endpoint}: advertised mechanism(s) fail with valid credentials: "
        + "; ".join(f"{m.mechanism} -> '{m.reply}'" for m in broken)
        + ". Clients pick an advertised mechanism and fail; stop advertising what does not work")
    if temporary:
        raise Inconclusive(f"{endpoint}: temporary answers for " + "; ".join(f"{m.mechanism} -> '{m.reply}'"
                                                                             for m in temporary))
