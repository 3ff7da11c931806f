"""OAuth 2.0 against real Dovecot (oauth2 passdb, tokens checked at a loopback RFC 7662 introspection endpoint)
and Postfix submission authenticating through Dovecot SASL: the OAuth checks and AUTH-MECH-01 (which logs
in with the account's token) run as a vendor's CI runs them, and their verdicts are asserted.

Found on Debian 12 (Postfix 3.7, Dovecot 2.3.19): Postfix passes Dovecot's OAUTHBEARER and XOAUTH2 on to
submission clients and they log in with a token; a token nobody issued is refused alike for known and
unknown users, with {"status":"invalid_token"} (OAUTHBEARER) or {"status":"401","schemes":"bearer",...}
(XOAUTH2) as the error; with disable_plaintext_auth = no Dovecot offers both before STARTTLS/STLS too.
Basic authentication retired for one user: Dovecot 2.3 filters passdbs by mechanism for every user alike, but
``username_filter`` (2.2.30+) lets the password passdb skip that user, who then logs in only with a token."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.real.introspection import Introspection
from tests.real.servers import CONFIGS, DOMAIN, Account, MailServers, unavailable_reason
from tests.suite_runner import SuiteRun, run_suite

pytestmark = pytest.mark.real

CHECKS = "test_oauth_offered_only_inside_tls or test_invalid_token_refused_alike or test_advertised_mechanisms_work"
LOGIN_SERVICES = ("submission", "submissions", "imap", "imaps", "pop3", "pop3s")
# configuration -> (requirement, service) pairs that must fail; every other case of the three checks passes
EXPECTED_FAILS = {
    "good": set(),
    # Dovecot offers OAUTHBEARER and XOAUTH2 wherever it allows plaintext mechanisms; Postfix keeps AUTH
    # behind STARTTLS (smtpd_tls_auth_only), so only Dovecot's ports fail
    "imap-cleartext": {("AUTH-OAUTH-01", "imap"), ("AUTH-OAUTH-01", "pop3")},
}


def _run(name: str, workdir: Path) -> tuple[SuiteRun, Introspection, str]:
    token = secrets.token_urlsafe(24)
    with Introspection({token: f"alice@{DOMAIN}"}) as endpoint, \
            MailServers(CONFIGS[name], auth_throttle=False, introspection_url=endpoint.url,
                        tokens={"test": token}) as servers:
        return run_suite(servers.write_target(), workdir, extra=("-k", CHECKS)), endpoint, token


def _service(case_name: str) -> str:
    return case_name.rsplit("[", 1)[-1].split("@", 1)[0]


@pytest.mark.parametrize("name", list(EXPECTED_FAILS))
def test_oauth_verdicts_on_dovecot_and_postfix(name: str, tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    run, endpoint, token = _run(name, tmp_path)
    verdicts = {(case.requirement, _service(case.name)): case.verdict for case in run.cases}
    expected = {(rid, service): "fail" if (rid, service) in EXPECTED_FAILS[name] else "pass"
                for rid in ("AUTH-MECH-01", "AUTH-OAUTH-02") for service in LOGIN_SERVICES}
    expected |= {("AUTH-OAUTH-01", service): "fail" if ("AUTH-OAUTH-01", service) in EXPECTED_FAILS[name] else "pass"
                 for service in ("submission", "imap", "pop3")}
    assert verdicts == expected, run.describe()
    # AUTH-MECH-01 passed with the token (Dovecot introspected it as active) and the random ones were inactive
    assert True in endpoint.asked and False in endpoint.asked
    assert token not in run.output


@pytest.mark.parametrize("retired", [True, False], ids=["password-retired", "password-kept"])
def test_basic_auth_retired_for_the_oauth_user_only(retired: bool, tmp_path: Path) -> None:
    """[policy] basic_auth = "forbidden" and an oauth account with a token and its correct password: Dovecot's
    password passdb skipping that user refuses the password everywhere (Postfix submission asks Dovecot);
    without the filter the password still logs in on every client port."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    oauth = Account("oauth", f"olivia@{DOMAIN}", secrets.token_urlsafe(16))
    accounts = {"test": Account("test", f"alice@{DOMAIN}", secrets.token_urlsafe(16)), "oauth": oauth}
    token = secrets.token_urlsafe(24)
    with Introspection({token: oauth.username}) as endpoint, \
            MailServers(CONFIGS["good"], auth_throttle=False, introspection_url=endpoint.url, accounts=accounts,
                        tokens={"oauth": token}, passwords_retired=(oauth.username,) if retired else ()) as servers:
        target = servers.write_target()
        target.write_text(target.read_text() + 'basic_auth = "forbidden"\n')  # [policy] is the last table
        run = run_suite(target, tmp_path, extra=("-k", "test_basic_auth_retired or test_advertised_mechanisms_work"))
    verdicts = {(case.requirement, _service(case.name)): case.verdict for case in run.cases}
    expected = {("AUTH-BASIC-01", service): "pass" if retired else "fail" for service in LOGIN_SERVICES}
    expected |= {("AUTH-MECH-01", service): "pass" for service in LOGIN_SERVICES}
    assert verdicts == expected, run.describe()
    assert oauth.password not in run.output and token not in run.output
