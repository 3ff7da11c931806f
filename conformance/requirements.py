"""The requirement catalogue: every check cites exactly one entry here by ID.

A requirement's level can differ per profile: where standards disagree (legacy TLS on port 25,
wildcard certificates, mandatory DANE, redundancy), the profile decides, not the check.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Level(StrEnum):
    MUST = "MUST"
    SHOULD = "SHOULD"


PROFILES = ("baseline", "sensitive-data", "bsi")
DEFAULT_PROFILE = "baseline"
# bsi: the sensitive-data levels plus the BSI TR-03108 rules that go beyond the RFCs (bsi-only entries)
INHERITS = {"bsi": "sensitive-data"}
# The narrowest the title and source column of `as_table` gets, however narrow the terminal.
MIN_TEXT_WIDTH = 30


@dataclass(frozen=True)
class Requirement:
    id: str
    title: str
    source: str
    level: Level
    family: str
    profiles: tuple[str, ...] = PROFILES
    # Per-profile level where a profile is stricter (or laxer) than the requirement's own level.
    profile_levels: dict[str, Level] = field(default_factory=dict)

    def level_in(self, profile: str) -> Level | None:
        """The level this requirement has in a profile, or None when the profile leaves it out."""
        if profile not in self.profiles:
            return None
        inherited = self.profile_levels.get(INHERITS.get(profile, profile), self.level)
        return self.profile_levels.get(profile, inherited)

    def as_dict(self, profile: str | None = None) -> dict[str, object]:
        """The entry as JSON data; with a profile, `level` is the level in force there."""
        level = self.level_in(profile) if profile else self.level
        return {
            "id": self.id, "title": self.title, "source": self.source, "level": str(level),
            "family": self.family, "profiles": list(self.profiles),
            "profile_levels": {p: str(lv) for p, lv in self.profile_levels.items()},
        }


def _r(id: str, title: str, source: str, level: str, family: str, *,
       profiles: tuple[str, ...] = PROFILES, **profile_levels: str) -> Requirement:
    levels = {k.replace("_", "-"): Level(v) for k, v in profile_levels.items()}
    return Requirement(id, title, source, Level(level), family, profiles, levels)


MUST, SHOULD = "MUST", "SHOULD"

# Each family keeps its own block; keep IDs stable (CI history and JUnit consumers key on them).
_STARTTLS = [
    _r("STARTTLS-OFFER-01", "MX and submission offer STARTTLS in EHLO and complete the handshake",
       "RFC 3207 §4; BSI TR-03108 v2.0 4.1.3 (TR-03108-03-M); CISA BOD 18-01", MUST, "starttls"),
    _r("STARTTLS-AUTH-01", "Submission neither advertises nor accepts AUTH before TLS",
       "RFC 4954 §4; RFC 8314 §4.1; NIST SP 800-52r2 §3", MUST, "starttls"),
    _r("STARTTLS-IMAP-01", "IMAP advertises LOGINDISABLED and refuses LOGIN before STARTTLS",
       "RFC 9051 §6.2.3; RFC 3501 §6.2.3; RFC 2595 §3.2", MUST, "starttls"),
    _r("STARTTLS-POP3-01", "POP3 offers STLS and refuses USER/PASS, APOP and AUTH before it",
       "RFC 2595 §4; RFC 8314 §4.1", MUST, "starttls"),
    _r("STARTTLS-RECAP-01", "After STARTTLS the capabilities are fetched again and STARTTLS is not offered twice",
       "RFC 3207 §4.2; RFC 9051 §6.2.1; RFC 2595 §3.1", MUST, "starttls"),
]

_TLS = [
    _r("TLS-IMPLICIT-01", "Implicit-TLS ports (465, 993) complete a handshake at TLS 1.2 or newer",
       "RFC 8314 §3.3, §4.1 (updated by RFC 8997); BSI TR-03108 v2.0 4.1.1 (TR-03108-01-M)", MUST, "tls"),
    _r("TLS-VER-01", "No protocol older than TLS 1.2 is accepted (SSL 2.0/3.0, TLS 1.0, TLS 1.1)",
       "RFC 8996 §2-§5; RFC 9325 §3.1.1; NIST SP 800-52r2 §3.1; BSI TR-03116-4 2.1.1", MUST, "tls"),
    _r("TLS-VER-02", "TLS 1.2 is supported", "RFC 9325 §3.1.1; NIST SP 800-52r2 §3.1; BSI TR-03116-4 2.1.1",
       MUST, "tls"),
    _r("TLS-VER-03", "TLS 1.3 is supported", "RFC 9325 §3.1.1 (SHOULD); NIST SP 800-52r2 §3.1 (shall by 2024); "
       "BSI TR-03116-4 2.1.1 (recommended)", SHOULD, "tls"),
    _r("TLS-SUITE-01", "No cipher suite of a broken class (NULL, anonymous, EXPORT, RC4, DES/3DES, MD5)",
       "RFC 9325 §4.1; RFC 7465 §2; RFC 8996; NIST SP 800-52r2 §3.3.1", MUST, "tls"),
    _r("TLS-SUITE-02", "Only forward-secret AEAD cipher suites are accepted",
       "RFC 9325 §4.2; NIST SP 800-52r2 §3.3.1; BSI TR-03116-4 2.2.1.2 / TR-02102-2 Tab. 1", SHOULD, "tls",
       sensitive_data=MUST),
    _r("TLS-COMP-01", "TLS compression is not accepted (CRIME)", "RFC 9325 §3.3; BSI TR-02102-2 3.3.4.3", MUST, "tls"),
    _r("TLS-RENEG-01", "Secure renegotiation (RFC 5746) is supported on TLS 1.2 and older",
       "RFC 5746 §3.6, §4.3; RFC 9325 §3.5; NIST SP 800-52r2 §3.4.1.4", MUST, "tls"),
]

# issue 16: posture the raw scan already sees
_TLS_POSTURE = [
    _r("TLS-FALLBACK-01", "With more than one version accepted, a hello below the best one carrying "
       "TLS_FALLBACK_SCSV is refused with inappropriate_fallback", "RFC 7507 §3", SHOULD, "tls"),
    _r("TLS-PREF-01", "The server enforces its own cipher-suite order and picks a forward-secret AEAD suite first",
       "RFC 9325 §4.1 (MUST prefer forward secrecy), §4.2.1", SHOULD, "tls", sensitive_data=MUST),
    _r("TLS-PREF-02", "Suites without forward-secret AEAD, where still accepted, rank below every "
       "forward-secret AEAD suite", "RFC 9325 §4.1, §4.2.1 (servers MUST prefer it over weaker suites)",
       SHOULD, "tls"),
    _r("TLS-KEX-01", "Key exchange: elliptic curves of at least 224 bits, finite-field DHE primes of at least "
       "2048 bits and no well-known shared prime (Logjam)", "RFC 9325 §4.5; IANA TLS Supported Groups", MUST,
       "tls"),
    _r("TLS-EMS-01", "TLS 1.2 negotiates the extended master secret", "RFC 9325 §3.5 (MUST); RFC 7627 §5.2", MUST,
       "tls"),
    _r("TLS-ETM-01", "Every accepted CBC suite is negotiated with encrypt-then-MAC", "RFC 7366 §3", SHOULD, "tls"),
    _r("TLS-TRUNC-01", "The truncated_hmac extension is never accepted", "RFC 9325 §4.6; RFC 6066 §7", MUST,
       "tls"),
    _r("TLS-SNI-01", "A hello without server_name (SNI) completes, with a certificate valid for the host",
       "RFC 9325 §3.7 (SNI use is local policy); RFC 6066 §3", SHOULD, "tls"),
    _r("TLS-HEARTBLEED-01", "No Heartbleed: an over-long heartbeat request is never answered with memory",
       "CVE-2014-0160; RFC 6520 §4", MUST, "tls"),
]
# issue 16, branch tls2: known implementation flaws probed with crafted messages
_TLS_POSTURE += [
    _r("TLS-CCS-01", "No CCS injection: a ChangeCipherSpec before the key exchange is refused",
       "CVE-2014-0224; RFC 5246 §7.1", MUST, "tls"),
    _r("TLS-ROBOT-01", "No Bleichenbacher oracle (ROBOT): malformed and well-formed RSA premaster blocks are "
       "answered alike", "RFC 5246 §7.4.7.1; ROBOT (Böck, Somorovsky, Young 2018; CVE-2017-13099)", MUST, "tls"),
    _r("TLS-0RTT-01", "TLS 1.3 0-RTT is not offered (session tickets carry no early_data); resumption reported",
       "RFC 8446 Appendix E.5 (no 0-RTT without a profile defining it), §4.6.1, §8", MUST, "tls"),
]
# issue 16, branch tls-reneg: renegotiation as a DoS lever
_TLS_POSTURE += [
    _r("TLS-RENEG-02", "Client-initiated renegotiation is refused (TLS 1.2 and older; TLS 1.3 has none)",
       "CVE-2011-1473 (client-initiated renegotiation DoS); RFC 5746 §5 (servers may refuse to renegotiate "
       "at all)", SHOULD, "tls"),
]

_CERT = [
    _r("CERT-CHAIN-01", "The server certificate chains to the system store or the target's trust anchors",
       "RFC 8314 §4.4; RFC 5280 §6; NIST SP 800-52r2 §3.2", MUST, "tls"),
    _r("CERT-NAME-01", "The server certificate names the configured host (DNS-ID in SAN)",
       "RFC 7817 §3; RFC 9525 §6; RFC 8314 §4.4", MUST, "tls"),
    _r("CERT-EXPIRY-01", "The server certificate is within its validity period",
       "RFC 5280 §4.1.2.5, §6.1.3; NIST SP 800-52r2 §3.2", MUST, "tls"),
    _r("CERT-EXPIRY-02", "The server certificate does not expire within the profile's warning period",
       "operational: NIST SP 1800-16 (certificate management); policy cert_expiry_warning_days", SHOULD, "tls"),
    _r("CERT-KEY-01", "Certificate keys are RSA >= 2048 bit or EC >= 256 bit",
       "NIST SP 800-52r2 §3.2; NIST SP 800-57 Pt 1 Tab. 2; BSI TR-02102-2 3.6.1", MUST, "tls"),
    _r("CERT-SIG-01", "No certificate in the chain is signed with SHA-1 or MD5",
       "RFC 9155; NIST SP 800-131A r2 §3; BSI TR-03116-4 6.1.4", MUST, "tls"),
]

_AUTH = [
    _r("STARTTLS-RESET-01", "After STARTTLS the server forgets the pre-TLS session: EHLO is required again "
       "and no TLS-dependent pre-TLS state survives",
       "RFC 3207 §4.2; RFC 9051 §6.2.1; RFC 2595 §3.1, §4", MUST, "auth"),
    _r("STARTTLS-INJECT-01", "A command pipelined behind STARTTLS is never executed inside the TLS session",
       "RFC 3207 §4.2; RFC 9051 §6.2.1; CVE-2011-0411; Poddebniak et al., USENIX Security 2021", MUST, "auth"),
    _r("STARTTLS-INJECT-02", "The server sends nothing after its STARTTLS go-ahead before the TLS handshake",
       "RFC 3207 §4; RFC 9051 §6.2.1; RFC 2595 §4; Poddebniak et al., USENIX Security 2021 (response injection)", MUST, "auth"),
    _r("STARTTLS-PREAUTH-01", "No IMAP port greets with PREAUTH and implicit-TLS ports never fall back to plaintext",
       "RFC 8314 §3.3, §4.1; RFC 9051 §7.1.4; Poddebniak et al., USENIX Security 2021", MUST, "auth"),
    _r("AUTH-WRONG-01", "A wrong password is refused (SMTP 535 5.7.8; IMAP NO [AUTHENTICATIONFAILED])",
       "RFC 4954 §6; RFC 5530 §3; RFC 9051 §6.2.3", MUST, "auth"),
    _r("AUTH-ANON-01", "No anonymous login (SASL ANONYMOUS) is accepted on submission or IMAP",
       "RFC 6409 §4.3; RFC 4505 §4 (v); BSI TR-03108 v2.0 4.1.1 (TR-03108-01-M)", MUST, "auth"),
    _r("AUTH-MECH-01", "Every advertised authentication mechanism works with valid credentials over TLS",
       "RFC 4954 §3, §4; RFC 9051 §6.2.2; RFC 8314 §4.1", MUST, "auth"),
    _r("RELAY-OPEN-01", "Mail to a foreign domain is refused without authentication (no open relay)",
       "RFC 5321 §3.6.2, §7.1; RFC 2505 §2 (BCP 30)", MUST, "auth"),
    _r("RELAY-FORMS-01", "Classic relay address forms (percent hack, bang path, source route, quoted local part) "
       "are not relayed", "RFC 5321 §3.6.1, §4.1.1.3; RFC 2505 §2.2 (v)", MUST, "auth"),
    _r("RELAY-SUBMIT-01", "Submission refuses mail from unauthenticated clients (530 5.7.0)",
       "RFC 6409 §4.3; RFC 4954 §6; NHS DCB1596 (nhsmail-like profile, NHS-07)", MUST, "auth"),
    _r("RELAY-SPOOF-01", "An authenticated user cannot send as another user's address",
       "RFC 6409 §6.1 (v); NHS-07 (From must equal the account); BSI TR-03182 4.1.7", SHOULD, "auth",
       sensitive_data=MUST),
    _r("ENUM-VRFY-01", "VRFY and EXPN are disabled or non-committal (252) and never confirm a user",
       "RFC 5321 §7.3, §3.5.3", MUST, "auth"),
    _r("ENUM-AUTH-01", "SMTP AUTH and IMAP LOGIN answer an unknown user and a known user's wrong password alike",
       "RFC 4954 §4, §6; NIST SP 800-63B §5.2.2", MUST, "auth"),
    _r("ENUM-TIMING-01", "Unknown-user and wrong-password logins take the same time (bounded statistical test)",
       "RFC 4954 §4, §6; NIST SP 800-63B §5.2.2", MUST, "auth"),
    _r("ENUM-RCPT-01", "One MX session cannot probe unknown recipients without limit",
       "RFC 5321 §7.3, §7.8", SHOULD, "auth"),
    _r("SMUGGLE-01", "Only <CRLF>.<CRLF> ends DATA: bare LF/CR end-of-data forms are not honoured (SMTP smuggling)",
       "RFC 5321 §4.1.1.4, §2.3.8; CVE-2023-51764/51765/51766 (SEC Consult, Dec 2023)", MUST, "auth"),
]
_LOCKOUT = [
    _r("LOCK-THRESHOLD-01", "After the policy's number of consecutive failed logins the account is locked or "
       "throttled, against the correct password too", "NIST SP 800-63B §5.2.2 (at most 100 consecutive failures); "
       "RFC 4954 §4 (v)", MUST, "lockout"),
    _r("LOCK-CROSS-01", "One failure count and one lock per account across protocols, ports and nodes "
       "(SMTP AUTH and IMAP)", "NIST SP 800-63B §5.2.2 (the limit is per account)", MUST, "lockout"),
    _r("LOCK-RECOVER-01", "A lock lifts by itself within the policy's lock duration",
       "NIST SP 800-63B §5.2.2 (rate limiting, not a standing denial of service); NHS support "
       "'Account Lockout Guide' (stale device credentials lock users out)", MUST, "lockout"),
    _r("LOCK-RESET-01", "A successful login resets the failure count",
       "NIST SP 800-63B §5.2.2 (consecutive failed attempts)", MUST, "lockout"),
    _r("LOCK-ORACLE-01", "After the same failures an existing and a non-existent account answer alike "
       "(reply code, enhanced code, RFC 5530 response code, timing)",
       "RFC 4954 §6; RFC 5530 §3; NIST SP 800-63B §5.2.2", MUST, "lockout"),
    _r("LOCK-TEMPFAIL-01", "While locked, the correct password gets success or a temporary answer "
       "(454 4.7.0, NO [UNAVAILABLE]), never 535 or [AUTHENTICATIONFAILED]",
       "RFC 4954 §6 (454 4.7.0 vs 535 5.7.8); RFC 5530 §3 (UNAVAILABLE vs AUTHENTICATIONFAILED)", MUST, "lockout"),
    _r("LOCK-OUTAGE-01", "Logins refused while the auth backend is down are not counted: after recovery the "
       "correct password works at once", "RFC 4954 §6 (454 4.7.0 is temporary); RFC 5530 §3 (UNAVAILABLE); "
       "NIST SP 800-63B §5.2.2 (only failed authentication attempts count)", MUST, "lockout"),
    _r("LOCK-BURST-01", "A burst of concurrent correct-password logins (clients reconnecting after an outage) "
       "all succeed and lock nothing", "NIST SP 800-63B §5.2.2 (only failed attempts count); RFC 4954 §6",
       MUST, "lockout"),
    _r("LOCK-STALE-01", "The same wrong password retried counts as one failure",
       "industry practice: Dovecot auth penalty (repeats of the last ten user+password pairs), Microsoft Entra "
       "smart lockout; NHS support 'Account Lockout Guide' (stale stored credentials)", SHOULD, "lockout"),
    _r("LOCK-COLLATERAL-01", "Locking one account does not lock another",
       "NIST SP 800-63B §5.2.2 (the limit is per subscriber account)", MUST, "lockout"),
]
_FAILOVER = [
    _r("FAIL-REDUNDANT-01", "Every service (and the mail domain's MX set) has at least two nodes",
       "NHS DCB1596 (resilience); BSI IT-Grundschutz APP.5.3 / SYS.1.1 (redundancy); RFC 5321 §5.1 (MX fallback)",
       SHOULD, "failover", sensitive_data=MUST),
    _r("FAIL-PARITY-01", "Every node of a service has the same security posture (TLS versions and suites, "
       "certificate, STARTTLS and AUTH behaviour): no weaker backup node",
       "RFC 8996; RFC 9325 §3.1.1; RFC 3207 §4; RFC 8314 §4.1 (apply to every MX host: senders use any)",
       MUST, "failover"),
    _r("FAIL-TEMP-01", "While a node's delivery backend is down, mail gets a 4xx (or a 250 it then honours), "
       "never a 5xx", "RFC 5321 §4.2.1, §4.2.5 (451/452/421 are transient), §6.1", MUST, "failover"),
    _r("FAIL-AUTHDOWN-01", "While the authentication backend is down, logins get a temporary answer "
       "(SMTP 454 4.7.0, IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]), never 535, [AUTHENTICATIONFAILED], "
       "-ERR [AUTH] or a bare -ERR", "RFC 4954 §6 (454 4.7.0 vs 535 5.7.8); RFC 5530 §3 (UNAVAILABLE vs "
       "AUTHENTICATIONFAILED); RFC 3206 §4 (SYS/TEMP)", MUST, "failover"),
    _r("FAIL-DIR-01", "While the user directory is down, a valid recipient gets a 4xx (451 4.3.0), never "
       "550 5.1.1", "RFC 5321 §4.2.5, §3.6.2; RFC 3463 §3.4 (4.3.0 vs 5.1.1)", MUST, "failover"),
    _r("FAIL-NOLOSS-01", "Mail accepted (250) before, during and after a node outage is delivered exactly once "
       "within the recovery-time objective", "RFC 5321 §6.1 (a 250 makes the server responsible), §4.5.4.1",
       MUST, "failover"),
    _r("FAIL-DATA-01", "The final reply to DATA comes within the policy's budget even while the backend stalls",
       "RFC 5321 §4.5.3.2.6 (client DATA timeout), §6.1 (late replies cause duplicates)", MUST, "failover"),
    _r("FAIL-RECOVER-01", "After `up`, a node answers again within the recovery-time objective, and a burst "
       "of concurrent correct logins (clients reconnecting, on submission, IMAP and POP3) all succeed without "
       "locking the account",
       "operator's recovery-time objective (policy); NIST SP 800-63B §5.2.2 (only failed attempts count); "
       "RFC 4954 §6", MUST, "failover"),
    _r("FAIL-SHUTDOWN-01", "A node going down answers open sessions 421 (SMTP), BYE (IMAP) or -ERR (POP3), "
       "not a reset", "RFC 5321 §3.8, §4.2.2 (421 closing transmission channel); RFC 9051 §7.1.5 (BYE); "
       "RFC 1939 §3 and RFC 3206 §4 (POP3 has no 421: -ERR [SYS/TEMP], try later)", MUST, "failover"),
]

# The mail domain's DNS (opt-in by naming `[target] domain`); sections confirmed against the RFC texts.
_DNS = [
    _r("DNS-MX-01", "The mail domain's MX set is usable: every MX host has an A/AAAA address, is no alias "
       "(CNAME) and no IP literal; a null MX stands alone", "RFC 5321 §5.1; RFC 2181 §10.3; RFC 7505 §3",
       MUST, "dns"),
    _r("DNS-SPF-01", "Exactly one SPF record, valid, with at most 10 DNS-querying terms and at most 2 void "
       "lookups counted through include and redirect", "RFC 7208 §4.5, §4.6, §4.6.4; CISA BOD 18-01",
       MUST, "dns"),
    _r("DNS-SPF-02", "The SPF record ends in a hard fail (-all): unauthorised senders are refused",
       "RFC 7208 §5.1, §8.4; sensitive-data profile (BSI TR-03182 4.1.1 also accepts ~all)", SHOULD, "dns",
       sensitive_data=MUST),
    _r("DNS-DMARC-01", "One DMARC record at _dmarc: v=DMARC1 first, p= present; external report "
       "destinations have authorised the reports", "RFC 7489 §6.3, §6.4, §6.6.3, §7.1", MUST, "dns"),
    _r("DNS-DMARC-02", "The DMARC policy is enforced: p=reject (p=quarantine accepted as the SHOULD-level "
       "choice)", "CISA BOD 18-01 (p=reject); RFC 7489 §6.3", SHOULD, "dns", sensitive_data=MUST),
    _r("DNS-TLSRPT-01", "One TLS-RPT record at _smtp._tls: v=TLSRPTv1 with mailto: or https: report "
       "destinations", "RFC 8460 §3; BSI TR-03108 v2.0 4.1.10 (TR-03108-10-M)", SHOULD, "dns",
       sensitive_data=MUST),
    _r("DNS-TLSRPT-02", "TLS-RPT reports go to mailto: addresses only (no https: destination)",
       "BSI TR-03108 v2.0 4.1.10 (TR-03108-10-M)", MUST, "dns", profiles=("bsi",)),
    _r("DNS-DKIM-01", "Every named DKIM selector publishes one usable key: RSA of at least 1024 bits or "
       "Ed25519, not revoked", "RFC 8301 §3.2; RFC 8463 §3, §4; RFC 6376 §3.6.1", MUST, "dns"),
    _r("DNS-DKIM-02", "DKIM keys are RSA of at least 2048 bits (or Ed25519) and not in test mode (t=y)",
       "RFC 8301 §3.2 (2048 SHOULD); RFC 6376 §3.6.1 (t=y)", SHOULD, "dns"),
    _r("DNS-SRV-01", "Mail clients are configured for implicit TLS: _submissions._tcp and _imaps._tcp SRV "
       "point at implicit-TLS endpoints; _submission._tcp and _imap._tcp are absent or '.'",
       "RFC 6186 §3.1, §3.2; RFC 8314 §5.1; RFC 2782 (target '.'); BSI TR-03108 v2.0 4.1.1 (TR-03108-01-M)",
       SHOULD, "dns", sensitive_data=MUST),
    _r("DNS-DNSSEC-01", "The mail domain's zone is DNSSEC-signed: its MX and policy records validate from a "
       "trust anchor (checked by the suite, not taken from a resolver's AD bit)",
       "BSI TR-03108 v2.0 4.1.5 (TR-03108-05-M); RFC 4035 §5; RFC 7672 §2.2.1", SHOULD, "dns",
       sensitive_data=MUST),
    _r("DNS-DNSSEC-02", "Every MX host's zone is DNSSEC-signed: its addresses and TLSA records validate from "
       "a trust anchor", "BSI TR-03108 v2.0 4.1.5 (TR-03108-05-M); RFC 4035 §5; RFC 7672 §2.2.1", SHOULD, "dns",
       sensitive_data=MUST),
    _r("DNS-DANE-01", "Every MX host publishes _25._tcp TLSA records, and they are DNSSEC-secure",
       "BSI TR-03108 v2.0 4.1.5 (TR-03108-05-M); RFC 7672 §2.2", SHOULD, "dns", sensitive_data=MUST),
    _r("DNS-DANE-02", "Every MX host's TLSA set matches the certificate it really serves: DANE-EE (3) the "
       "leaf, DANE-TA (2) a certificate the server sends", "RFC 7672 §3.1.1, §3.1.2; RFC 6698 §2.1", MUST,
       "dns"),
    _r("DNS-DANE-03", "No PKIX-TA (0) or PKIX-EE (1) TLSA records: SMTP senders cannot use them",
       "RFC 7672 §3.1.3", SHOULD, "dns"),
    _r("DNS-DANE-04", "Every MX host's TLSA set is ready for a key rollover: a DANE-TA (2 x x) record beside "
       "the DANE-EE one, or a second DANE-EE record for the next key", "RFC 7671 §8.1, §8.4; BSI TR-03108 v2.0 4.1.5 (remarks: 3 1 1 plus 2 x x)", SHOULD, "dns"),
    _r("DNS-MTASTS-01", "One STS record at _mta-sts (v=STSv1; id=) and a well-formed policy (version, mode, mx, "
       "max_age <= 31557600) served over HTTPS by mta-sts.<domain> at /.well-known/mta-sts.txt: certificate valid "
       "for that name, 200 without redirect, text/plain, at most 64 KiB",
       "RFC 8461 §3.1, §3.2, §3.3; BSI TR-03108 v2.0 4.1.7 (TR-03108-07-R)",
       SHOULD, "dns", sensitive_data=MUST),
    _r("DNS-MTASTS-02", "The MTA-STS policy names every MX host (exactly or by a one-label wildcard) and every MX "
       "host serves a certificate valid for its name", "RFC 8461 §4.1, §4.2", MUST, "dns"),
    _r("DNS-MTASTS-03", "The MTA-STS policy is in mode enforce (testing only reports failures)",
       "RFC 8461 §5", SHOULD, "dns", sensitive_data=MUST),
]

# The gateway as a sender, judged at the suite's own lab MX hosts and zone ([outbound] in the target)
_OUTBOUND = [
    _r("OUT-STARTTLS-01", "The gateway uses STARTTLS when the receiving MX offers it",
       "RFC 7435 §3; BSI TR-03108 v2.0 4.1.4 (TR-03108-04-M)", MUST, "outbound"),
    _r("OUT-HELLO-01", "The gateway's ClientHello offers nothing below TLS 1.2 and no cipher suite of a broken "
       "class", "RFC 8996 §2-§5; RFC 9325 §3.1.1, §4.1; BSI TR-03108 v2.0 4.1.4 (TR-03108-04-M)", MUST, "outbound"),
    _r("OUT-SNI-01", "The gateway sends SNI naming the MX host when it starts TLS",
       "RFC 7672 §8.1; RFC 6066 §3", SHOULD, "outbound", sensitive_data=MUST),
    _r("OUT-DANE-01", "With a DNSSEC-valid TLSA set the gateway delivers only over TLS to a matching "
       "certificate: nothing to an MX whose certificate does not match, and the mail to one that does (under "
       "DANE-EE an expired one too: its dates are not checked)",
       "RFC 7672 §2.2, §3.1.1; RFC 7671 §5.1; BSI TR-03108 v2.0 4.1.6 (TR-03108-06-M)", SHOULD, "outbound",
       sensitive_data=MUST),
    _r("OUT-DANE-02", "With TLSA records published the gateway sends nothing to an MX that does not offer "
       "STARTTLS, refuses it (454) or fails the TLS handshake after it, plaintext least of all",
       "RFC 7672 §2.2; BSI TR-03108 v2.0 4.1.6 (TR-03108-06-M)", SHOULD, "outbound", sensitive_data=MUST),
    _r("OUT-DNSSEC-01", "The gateway validates DNSSEC: MX and TLSA answers whose signatures fail are not used",
       "RFC 4035 §5; RFC 7672 §2.2, §2.2.1; BSI TR-03108 v2.0 4.1.5 (TR-03108-05-M)", SHOULD, "outbound",
       sensitive_data=MUST),
    _r("OUT-OPPORTUNISTIC-01", "Without DANE or MTA-STS, an unverifiable certificate still gets the mail over "
       "TLS, never in plaintext", "RFC 7435 §3; BSI TR-03108 v2.0 4.1.4 (TR-03108-04-M)", MUST, "outbound"),
    _r("OUT-RETRY-01", "After a 4xx the gateway retries and delivers the message exactly once",
       "RFC 5321 §4.5.4.1 (Sending Strategy), §4.2.5, §6.1", MUST, "outbound"),
    _r("OUT-BACKUP-01", "When the most preferred MX host is down the gateway delivers to the next one",
       "RFC 5321 §5.1", MUST, "outbound"),
    _r("OUT-DKIM-01", "Outbound mail carries a valid DKIM signature of the sender's domain: rsa-sha256 with a "
       "key of 2048 bits or more, or ed25519-sha256, without l=",
       "RFC 6376 §3.5, §8.2; RFC 8301 §3.1, §3.2; RFC 8463 §3", SHOULD, "outbound", sensitive_data=MUST),
    _r("OUT-STS-01", "Under an MTA-STS policy in enforce mode the gateway delivers only to MX hosts the policy "
       "names, over TLS with a certificate valid for the host: nothing to others, the mail to one that is",
       "RFC 8461 §4.1, §4.2, §5; BSI TR-03108 v2.0 4.1.8 (TR-03108-08-M)", SHOULD, "outbound",
       sensitive_data=MUST),
    _r("OUT-STS-02", "Under an MTA-STS policy in testing mode the gateway still delivers when validation fails",
       "RFC 8461 §5", MUST, "outbound"),
]

# issue 15: TLS-RPT sending, judged where the operator gives a hook that makes the gateway report now
_OUTBOUND.append(
    _r("OUT-TLSRPT-01", "The gateway sends TLS-RPT reports to the domains that publish a reporting policy: a gzip'd "
       "JSON report by mail that names the policy domain and counts the failed sessions",
       "RFC 8460 §3, §5.3", SHOULD, "outbound"))

# issue 15, BSI profile only: TR-03108 deviates from RFC 8461 §3.3 (which lets a wildcard DNS-ID name the policy host)
_OUTBOUND.append(
    _r("OUT-STS-03", "The gateway refuses an MTA-STS policy whose policy host serves a wildcard certificate",
       "BSI TR-03108 v2.0 4.1.8 (TR-03108-08-R); RFC 8461 §3.3", SHOULD, "outbound", profiles=("bsi",)))

# OAuth 2.0 logins (issue 17): bearer tokens travel like passwords, and their refusals must not leak users.
_OAUTH = [
    _r("AUTH-OAUTH-01", "OAuth mechanisms (OAUTHBEARER, XOAUTH2) are offered only inside TLS",
       "RFC 6750 §5.3; RFC 7628 §3.1", MUST, "auth"),
    _r("AUTH-OAUTH-02", "A bearer token nobody issued is refused with the RFC 7628 error (status, scope), alike "
       "for known and unknown users", "RFC 7628 §3.2.2, §3.2.3; RFC 6750 §3.1", MUST, "auth"),
    _r("AUTH-BASIC-01", "Where basic authentication is retired, a correct password is refused over PLAIN, LOGIN "
       "and the protocol's own login on every client port", "target policy basic_auth = \"forbidden\" "
       "(NHSmail retired basic authentication for IMAP and POP in May 2023); RFC 6750 §5.3", MUST, "auth"),
]

CATALOGUE: dict[str, Requirement] = {
    r.id: r for r in (*_STARTTLS, *_TLS, *_TLS_POSTURE, *_CERT, *_AUTH, *_OAUTH, *_LOCKOUT, *_FAILOVER, *_DNS,
                      *_OUTBOUND)
}


def get(requirement_id: str) -> Requirement:
    """The catalogue entry for an ID; KeyError names the unknown ID."""
    try:
        return CATALOGUE[requirement_id]
    except KeyError:
        raise KeyError(f"unknown requirement ID {requirement_id!r}") from None


def as_json(profile: str | None = None) -> str:
    reqs = [r for r in CATALOGUE.values() if profile is None or r.level_in(profile)]
    return json.dumps([r.as_dict(profile) for r in reqs], indent=2)


def as_table(profile: str | None = None, width: int = 100) -> str:
    """The catalogue as text at most `width` columns wide (where the words allow): the title wrapped
    beside ID, level and family, the source indented under it."""
    rows = [(r.id, str(r.level_in(profile) if profile else r.level), r.family, r.title, r.source)
            for r in CATALOGUE.values() if profile is None or r.level_in(profile)]
    head = ("ID", "LEVEL", "FAMILY")
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(3)]
    indent = sum(widths) + 2 * len(widths)
    text_width = max(width - indent, MIN_TEXT_WIDTH)
    lines = [_cells(head, widths) + "TITLE / SOURCE"]
    for *cells, title, source in rows:
        text = _wrap(title, text_width) + _wrap(source, text_width, indent="  ")
        lines.append(_cells(cells, widths) + text[0])
        lines.extend(" " * indent + line for line in text[1:])
    return "\n".join(lines)


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    # Section numbers and document IDs (TR-03108-03-M, §3.5.3) stay whole: break at spaces only.
    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=False, break_long_words=False)


def _cells(cells: Sequence[str], widths: list[int]) -> str:
    return "".join(cell.ljust(w + 2) for cell, w in zip(cells, widths, strict=True))
