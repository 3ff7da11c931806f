"""The configurations of the real-server tier: the good one, and the good one with exactly one weakness.

A configuration is data: ``tests/real/servers.py`` turns its switches into values for the templates in
``fixtures/postfix`` and ``fixtures/dovecot`` (they share one template, so a weak configuration differs
from the good one only where its switch says).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Dovecot's quota-status (a Postfix policy service) with a quota that counts messages; {socket} is filled in.
QUOTA_STATUS = """mail_plugins = $mail_plugins quota
plugin {{
  quota = count:User quota
  quota_vsizes = yes
  quota_status_success = DUNNO
  quota_status_nouser = DUNNO
  quota_status_overquota = "552 5.2.2 Mailbox is full"
}}
service quota-status {{
  executable = quota-status -p postfix
  unix_listener {socket} {{
    mode = 0666
  }}
  client_limit = 1
}}"""
# POP3 alone with plaintext logins before STLS: Dovecot's settings filtered by protocol.
POP3_CLEARTEXT = """protocol pop3 {
  ssl = yes
  disable_plaintext_auth = no
}"""
# Dovecot's oauth2 passdb for OAUTHBEARER and XOAUTH2 only ({args}: the file below), and that file: every token
# is posted to a loopback RFC 7662 introspection endpoint ({url}); active tokens name their user in "email".
OAUTH2_PASSDB = """passdb {{
  driver = oauth2
  mechanisms = oauthbearer xoauth2
  args = {args}
}}"""
# Users whose password is retired (basic authentication off for them alone): found here, refused (deny).
RETIRED_PASSWORDS_PASSDB = """passdb {{
  driver = passwd-file
  args = {file}
  deny = yes
  mechanisms = plain login
}}
"""
OAUTH2_ARGS = """introspection_mode = post
introspection_url = {url}
username_attribute = email
active_attribute = active
active_value = true
timeout_msecs = 5000
"""
# Forward-secret AEAD suites only, for TLS 1.2 (TLS 1.3 suites are all AEAD with (EC)DHE).
STRONG_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
# Dovecot without its login throttling: no delay before a failure reply, and an anvil socket nobody may
# open, so the auth process runs without its per-address penalty counters.
NO_AUTH_THROTTLE = """auth_failure_delay = 0
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}"""
# The good list plus anonymous DH with AES-GCM: forward-secret AEAD, yet no server authentication, so
# only the broken-class check should object. OpenSSL 3 offers anonymous suites at SECLEVEL=0 only.
ANONYMOUS_CIPHERS = f"{STRONG_CIPHERS}:aNULL+AESGCM:@SECLEVEL=0"
# Everything OpenSSL 3 still has except anonymous and NULL suites, at the level that allows TLS 1.0/1.1.
LEGACY_CIPHERS = "ALL:!aNULL:!eNULL:@SECLEVEL=0"


@dataclass(frozen=True)
class Config:
    """One configuration: the good one, or the good one with exactly one weakness switched on."""

    name: str
    weakness: str = ""                    # operator-facing sentence; empty for the good configuration
    legacy_tls: bool = False              # TLS 1.0/1.1 at SECLEVEL=0, CBC and static-RSA suites
    anonymous_suites: bool = False        # anonymous (DH_anon AES-GCM) suites besides the strong ones
    auth_before_tls: bool = False         # submission offers AUTH before STARTTLS
    imap_cleartext_login: bool = False    # Dovecot accepts LOGIN before STARTTLS
    pop3_cleartext_login: bool = False    # Dovecot's POP3 accepts USER/PASS and AUTH before STLS
    open_relay: bool = False              # loopback clients may relay to any domain on the MX
    cert: str = "valid"                   # valid | expired | wrong-name
    data_waits_for_policy: bool = False   # end of DATA waits for Dovecot's quota-status (20 s timeout)
    bounce_on_first_failure: bool = False  # maximal_queue_lifetime = 0: one failed delivery bounces
    directory: str = "files"              # files (passwd-file, texthash) | pgsql (PostgreSQL, may go down)


GOOD = Config("good")
CONFIGS: dict[str, Config] = {c.name: c for c in (
    GOOD,
    replace(GOOD, name="weak-tls", legacy_tls=True,
            weakness="TLS 1.0 and 1.1 enabled at SECLEVEL=0, with CBC and static-RSA suites"),
    replace(GOOD, name="anon-tls", anonymous_suites=True,
            weakness="anonymous (unauthenticated) DH suites accepted besides the strong ones"),
    replace(GOOD, name="auth-before-tls", auth_before_tls=True,
            weakness="submission offers AUTH before STARTTLS"),
    replace(GOOD, name="imap-cleartext", imap_cleartext_login=True,
            weakness="Dovecot accepts IMAP LOGIN before STARTTLS"),
    replace(GOOD, name="pop3-cleartext", pop3_cleartext_login=True,
            weakness="Dovecot's POP3 accepts USER/PASS and AUTH PLAIN before STLS (disable_plaintext_auth = no)"),
    replace(GOOD, name="open-relay", open_relay=True,
            weakness="the MX relays for loopback clients to any domain"),
    replace(GOOD, name="expired-cert", cert="expired",
            weakness="the certificate expired yesterday"),
    replace(GOOD, name="wrong-name-cert", cert="wrong-name",
            weakness="the certificate names another host"),
)}

# Weaknesses that only an outage shows (every passive check passes on them): the active failover checks
# find them in tests/real/test_real_failover.py. Not in CONFIGS, whose verdict table runs without outages.
OUTAGE_CONFIGS: dict[str, Config] = {c.name: c for c in (
    replace(GOOD, name="data-waits-for-policy", data_waits_for_policy=True,
            weakness="the end of DATA waits for Dovecot's quota-status policy service (timeout 20 s): a "
                     "stalled Dovecot delays the reply to DATA past the sender's patience"),
    replace(GOOD, name="bounce-on-first-failure", bounce_on_first_failure=True,
            weakness="maximal_queue_lifetime = 0: mail accepted while delivery is down is bounced after one "
                     "try instead of queued, so a 250 is followed by loss"),
)}

# The good configuration with its users in a private PostgreSQL (tests/real/directory_db.py) instead of
# files, so the user directory can have a temporary outage (tests/real/test_real_directory.py). Not a
# weakness, so not in CONFIGS (whose exact verdict table is in test_real_verdicts.py).
SQL_DIRECTORY = replace(GOOD, name="sql-directory", directory="pgsql")

__all__ = [
    "ANONYMOUS_CIPHERS",
    "CONFIGS",
    "GOOD",
    "LEGACY_CIPHERS",
    "NO_AUTH_THROTTLE",
    "OAUTH2_ARGS",
    "OAUTH2_PASSDB",
    "OUTAGE_CONFIGS",
    "POP3_CLEARTEXT",
    "QUOTA_STATUS",
    "RETIRED_PASSWORDS_PASSDB",
    "SQL_DIRECTORY",
    "STRONG_CIPHERS",
    "Config",
]
