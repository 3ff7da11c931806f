"""The shipped suite's verdicts against real Postfix and Dovecot, configuration by configuration.

The good configuration passes every check that runs; each weak configuration fails exactly the checks
that catch its one weakness, on exactly the endpoints that carry it, and nothing else. ``EXPECTED`` is
the whole specification: a new check adds a row (an ID that no shipped check carries yet is ignored,
so a row may be written before its check lands). Lockout and active failover checks skip without their
opt-ins (the lockout family runs against Dovecot in test_real_lockout.py, the failover family with
operator hooks in test_real_failover.py), so the suite runs here as a vendor's CI would by default.

The instances run without Dovecot's login throttling (``MailServers(auth_throttle=False)``): a rig
setting for speed that no check here judges. The suite runs go side by side, four at a time, in threads:
they spend their time waiting on the servers; four keeps a 2-core CI box's load (which the timing check
must see through) moderate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conformance.requirements import CATALOGUE
from tests.real.servers import CONFIGS, RealTarget
from tests.suite_runner import SuiteRun, run_suite

pytestmark = pytest.mark.real

ALL = ("mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")  # every endpoint the check runs on
TARGET_WIDE = ("",)  # a check of the whole target (no endpoint in its test ID)
UNVERIFIED = "the certificate does not verify"


@dataclass(frozen=True)
class Expected:
    """``fails``: requirement ID -> services whose endpoints must fail it; every other case must pass,
    except ``skips``: requirement ID (or "*" for any) -> a phrase the skip reason must contain."""

    fails: dict[str, tuple[str, ...]] = field(default_factory=dict)
    skips: dict[str, str] = field(default_factory=dict)


# Every configuration is one node: FAIL-REDUNDANT-01 (a SHOULD in baseline, a check of the whole target)
# fails everywhere, and FAIL-PARITY-01 has no second node to compare (test_real_fleet.py runs two).
ONE_NODE = {"FAIL-REDUNDANT-01": TARGET_WIDE}
# Nor does any configuration name a mail domain: the dns family skips here (test_real_dns.py runs it against Knot and Unbound).
# Nor do these configurations speak OAuth 2.0 or retire basic auth (test_real_oauth.py runs the oauth2 passdb).
ONE_NODE_SKIPS = {"FAIL-PARITY-01": "only one node", "AUTH-OAUTH-02": "no OAuth mechanism",
                  "AUTH-BASIC-01": "keeps basic authentication",
                  **{rid: "[target] domain" for rid in CATALOGUE if rid.startswith("DNS-")},
                  # nor an outbound lab: test_real_outbound_checks.py runs that family against real senders
                  **{rid: "[outbound]" for rid in CATALOGUE if rid.startswith("OUT-")}}

EXPECTED: dict[str, Expected] = {
    "good": Expected(),
    "weak-tls": Expected({"TLS-VER-01": ALL, "TLS-SUITE-02": ALL}),
    # DH_anon with AES-GCM is forward-secret AEAD: only the broken-class check (anonymous) objects, and on
    # Postfix the key exchange one: with no certificate key to size it by, OpenSSL's automatic DH picks the
    # 1024-bit RFC 2409 prime for the anonymous suites (Dovecot loads its 4096-bit ssl_dh file).
    "anon-tls": Expected({"TLS-SUITE-01": ALL, "TLS-KEX-01": ("mx", "submission", "submissions")}),
    "auth-before-tls": Expected({"STARTTLS-AUTH-01": ("submission",)}),
    # disable_plaintext_auth = no and ssl = yes are global in Dovecot: POP3 takes passwords in clear as well
    # USER taken in clear leaves no pre-TLS refusal whose survival of STLS STARTTLS-RESET-01 could judge
    "imap-cleartext": Expected({"STARTTLS-IMAP-01": ("imap",), "STARTTLS-POP3-01": ("pop3",)},
                               {"STARTTLS-RESET-01": "USER is taken in clear"}),
    "pop3-cleartext": Expected({"STARTTLS-POP3-01": ("pop3",)}, {"STARTTLS-RESET-01": "USER is taken in clear"}),
    # Postfix relays the plain foreign address; RELAY-FORMS-01 then has nothing more to prove and skips
    # (were it to run, Postfix rejects the disguised forms as unknown virtual users, 550 5.1.1).
    "open-relay": Expected({"RELAY-OPEN-01": ("mx",)}, {"RELAY-FORMS-01": "relayed already"}),
    # Checks that log in refuse to send a password to a certificate that does not verify: they skip.
    # An expired certificate is no evidence that it "does not expire soon": CERT-EXPIRY-02 skips too.
    "expired-cert": Expected({"CERT-EXPIRY-01": ALL}, {"*": UNVERIFIED, "CERT-EXPIRY-02": "see CERT-EXPIRY-01",
                                                       "AUTH-OAUTH-02": UNVERIFIED}),
    "wrong-name-cert": Expected({"CERT-NAME-01": ALL}, {"*": UNVERIFIED, "AUTH-OAUTH-02": UNVERIFIED}),
}

SIDE_BY_SIDE = 4  # suite runs at once

# Families whose checks need an opt-in this tier does not give (see the module docstring).
OPT_IN_FAMILIES = {"lockout", "failover"}


@pytest.fixture(scope="session")
def suite_runs(real_target: Callable[[str], RealTarget],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SuiteRun]]:
    """The suite's run against every configuration, once per session, side by side."""
    targets = {name: real_target(name) for name in CONFIGS}  # started one after another: cheap
    workdirs = {name: Path(tmp_path_factory.mktemp(f"suite-{name}")) for name in CONFIGS}
    with ThreadPoolExecutor(max_workers=SIDE_BY_SIDE) as pool:
        futures = {name: pool.submit(run_suite, real.path, workdirs[name]) for name, real in targets.items()}
        yield {name: future.result() for name, future in futures.items()}


def _service(case_name: str) -> str:
    """'test_x[submission@node1]' -> 'submission'."""
    return case_name.rsplit("[", 1)[-1].split("@", 1)[0] if "[" in case_name else ""


def test_table_names_every_configuration() -> None:
    assert set(EXPECTED) == set(CONFIGS)


def _outside_the_profile(requirement: str, reason: str) -> bool:
    """A requirement of other profiles only (OUT-STS-03, DNS-TLSRPT-02: bsi) skips in the run's baseline profile."""
    return "baseline" not in CATALOGUE[requirement].profiles and "not part of the baseline profile" in reason


def _wrong_verdicts(name: str, run: SuiteRun) -> list[str]:
    shipped = {c.requirement for c in run.cases}
    expected = EXPECTED[name]
    fails = {rid: services for rid, services in {**ONE_NODE, **expected.fails}.items() if rid in shipped}
    skips = {**ONE_NODE_SKIPS, **expected.skips}
    wrong = []
    for case in run.cases:
        if case.verdict == "skipped" and case.family in OPT_IN_FAMILIES and "--mail-allow" in case.reason:
            continue
        if case.verdict == "skipped" and _outside_the_profile(case.requirement, case.reason):
            continue
        skip_phrase = skips.get(case.requirement, skips.get("*"))
        if case.verdict == "skipped" and skip_phrase and skip_phrase in case.reason:
            continue
        want = "fail" if _service(case.name) in fails.get(case.requirement, ()) else "pass"
        if case.verdict != want:
            wrong.append(f"{case.name}: expected {want}, got {case.verdict}: {case.reason}")
    for rid, services in fails.items():  # every expected failure happened on every endpoint it names
        ran = {_service(c.name) for c in run.cases if c.requirement == rid}
        failing = {_service(c.name) for c in run.cases if c.requirement == rid and c.verdict == "fail"}
        if failing != set(services) & ran:
            wrong.append(f"{rid}: failed on {sorted(failing)}, expected on {sorted(set(services) & ran)}")
    return wrong


@pytest.mark.parametrize("name", list(CONFIGS))
def test_verdicts_match_the_configuration(suite_runs: dict[str, SuiteRun], name: str) -> None:
    run = suite_runs[name]
    assert run.cases, run.output[-3000:]
    wrong = _wrong_verdicts(name, run)
    assert not wrong, f"{name} ({CONFIGS[name].weakness or 'the good configuration'}):\n" + "\n".join(wrong)


def test_every_weakness_is_caught_by_some_shipped_check(suite_runs: dict[str, SuiteRun]) -> None:
    """A weak configuration that no shipped check fails would prove nothing: each fails at least one."""
    for name, run in suite_runs.items():
        if CONFIGS[name].weakness:
            assert set(EXPECTED[name].fails) & run.failing_requirements, (name, run.describe())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_exit_code_follows_the_verdicts(suite_runs: dict[str, SuiteRun], name: str) -> None:
    """Under the default policy (fail on a failed MUST) only a failed MUST makes the run exit non-zero:
    the good configuration (failing only the SHOULD FAIL-REDUNDANT-01) exits 0."""
    run = suite_runs[name]
    failed_musts = [c for c in run.with_verdict("fail") if c.level == "MUST"]
    assert (run.returncode != 0) == bool(failed_musts), run.output[-2000:]
    assert (run.returncode == 0) == (name == "good"), run.describe()


def test_failure_messages_name_the_endpoint(suite_runs: dict[str, SuiteRun]) -> None:
    for name, run in suite_runs.items():
        for case in run.with_verdict("fail"):
            assert "mx1.example.test" in case.reason or "@node1" in case.reason, (name, case.reason)


def test_no_secret_in_any_report(suite_runs: dict[str, SuiteRun], real_target: Callable[[str], RealTarget],
                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    """Neither the console output nor the JUnit XML of any run carries a password (the suite logs in
    over real SASL and IMAP with them)."""
    junit_files = list(tmp_path_factory.getbasetemp().glob("suite-*/suite-*.xml"))
    assert len(junit_files) >= len(CONFIGS)
    for name, run in suite_runs.items():
        for account in real_target(name).servers.accounts.values():
            assert account.password not in run.output
            for path in junit_files:
                assert account.password not in path.read_text(encoding="utf-8"), path
