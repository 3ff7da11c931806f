"""The catalogue of deliberate flaws of the reference gateway, and the typed switches that turn them on.

Every check of the suite has a flaw here that makes exactly that check fail: ``FlawInfo.fails`` lists
the requirement IDs a flaw must make fail (tests/test_flaws.py holds the gateway to it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class FlawInfo:
    name: str
    family: str                        # starttls, tls, cert, auth, lockout, failover, dns, outbound
    breaks: str                        # one operator-facing sentence: what is wrong
    fails: tuple[str, ...]             # requirement IDs this flaw must make fail, and only those
    services: tuple[str, ...] = ()     # services affected (empty: every service it can touch)
    nodes: tuple[str, ...] = ()        # nodes affected (empty: every node)


def _f(name: str, family: str, breaks: str, *fails: str, services: tuple[str, ...] = (),
       nodes: tuple[str, ...] = ()) -> FlawInfo:
    return FlawInfo(name, family, breaks, tuple(fails), services, nodes)


_SMTP_ALL = ("mx", "submission", "submissions")
_FLAW_LIST = [
    # starttls
    _f("no_starttls", "starttls", "the MX does not offer STARTTLS", "STARTTLS-OFFER-01", services=("mx",)),
    # its AUTH list before STARTTLS carries the OAuth mechanisms too: bearer tokens in clear (AUTH-OAUTH-01)
    _f("auth_before_tls", "starttls", "submission advertises and accepts AUTH before STARTTLS",
       "STARTTLS-AUTH-01", "AUTH-OAUTH-01", services=("submission",)),
    _f("hidden_auth_before_tls", "starttls", "submission hides AUTH before STARTTLS but takes AUTH LOGIN in clear",
       "STARTTLS-AUTH-01", services=("submission",)),
    _f("imap_authenticate_before_tls", "starttls",
       "IMAP advertises LOGINDISABLED but takes AUTHENTICATE PLAIN in clear", "STARTTLS-IMAP-01", services=("imap",)),
    _f("imap_login_before_tls", "starttls", "IMAP accepts LOGIN in cleartext (no LOGINDISABLED)",
       "STARTTLS-IMAP-01", services=("imap",)),
    _f("starttls_offered_twice", "starttls", "STARTTLS is advertised again inside TLS (SMTP and IMAP)",
       "STARTTLS-RECAP-01", services=("mx", "submission", "imap", "pop3")),
    _f("no_implicit_tls", "starttls", "submissions, imaps and pop3s speak plaintext instead of implicit TLS",
       "TLS-IMPLICIT-01", services=("submissions", "imaps", "pop3s")),
    _f("no_state_reset", "auth", "the SMTP session keeps its EHLO state across STARTTLS; a POP3 session that "
       "refused USER in clear still refuses it after STLS", "STARTTLS-RESET-01", services=("mx", "submission", "pop3")),
    _f("starttls_injection", "auth", "commands pipelined behind STARTTLS are executed inside TLS (CVE-2011-0411)",
       "STARTTLS-INJECT-01", services=("mx", "submission", "imap", "pop3")),
    _f("starttls_response_injection", "auth", "the server sends an extra line after its STARTTLS (STLS) go-ahead",
       "STARTTLS-INJECT-02", services=("mx", "pop3")),
    _f("imap_preauth", "auth", "imaps greets with PREAUTH: a session without any login", "STARTTLS-PREAUTH-01",
       services=("imaps",)),
    # tls
    # TLS 1.0 has no AEAD suite, so a server speaking it accepts CBC suites, and OpenSSL cannot keep
    # those out of TLS 1.2: the TLS 1.2 suite check fails as well (on the flawed nodes)
    _f("tls1_0", "tls", "TLS 1.0 is accepted (with the CBC suites it needs)", "TLS-VER-01", "TLS-SUITE-02"),
    _f("tls13_only", "tls", "only TLS 1.3 is accepted: TLS 1.2 peers cannot connect", "TLS-VER-02"),
    _f("no_tls13", "tls", "TLS 1.3 is not offered", "TLS-VER-03"),
    _f("anon_suites", "tls", "anonymous (unauthenticated) cipher suites are accepted", "TLS-SUITE-01"),
    _f("static_rsa", "tls", "a cipher suite without forward secrecy (static RSA) is accepted", "TLS-SUITE-02"),
    # cert (an MX certificate not valid for its name also fails MTA-STS, RFC 8461 §4.2: DNS-MTASTS-02)
    _f("untrusted_cert", "cert", "the certificate is self-signed (does not chain to the trust anchor)",
       "CERT-CHAIN-01", "DNS-MTASTS-02"),
    _f("wrong_hostname", "cert", "the certificate does not name the host", "CERT-NAME-01", "DNS-MTASTS-02"),
    _f("expired_cert", "cert", "the certificate has expired", "CERT-EXPIRY-01", "DNS-MTASTS-02"),
    _f("expiring_cert", "cert", "the certificate expires in 5 days", "CERT-EXPIRY-02"),
    _f("weak_key", "cert", "the certificate has a 1024-bit RSA key", "CERT-KEY-01"),
    _f("sha1_cert", "cert", "the certificate is signed with SHA-1 (so modern verifiers reject its path too)",
       "CERT-SIG-01", "CERT-CHAIN-01", "DNS-MTASTS-02"),
    # auth, relay, enumeration, smuggling
    _f("accept_any_password", "auth", "any password is accepted for an existing user", "AUTH-WRONG-01"),
    _f("anonymous_login", "auth", "AUTH ANONYMOUS is offered and accepted", "AUTH-ANON-01",
       services=("submission", "submissions")),
    _f("broken_mechanism", "auth", "CRAM-MD5 is advertised but always fails", "AUTH-MECH-01",
       services=("submission", "submissions")),
    _f("open_relay", "auth", "the MX relays to foreign domains without authentication", "RELAY-OPEN-01",
       services=("mx",)),
    _f("percent_hack_relay", "auth", "the MX relays the percent-hack form user%other@local", "RELAY-FORMS-01",
       services=("mx",)),
    _f("unauth_submission", "auth", "submission accepts MAIL/RCPT without authentication", "RELAY-SUBMIT-01",
       services=("submission", "submissions")),
    _f("sender_spoofing", "auth", "an authenticated user may send as any address", "RELAY-SPOOF-01",
       services=("submission", "submissions")),
    _f("vrfy_enabled", "auth", "VRFY confirms which users exist", "ENUM-VRFY-01", services=("mx",)),
    _f("auth_user_enumeration", "auth", "a login with an unknown user gets a different answer", "ENUM-AUTH-01"),
    _f("auth_timing_oracle", "auth", "a known user's wrong password is answered ~150 ms slower",
       "ENUM-TIMING-01"),
    _f("unlimited_rcpt", "auth", "unknown recipients are answered without limit (directory harvesting)",
       "ENUM-RCPT-01", services=("mx",)),
    _f("bare_lf_end_of_data", "auth", "<LF>.<LF> ends DATA (SMTP smuggling)", "SMUGGLE-01", services=_SMTP_ALL),
    # lockout
    _f("no_lockout", "lockout", "accounts are never locked, whatever the failures", "LOCK-THRESHOLD-01"),
    _f("per_protocol_lockout", "lockout", "SMTP and IMAP count failures separately", "LOCK-CROSS-01"),
    _f("permanent_lockout", "lockout", "a locked account never unlocks by itself", "LOCK-RECOVER-01"),
    _f("success_no_reset", "lockout", "a successful login does not reset the failure count", "LOCK-RESET-01"),
    _f("lockout_oracle", "lockout", "unknown users never lock, so a lock reveals that a user exists",
       "LOCK-ORACLE-01"),
    _f("locked_says_wrong_password", "lockout", "a locked account is answered as a wrong password",
       "LOCK-TEMPFAIL-01"),
    _f("outage_counts_failures", "lockout", "logins of the lockout account while the auth backend is down count as failures",
       "LOCK-OUTAGE-01"),
    _f("burst_login_limit", "lockout", "more than 3 concurrent logins of the lockout account fail and count as failures",
       "LOCK-BURST-01"),
    _f("stale_password_counted", "lockout", "every repeat of the same wrong password counts again",
       "LOCK-STALE-01"),
    _f("lockout_collateral", "lockout", "locking one account locks every account", "LOCK-COLLATERAL-01"),
    # failover
    _f("single_node", "failover", "only one node serves mail", "FAIL-REDUNDANT-01"),
    _f("weak_backup_node", "failover", "the backup node still accepts TLS 1.0", "FAIL-PARITY-01", "TLS-VER-01",
       "TLS-SUITE-02", nodes=("node2",)),
    _f("permfail_during_outage", "failover", "mail is rejected permanently (5xx) while delivery is down",
       "FAIL-TEMP-01", services=_SMTP_ALL),
    _f("auth_down_says_wrong_password", "failover", "an auth backend outage is answered as a wrong password",
       "FAIL-AUTHDOWN-01"),
    _f("directory_down_550", "failover", "valid users are rejected as unknown (550) while the directory is down",
       "FAIL-DIR-01", services=_SMTP_ALL),
    _f("lose_mail_during_outage", "failover", "mail accepted while delivery is down is lost", "FAIL-NOLOSS-01",
       services=_SMTP_ALL),
    _f("duplicate_after_recovery", "failover", "mail accepted while delivery is down is delivered twice",
       "FAIL-NOLOSS-01", services=_SMTP_ALL),
    _f("slow_data_reply", "failover", "a stalled backend delays the reply to DATA beyond the client's patience",
       "FAIL-DATA-01", services=_SMTP_ALL),
    _f("reset_on_shutdown", "failover", "a node going down resets connections instead of answering 421 (BYE, -ERR)",
       "FAIL-SHUTDOWN-01"),
    _f("slow_recovery", "failover", "a node answers again only after its recovery-time objective has passed",
       "FAIL-RECOVER-01"),
]
_DNS_FLAWS = [
    _f("mx_cname", "dns", "the MX host mx2.example.test is an alias (CNAME) of mx1.example.test", "DNS-MX-01"),
    _f("spf_two_records", "dns", "the domain publishes two SPF records", "DNS-SPF-01"),
    _f("spf_too_many_lookups", "dns", "the SPF record needs 12 DNS lookups through an include",
       "DNS-SPF-01"),
    _f("spf_softfail", "dns", "the SPF record ends in ~all (soft fail)", "DNS-SPF-02"),
    _f("dmarc_external_rua", "dns", "DMARC reports go to a foreign domain that has not authorised them",
       "DNS-DMARC-01"),
    _f("dmarc_none", "dns", "the DMARC policy is p=none (monitoring only)", "DNS-DMARC-02"),
    _f("tlsrpt_missing", "dns", "no TLS-RPT record at _smtp._tls", "DNS-TLSRPT-01"),
    _f("dkim_missing", "dns", "the DKIM selector 'mail' publishes no key", "DNS-DKIM-01"),
    _f("dkim_1024", "dns", "the DKIM key is RSA 1024 bit", "DNS-DKIM-02"),
    _f("srv_plaintext", "dns", "_submission._tcp points mail clients at the STARTTLS port", "DNS-SRV-01"),
    # the MX hosts live in the mail domain's zone: an unsigned zone leaves both unproven, and their TLSA too
    _f("unsigned_zone", "dns", "the mail domain's zone is not DNSSEC-signed", "DNS-DNSSEC-01", "DNS-DNSSEC-02",
       "DNS-DANE-01"),
    _f("bogus_signature", "dns", "the RRSIG over the domain's MX records does not verify", "DNS-DNSSEC-01"),
    _f("tlsa_missing", "dns", "the MX hosts publish no _25._tcp TLSA records", "DNS-DANE-01"),
    _f("tlsa_mismatch", "dns", "the TLSA records name a key the MX hosts do not serve (an old key)",
       "DNS-DANE-02"),
    _f("tlsa_pkix_usage", "dns", "a PKIX-EE (1 1 1) TLSA record sits beside the DANE-EE one", "DNS-DANE-03"),
    _f("tlsa_single_record", "dns", "each MX host publishes one 3 1 1 TLSA record: a new key breaks DANE",
       "DNS-DANE-04"),
    # checked in the bsi profile only (tests/test_flaws.py runs it there)
    _f("tlsrpt_https_only", "dns", "TLS-RPT reports go to an https: endpoint, not by mail", "DNS-TLSRPT-02"),
    _f("mta_sts_missing", "dns", "no _mta-sts TXT record: senders never look for the MTA-STS policy",
       "DNS-MTASTS-01"),
    _f("mta_sts_redirect", "dns", "the policy host answers 301 (a redirect) instead of the policy",
       "DNS-MTASTS-01"),
    _f("mta_sts_mx_mismatch", "dns", "the MTA-STS policy names mx1 only: the backup MX mx2 is refused",
       "DNS-MTASTS-02"),
    _f("mta_sts_testing", "dns", "the MTA-STS policy is in mode testing", "DNS-MTASTS-03"),
]
# outbound: the gateway as a sender, judged at the suite's lab MX hosts (conformance/reference/sender.py)
_OUTBOUND_FLAWS = [
    _f("no_starttls_client", "outbound", "the gateway sends in plaintext unless DANE or MTA-STS demands TLS",
       "OUT-STARTTLS-01", "OUT-OPPORTUNISTIC-01"),
    _f("tls10_client", "outbound", "the gateway's ClientHello offers TLS 1.0 and 1.1", "OUT-HELLO-01"),
    _f("no_sni", "outbound", "the gateway sends no SNI when it starts TLS", "OUT-SNI-01"),
    _f("no_dane", "outbound", "the gateway ignores TLSA records (delivers to a mismatching or plaintext MX)",
       "OUT-DANE-01", "OUT-DANE-02"),
    _f("no_dnssec_validation", "outbound", "the gateway uses DNS answers whose signatures do not verify",
       "OUT-DNSSEC-01"),
    _f("plaintext_fallback", "outbound", "the gateway retries in plaintext when a certificate does not verify",
       "OUT-OPPORTUNISTIC-01"),
    _f("no_retry", "outbound", "the gateway drops a message after one temporary failure (4xx)", "OUT-RETRY-01"),
    _f("no_secondary_mx", "outbound", "the gateway tries only the most preferred MX host", "OUT-BACKUP-01"),
    _f("dkim_sha1", "outbound", "the gateway signs outgoing mail with DKIM rsa-sha1", "OUT-DKIM-01"),
    _f("mta_sts_ignored", "outbound", "the gateway ignores MTA-STS policies (enforce included)", "OUT-STS-01"),
    _f("mta_sts_testing_enforced", "outbound", "the gateway enforces MTA-STS policies in testing mode",
       "OUT-STS-02"),
]
# issue 16: TLS posture
_TLS_POSTURE_FLAWS = [
    _f("client_cipher_preference", "tls", "the client's cipher-suite order wins over the server's", "TLS-PREF-01"),
    # a CBC suite accepted at all is TLS-SUITE-02's finding as well
    _f("legacy_suite_ranked_high", "tls", "a CBC suite ranks above forward-secret AEAD suites", "TLS-PREF-02",
       "TLS-SUITE-02"),
    _f("weak_dh_params", "tls", "DHE suites use the 1024-bit Oakley group 2 prime (Logjam)", "TLS-KEX-01"),
    _f("no_extended_master_secret", "tls", "TLS 1.2 ignores the extended master secret (triple handshake)",
       "TLS-EMS-01"),
    _f("sni_required", "tls", "a hello without server_name is refused (many MTAs send none)", "TLS-SNI-01"),
    _f("no_sni_wrong_cert", "tls", "without server_name the server presents a certificate for another host",
       "TLS-SNI-01"),
    _f("cbc_without_etm", "tls", "CBC suites are accepted with MAC-then-encrypt only", "TLS-ETM-01", "TLS-SUITE-02"),
]
_POP3_FLAWS = [
    _f("pop3_user_before_tls", "starttls", "POP3 offers and accepts USER/PASS and AUTH PLAIN before STLS",
       "STARTTLS-POP3-01", services=("pop3",)),
    _f("pop3_separate_lockout", "lockout", "POP3 counts failed logins apart from SMTP and IMAP", "LOCK-CROSS-01",
       services=("pop3", "pop3s")),
    _f("pop3_apop_before_tls", "starttls", "POP3 offers APOP (a greeting timestamp) and checks it before STLS",
       "STARTTLS-POP3-01", services=("pop3",)),
]
_OAUTH_FLAWS = [
    _f("oauth_before_tls", "auth", "IMAP and POP3 offer OAUTHBEARER and XOAUTH2 before STARTTLS/STLS",
       "AUTH-OAUTH-01", services=("imap", "pop3")),
    _f("basic_auth_still_on", "auth", "the OAuth-only account still logs in with its password over PLAIN/LOGIN",
       "AUTH-BASIC-01"),
    _f("oauth_error_reveals_user", "auth", "a refused token of an unknown user gets another RFC 7628 error",
       "AUTH-OAUTH-02"),
]
_OUTBOUND_FLAWS.append(
    _f("tlsrpt_missing_failures", "outbound", "the gateway's TLS-RPT report counts no failed session (a TLSA "
       "mismatch included)", "OUT-TLSRPT-01"))
# issue 15's further MX postures: an expired certificate, STARTTLS that fails
_OUTBOUND_FLAWS += [
    _f("dane_checks_expiry", "outbound", "the gateway checks the certificate's dates under DANE-EE: an expired "
       "certificate matching its TLSA record gets nothing", "OUT-DANE-01"),
    _f("plaintext_after_failed_starttls", "outbound", "after STARTTLS fails (454, or a failed handshake) the "
       "gateway sends in plaintext, even to an MX host with TLSA records", "OUT-DANE-02"),
    _f("sts_ignores_expiry", "outbound", "under an MTA-STS enforce policy the gateway accepts an expired MX "
       "certificate", "OUT-STS-01"),
]
# checked in the bsi profile only (tests/test_flaws.py runs it there)
_OUTBOUND_FLAWS.append(
    _f("sts_wildcard_accepted", "outbound", "the gateway accepts an MTA-STS policy whose host serves a wildcard "
       "certificate", "OUT-STS-03"))
FLAWS: dict[str, FlawInfo] = {info.name: info for info in [*_FLAW_LIST, *_DNS_FLAWS, *_OUTBOUND_FLAWS,
                                                                 *_TLS_POSTURE_FLAWS, *_POP3_FLAWS, *_OAUTH_FLAWS]}
# issue 16, branch tls-reneg
FLAWS["client_renegotiation"] = _f("client_renegotiation", "tls", "the server runs a new full handshake whenever a "
                                   "client asks (client-initiated renegotiation, a DoS lever)", "TLS-RENEG-02")


@dataclass(frozen=True)
class Flaws:
    """Which flaws are on: one typed switch per flaw. ``"name" in flaws`` works too."""

    no_starttls: bool = False
    auth_before_tls: bool = False
    hidden_auth_before_tls: bool = False
    imap_authenticate_before_tls: bool = False
    imap_login_before_tls: bool = False
    starttls_offered_twice: bool = False
    no_implicit_tls: bool = False
    no_state_reset: bool = False
    starttls_injection: bool = False
    starttls_response_injection: bool = False
    imap_preauth: bool = False
    tls1_0: bool = False
    tls13_only: bool = False
    no_tls13: bool = False
    anon_suites: bool = False
    static_rsa: bool = False
    untrusted_cert: bool = False
    wrong_hostname: bool = False
    expired_cert: bool = False
    expiring_cert: bool = False
    weak_key: bool = False
    sha1_cert: bool = False
    accept_any_password: bool = False
    anonymous_login: bool = False
    broken_mechanism: bool = False
    open_relay: bool = False
    percent_hack_relay: bool = False
    unauth_submission: bool = False
    sender_spoofing: bool = False
    vrfy_enabled: bool = False
    auth_user_enumeration: bool = False
    auth_timing_oracle: bool = False
    unlimited_rcpt: bool = False
    bare_lf_end_of_data: bool = False
    no_lockout: bool = False
    per_protocol_lockout: bool = False
    permanent_lockout: bool = False
    success_no_reset: bool = False
    lockout_oracle: bool = False
    locked_says_wrong_password: bool = False
    outage_counts_failures: bool = False
    burst_login_limit: bool = False
    stale_password_counted: bool = False
    lockout_collateral: bool = False
    single_node: bool = False
    weak_backup_node: bool = False
    permfail_during_outage: bool = False
    auth_down_says_wrong_password: bool = False
    directory_down_550: bool = False
    lose_mail_during_outage: bool = False
    duplicate_after_recovery: bool = False
    slow_data_reply: bool = False
    reset_on_shutdown: bool = False
    slow_recovery: bool = False
    mx_cname: bool = False
    spf_two_records: bool = False
    spf_too_many_lookups: bool = False
    spf_softfail: bool = False
    dmarc_external_rua: bool = False
    dmarc_none: bool = False
    tlsrpt_missing: bool = False
    dkim_missing: bool = False
    dkim_1024: bool = False
    srv_plaintext: bool = False
    unsigned_zone: bool = False
    bogus_signature: bool = False
    tlsa_missing: bool = False
    tlsa_mismatch: bool = False
    tlsa_pkix_usage: bool = False
    no_starttls_client: bool = False
    tls10_client: bool = False
    no_sni: bool = False
    no_dane: bool = False
    no_dnssec_validation: bool = False
    plaintext_fallback: bool = False
    no_retry: bool = False
    no_secondary_mx: bool = False
    dkim_sha1: bool = False
    mta_sts_ignored: bool = False
    mta_sts_testing_enforced: bool = False
    tlsa_single_record: bool = False
    tlsrpt_https_only: bool = False
    mta_sts_missing: bool = False
    mta_sts_redirect: bool = False
    mta_sts_mx_mismatch: bool = False
    mta_sts_testing: bool = False
    client_cipher_preference: bool = False
    legacy_suite_ranked_high: bool = False
    weak_dh_params: bool = False
    no_extended_master_secret: bool = False
    cbc_without_etm: bool = False
    sni_required: bool = False
    no_sni_wrong_cert: bool = False
    pop3_user_before_tls: bool = False
    pop3_separate_lockout: bool = False
    pop3_apop_before_tls: bool = False
    oauth_before_tls: bool = False
    basic_auth_still_on: bool = False
    oauth_error_reveals_user: bool = False
    tlsrpt_missing_failures: bool = False
    dane_checks_expiry: bool = False
    plaintext_after_failed_starttls: bool = False
    sts_ignores_expiry: bool = False
    sts_wildcard_accepted: bool = False
    client_renegotiation: bool = False

    @classmethod
    def parse(cls, names: Iterable[str]) -> Flaws:
        """Switch on the named flaws. Raises ValueError naming an unknown flaw and listing the valid ones."""
        wanted = [names] if isinstance(names, str) else list(names)  # one name, not its letters
        for name in wanted:
            if name not in FLAWS:
                raise ValueError(f"unknown flaw {name!r} (valid flaws: {', '.join(sorted(FLAWS))})")
        return cls(**{name: True for name in wanted})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in FLAWS and bool(getattr(self, name))

    def tls1_0_on(self, node: str) -> bool:
        """TLS 1.0 on this node: everywhere with tls1_0, on the backup node with weak_backup_node."""
        return self.tls1_0 or (self.weak_backup_node and node in FLAWS["weak_backup_node"].nodes)


def listing() -> str:
    """Every flaw, its family and what it breaks, one aligned row each (`mailconform serve --list-flaws`)."""
    flaws = sorted(FLAWS.values(), key=lambda f: (f.family, f.name))
    name_width = max(len(f.name) for f in flaws)
    family_width = max(len(f.family) for f in flaws)
    return "\n".join(f"{f.name:<{name_width}}  {f.family:<{family_width}}  {f.breaks}" for f in flaws)


def _check_catalogue() -> None:
    # a flaw in FLAWS without a switch (or the reverse) is a typo that would silently do nothing
    switches = {f.name for f in fields(Flaws)}
    if switches != set(FLAWS):
        raise RuntimeError(f"flaw catalogue and switches differ: {sorted(switches ^ set(FLAWS))}")


_check_catalogue()
