"""The templates of the real-server tier render completely for every configuration, and each weak
configuration differs from the good one only in the settings its weakness names. No server is started:
these run wherever the tier runs, and the rendering ones also where Postfix and Dovecot are missing."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from tests.real.configs import SQL_DIRECTORY
from tests.real.servers import CONFIGS, FIXTURES, GOOD, OUTAGE_CONFIGS, Config, MailServers, render

pytestmark = pytest.mark.real

TEMPLATES = ("postfix/main.cf.in", "postfix/master.cf.in", "dovecot/dovecot.conf.in")

# configuration -> the setting names (left of "=") whose lines may differ from the good configuration's
DIFFERS_IN = {
    "weak-tls": {"smtpd_tls_protocols", "smtpd_tls_mandatory_protocols", "tls_high_cipherlist",
                 "ssl_min_protocol", "ssl_cipher_list"},
    "anon-tls": {"tls_high_cipherlist", "ssl_cipher_list"},
    "auth-before-tls": {"-o smtpd_tls_security_level", "-o smtpd_tls_auth_only"},
    "imap-cleartext": {"ssl", "disable_plaintext_auth"},
    "pop3-cleartext": {"protocol pop3 {", "ssl", "disable_plaintext_auth", "}"},  # a block for POP3 alone
    "open-relay": {"mynetworks", "smtpd_relay_restrictions"},
    "expired-cert": set(),       # same files, another certificate
    "wrong-name-cert": set(),
    # outage weaknesses (OUTAGE_CONFIGS) and the SQL directory (not a weakness: another user store)
    "data-waits-for-policy": {"smtpd_end_of_data_restrictions", "smtpd_policy_service_timeout", "quota-status block"},
    "bounce-on-first-failure": {"maximal_queue_lifetime", "bounce_queue_lifetime"},
    "sql-directory": {"virtual_mailbox_maps", "driver", "args"},
}
EVERY = {**CONFIGS, **OUTAGE_CONFIGS, SQL_DIRECTORY.name: SQL_DIRECTORY}


def _rendered(config: Config, workdir: Path) -> dict[str, str]:
    servers = MailServers(config, workdir)
    servers.ports = {"mx": 2525, "submission": 2587, "submissions": 2465, "imap": 2143, "imaps": 2993,
                     "pop3": 2110, "pop3s": 2995}
    values = servers._values(8, 8)
    values.update(config="x")  # the name shows in log tags; not a setting that differs
    rendered = {t: render(FIXTURES / t, values) for t in TEMPLATES}
    if values["quota_status_block"]:  # one multi-line block: compared as one setting
        rendered = {t: text.replace(values["quota_status_block"], "quota-status block = on") for t, text in rendered.items()}
    return rendered


def _changed_settings(good: str, weak: str) -> set[str]:
    changed = set()
    for line in difflib.unified_diff(good.splitlines(), weak.splitlines(), lineterm="", n=0):
        if line[:1] in "+-" and not line.startswith(("+++", "---")):
            changed.add(line[1:].split("=", 1)[0].strip())
    return changed - {""}


def test_every_configuration_has_a_row() -> None:
    assert set(DIFFERS_IN) | {"good"} == set(EVERY)


@pytest.mark.parametrize("name", list(EVERY))
def test_templates_render_completely(name: str, tmp_path: Path) -> None:
    for template, text in _rendered(EVERY[name], tmp_path).items():
        assert not re.search(r"\{\{|\}\}", text), f"{template}: unfilled placeholder"


@pytest.mark.parametrize("name", [n for n in EVERY if n != "good"])
def test_weak_configuration_differs_only_in_its_weakness(name: str, tmp_path: Path) -> None:
    good, weak = _rendered(GOOD, tmp_path), _rendered(EVERY[name], tmp_path)  # same paths in both
    changed = set().union(*(_changed_settings(good[t], weak[t]) for t in TEMPLATES))
    assert changed == DIFFERS_IN[name]


def test_unknown_placeholder_is_an_error_naming_the_file(tmp_path: Path) -> None:
    template = tmp_path / "t.in"
    template.write_text("a = {{known}}\nb = {{unknown}}\n")
    with pytest.raises(ValueError, match=r"t\.in: placeholder \{\{unknown\}\}"):
        render(template, {"known": "1"})
