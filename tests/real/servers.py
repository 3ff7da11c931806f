"""Private Postfix and Dovecot instances from Debian's packages, in a good and several weak configurations.

No pytest here: ``MailServers`` renders ``fixtures/postfix`` and ``fixtures/dovecot`` into a temporary
directory, makes a test CA and certificates, starts ``dovecot -c FILE`` and ``postfix -c DIR start`` on
free high ports of a loopback address, waits until every port answers, writes a ``target.toml`` and stops
both with their own stop commands. The system's instances (/etc/postfix, /etc/dovecot, ports 25, 143,
587, 993) are never read or touched.

Why 127.0.0.2 and not 127.0.0.1: Dovecot treats a connection whose remote address equals its local
address as "secured" (login-common/client-common.c: ``secured = ... || remote_ip == local_ip``) and then
allows LOGIN without TLS and hides LOGINDISABLED. Listening on 127.0.0.2 makes the client's source
address (127.0.0.1) differ, so Dovecot judges a plaintext client as what it is. It is still loopback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import grp
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.target import Target
from tests.certgen import Issued, issue
from tests.real.configs import (
    ANONYMOUS_CIPHERS,
    CONFIGS,
    GOOD,
    LEGACY_CIPHERS,
    NO_AUTH_THROTTLE,
    OAUTH2_ARGS,
    OAUTH2_PASSDB,
    OUTAGE_CONFIGS,
    POP3_CLEARTEXT,
    QUOTA_STATUS,
    RETIRED_PASSWORDS_PASSDB,
    STRONG_CIPHERS,
    Config,
)
from tests.real.directory_db import DirectoryDb, DirectoryError
from tests.real.processes import dovecot_pid_file, postfix_pid_file, process_alive, read_pid

# CONFIGS and GOOD are re-exported: the tier's tests take everything from this module.
__all__ = ["CONFIGS", "GOOD", "HOST", "LOOPBACK", "OUTAGE_CONFIGS", "Config", "MailServers", "RealTarget", "ServerError",
           "missing_binaries", "unavailable_reason", "write_fleet_target"]

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
LOOPBACK = "127.0.0.2"
DOMAIN = "example.test"
HOST = "mx1.example.test"
SERVICES = ("mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
BINARIES = ("postfix", "postconf", "dovecot", "doveadm")
START_TIMEOUT = 30.0   # seconds for both servers to answer on every port (a loaded CI box is slow)
STOP_TIMEOUT = 20.0
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)

class ServerError(RuntimeError):
    """A server did not start or stop; the message carries the command's output and the log's tail."""


@dataclass(frozen=True)
class Account:
    role: str
    username: str
    password: str = field(repr=False)


def unavailable_reason() -> str | None:
    """Why the real servers cannot run here (a skip reason), or None."""
    missing = missing_binaries()
    if missing:
        return (f"Postfix/Dovecot not installed (missing: {', '.join(missing)}); "
                "install them with `bash ci/install-real-servers.sh`")
    if os.geteuid() != 0:
        return "the real-server tier starts private Postfix and Dovecot instances, which needs root"
    return None


def missing_binaries() -> list[str]:
    """The server programs not on PATH (or in /usr/sbin, which a non-root PATH may lack)."""
    return [b for b in BINARIES if _which(b) is None]


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def free_port(address: str) -> int:
    return free_ports(address, 1)[0]


def free_ports(address: str, count: int) -> list[int]:
    """``count`` distinct ports the kernel just handed out on ``address`` (port 0, read back). Postfix and
    Dovecot cannot report a port they chose themselves, so this is as close to port 0 as they allow. Each
    socket stays bound until all are read back: one port at a time, the kernel may hand out a port it has
    just handed out and taken back (Dovecot: "duplicate listener")."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind((address, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def render(template: Path, values: dict[str, str]) -> str:
    """Fill ``{{name}}`` placeholders; an unknown or unfilled placeholder is an error naming the file."""
    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ValueError(f"{template}: placeholder {{{{{key}}}}} has no value")
        return values[key]

    return re.sub(r"\{\{\s*(\w+)\s*\}\}", fill, template.read_text(encoding="utf-8"))


def _write_issued(issued: Issued, cert_path: Path, key_path: Path, *extra: x509.Certificate) -> None:
    pem = issued.cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(pem + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in extra))
    key_path.write_bytes(issued.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    key_path.chmod(0o600)


class MailServers:
    """Postfix (MX, submission, submissions) and Dovecot (IMAP, IMAPS, LMTP, SASL) for one ``Config``.

    Use as a context manager, or ``start()``/``stop()``. ``ports`` maps service names to ports once
    started; ``write_target(path)`` describes the running instance as a target.toml."""

    def __init__(self, config: Config, workdir: Path | None = None, *, address: str = LOOPBACK,
                 auth_throttle: bool = True, host: str = HOST, accounts: dict[str, Account] | None = None,
                 introspection_url: str | None = None, tokens: dict[str, str] | None = None,
                 passwords_retired: tuple[str, ...] = ()) -> None:
        """``auth_throttle=False`` turns off Dovecot's login throttling: the 2 s delay before every failure
        reply and the per-client-address penalty (up to 15 s more). Every probe comes from 127.0.0.1, so
        a suite run's deliberate wrong passwords (30 per endpoint for the timing check alone) would
        otherwise take minutes. A rig setting for speed, not a weakness any check judges: the lockout
        tier (tests/real/test_real_lockout.py) keeps it on, because there it is the behaviour under test.

        ``host`` is the name in the banner and the certificate; ``accounts`` (another instance's) make a
        second node of the same service, with the same users and passwords as the first.

        ``introspection_url`` adds Dovecot's oauth2 passdb (OAUTHBEARER and XOAUTH2, tokens checked at that
        RFC 7662 endpoint); ``tokens`` (role -> token) go into the target as token files.
        ``passwords_retired`` (usernames, with ``introspection_url``): the password passdb skips them
        (``username_filter``), so they log in with a token only: basic authentication retired per user."""
        self.config = config
        self.address = address
        self.host = host
        self.auth_throttle = auth_throttle
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"mailconform-{config.name}-"))
        # Postfix and Dovecot processes run as postfix, dovecot, dovenull and mail: they must traverse it.
        self.workdir.chmod(0o755)
        self.ports: dict[str, int] = {}
        self.introspection_url = introspection_url
        self.tokens = dict(tokens or {})
        self.passwords_retired = passwords_retired
        self.accounts = accounts or {
            "test": Account("test", f"alice@{DOMAIN}", secrets.token_urlsafe(16)),
            "lockout": Account("lockout", f"locky@{DOMAIN}", secrets.token_urlsafe(16)),
        }
        # config.directory == "pgsql": the users live in a private PostgreSQL (tests/real/directory_db.py).
        self.directory = (DirectoryDb(self.workdir, {a.username: a.password for a in self.accounts.values()})
                          if config.directory == "pgsql" else None)
        self.ca_path = self.workdir / "ca.pem"
        self.ca: Issued | None = None   # the test CA, once written (the DNS rig issues its web host's certificate)
        self.postfix_dir = self.workdir / "postfix"
        self.dovecot_conf = self.workdir / "dovecot" / "dovecot.conf"
        self.postfix_log = self.workdir / "log" / "postfix.log"
        self.dovecot_log = self.workdir / "log" / "dovecot.log"
        self._postfix_started = False
        self._dovecot_started = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Render, start Dovecot then Postfix (it needs Dovecot's sockets), wait for every port.
        Raises ServerError with the servers' own output and log tails; stops what started first."""
        missing = missing_binaries()
        if missing:
            raise ServerError(f"not installed: {', '.join(missing)} (run ci/install-real-servers.sh)")
        try:
            self._prepare()
            if self.directory is not None:  # Dovecot's passdb and Postfix's maps query it from the start
                self.directory.create()
            # Marked started first: a start command that fails late may have left a daemon behind.
            self._dovecot_started = True
            self._run(["dovecot", "-c", str(self.dovecot_conf)], "starting Dovecot")
            self._postfix_started = True
            self._run(["postfix", "-c", str(self.postfix_dir), "start"], "starting Postfix")
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop both servers with their own stop commands, waiting for their master processes to go.
        Safe to call twice; removes the temporary directory it made."""
        errors = []
        if self._postfix_started:
            self._postfix_started = False
            errors += self._stop(["postfix", "-c", str(self.postfix_dir), "stop"],
                                 postfix_pid_file(self.workdir), "Postfix")
        if self._dovecot_started:
            self._dovecot_started = False
            errors += self._stop(["doveadm", "-c", str(self.dovecot_conf), "stop"],
                                 dovecot_pid_file(self.workdir), "Dovecot")
        if self.directory is not None:  # after Dovecot, whose auth workers hold connections to it
            try:
                self.directory.stop()
            except DirectoryError as exc:
                errors.append(str(exc))
        if errors:
            raise ServerError("; ".join(errors))
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop(self, argv: list[str], pid_file: Path, what: str) -> list[str]:
        pid = read_pid(pid_file)
        try:
            self._run(argv, f"stopping {what}", timeout=STOP_TIMEOUT)
        except ServerError as exc:
            if pid is not None and process_alive(pid):  # otherwise it was not running: nothing to stop
                return [str(exc)]
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid is not None and process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a process that is on its way out; bounded by the deadline
        if pid is not None and process_alive(pid):
            os.kill(pid, 9)  # our own master, by its PID: never by name
            return [f"{what} did not stop within {STOP_TIMEOUT:.0f} s; killed its master, PID {pid}"]
        return []

    def _run(self, argv: list[str], what: str, timeout: float = START_TIMEOUT) -> str:
        """Run a server's control command. Its output goes to a file, not a pipe: the daemon it starts
        inherits the descriptors, and a pipe would stay open (and ``run`` wait) for the daemon's life."""
        binary = _which(argv[0])
        if binary is None:
            raise ServerError(f"{what}: {argv[0]} is not installed")
        out = self.workdir / "log" / "commands.log"
        with out.open("a+", encoding="utf-8") as sink:
            start = sink.tell()
            try:
                result = subprocess.run([binary, *argv[1:]], stdin=subprocess.DEVNULL, stdout=sink,
                                        stderr=subprocess.STDOUT, timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                raise ServerError(f"{what}: {' '.join(argv)} did not return within {timeout:.0f} s\n"
                                  + self.log_tail()) from None
            sink.seek(start)
            output = sink.read().strip()
        if result.returncode != 0:
            raise ServerError(f"{what}: {' '.join(argv)} exited {result.returncode}: {output}\n{self.log_tail()}")
        return output

    def _wait_ready(self) -> None:
        """Poll every port until it accepts a connection, within one deadline (no fixed sleeps)."""
        deadline = time.monotonic() + START_TIMEOUT
        pending = dict(self.ports)
        while pending:
            for service, port in list(pending.items()):
                try:
                    with socket.create_connection((self.address, port), timeout=1.0):
                        del pending[service]
                except OSError:
                    pass
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ServerError(f"{self.config.name}: no answer within {START_TIMEOUT:.0f} s on "
                                  + ", ".join(f"{s} {self.address}:{p}" for s, p in pending.items())
                                  + "\n" + self.log_tail())
            time.sleep(0.05)  # between polls of a port that is not listening yet

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of both servers' logs, for error messages."""
        parts = []
        for path in (self.postfix_log, self.dovecot_log):
            try:
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(no log yet)"]
            parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts)

    # -- configuration -----------------------------------------------------------------------------

    def _prepare(self) -> None:
        for sub in ("postfix", "dovecot", "run", "state", "log", "spool", "data", "mail", "sockets"):
            (self.workdir / sub).mkdir(exist_ok=True)
        mail_user = pwd.getpwnam("mail")
        os.chown(self.workdir / "mail", mail_user.pw_uid, mail_user.pw_gid)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(self.workdir / "data", postfix_user.pw_uid, 0)  # the queue directory stays root's
        self.ports = dict(zip(SERVICES, free_ports(self.address, len(SERVICES)), strict=True))
        self._write_pki()
        self._write_accounts()
        values = self._values(mail_user.pw_uid, mail_user.pw_gid)
        if self.directory is not None:
            self.directory.write_postfix_table(self.postfix_dir / "mailboxes.pgsql.cf")
            self.directory.write_dovecot_sql(self.workdir / "dovecot" / "dovecot-sql.conf.ext",
                                             mail_user.pw_uid, mail_user.pw_gid, values["mail_root"])
        for name in ("main.cf", "master.cf"):
            (self.postfix_dir / name).write_text(render(FIXTURES / "postfix" / f"{name}.in", values))
        self.dovecot_conf.write_text(render(FIXTURES / "dovecot" / "dovecot.conf.in", values))

    def _values(self, uid: int, gid: int) -> dict[str, str]:
        cfg, w = self.config, self.workdir
        quota_status = w / "sockets" / "quota-status"
        values = {
            "config": cfg.name, "address": self.address, "host": self.host, "domain": DOMAIN,
            "queue_directory": str(w / "spool"), "data_directory": str(w / "data"),
            "postfix_log": str(self.postfix_log), "log_dir": str(w / "log"), "dovecot_log": str(self.dovecot_log),
            "mailboxes": str(w / "postfix" / "mailboxes"),
            "sender_logins": str(w / "postfix" / "sender_logins"),
            "lmtp_socket": str(w / "sockets" / "lmtp"), "auth_socket": str(w / "sockets" / "auth"),
            "key": str(w / "server.key"), "cert_chain": str(w / "server.pem"),
            "dh_params": "/usr/share/dovecot/dh.pem",
            "mynetworks": "127.0.0.0/8" if cfg.open_relay else "",
            "relay_restrictions": ("permit_mynetworks, reject_unauth_destination" if cfg.open_relay
                                   else "reject_unauth_destination"),
            "submission_tls_level": "may" if cfg.auth_before_tls else "encrypt",
            "submission_tls_auth_only": "no" if cfg.auth_before_tls else "yes",
            "postfix_tls_protocols": ">=TLSv1" if cfg.legacy_tls else ">=TLSv1.2",
            "dovecot_min_protocol": "TLSv1" if cfg.legacy_tls else "TLSv1.2",
            "cipherlist": (LEGACY_CIPHERS if cfg.legacy_tls else
                           ANONYMOUS_CIPHERS if cfg.anonymous_suites else STRONG_CIPHERS),
            "dovecot_ssl": "yes" if cfg.imap_cleartext_login else "required",
            "disable_plaintext_auth": "no" if cfg.imap_cleartext_login else "yes",
            "base_dir": str(w / "run"), "state_dir": str(w / "state"), "passwd_file": str(w / "dovecot" / "passwd"),
            "mail_root": str(w / "mail"), "uid": str(uid), "gid": str(gid),
            "auth_throttle_block": "" if self.auth_throttle else NO_AUTH_THROTTLE,
            "pop3_protocol_block": POP3_CLEARTEXT if cfg.pop3_cleartext_login else "",
            **self._oauth2_values(w),
            "end_of_data_restrictions": (f"check_policy_service unix:{quota_status}"
                                         if cfg.data_waits_for_policy else ""),
            "policy_service_timeout": "20s" if cfg.data_waits_for_policy else "100s",
            "queue_lifetime": "0" if cfg.bounce_on_first_failure else "5d",
            "quota_status_block": QUOTA_STATUS.format(socket=quota_status) if cfg.data_waits_for_policy else "",
        }
        if cfg.directory == "pgsql":  # the SQL directory (tests/real/directory_db.py writes these files)
            sql_args = str(w / "dovecot" / "dovecot-sql.conf.ext")
            values.update(virtual_mailbox_maps=f"pgsql:{w / 'postfix' / 'mailboxes.pgsql.cf'}",
                          passdb_driver="sql", passdb_args=sql_args, userdb_driver="sql", userdb_args=sql_args)
        else:  # files: the passwd-file and the texthash map _write_accounts writes
            values.update(virtual_mailbox_maps=f"texthash:{values['mailboxes']}", passdb_driver="passwd-file",
                          passdb_args=f"scheme=PLAIN username_format=%u {values['passwd_file']}",
                          userdb_driver="static", userdb_args=f"uid={uid} gid={gid} home={values['mail_root']}/%d/%n")
        values.update({f"port_{service}": str(port) for service, port in self.ports.items()})
        return values

    def _oauth2_values(self, w: Path) -> dict[str, str]:
        if self.introspection_url is None:
            return {"oauth2_mechanisms": "", "password_passdb_mechanisms": "", "oauth2_passdb_block": ""}
        args = w / "dovecot" / "dovecot-oauth2.conf.ext"
        args.write_text(OAUTH2_ARGS.format(url=self.introspection_url))
        # passdb { mechanisms } filters by mechanism for every user; username_filter (Dovecot 2.2.30+; the
        # negations first, then what it does match) makes the password passdb skip these users alone, and a
        # deny passdb after it refuses them (had every passdb skipped them, Dovecot answers "temporary failure")
        retired = " ".join(f"!{name}" for name in self.passwords_retired)
        deny = ""
        if self.passwords_retired:
            listed = w / "dovecot" / "passwords-retired"
            listed.write_text("".join(f"{name}:::::::\n" for name in self.passwords_retired))
            deny = RETIRED_PASSWORDS_PASSDB.format(file=listed)
        return {"oauth2_mechanisms": " oauthbearer xoauth2",
                "password_passdb_mechanisms": "  mechanisms = plain login"
                                              + (f"\n  username_filter = {retired} *" if retired else ""),
                "oauth2_passdb_block": deny + OAUTH2_PASSDB.format(args=args)}

    def _write_pki(self) -> None:
        """A root CA and an RSA-2048 leaf (RSA so static-RSA key exchange exists when a config enables
        it) for the configuration's certificate case."""
        root = issue("mailconform real-server test CA", ca=True, days=3650, start=NOW - dt.timedelta(days=30))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if self.config.cert == "expired":
            leaf = issue(self.host, root, dns=(self.host,), key=key, start=NOW - dt.timedelta(days=91), days=90)
        elif self.config.cert == "wrong-name":
            leaf = issue("other.example.org", root, dns=("other.example.org",), key=key)
        else:
            leaf = issue(self.host, root, dns=(self.host,), key=key)
        self.ca = root
        self.ca_path.write_bytes(root.cert.public_bytes(serialization.Encoding.PEM))
        _write_issued(leaf, self.workdir / "server.pem", self.workdir / "server.key")

    def _write_accounts(self) -> None:
        passwd = self.workdir / "dovecot" / "passwd"
        passwd.write_text("".join(f"{a.username}:{{PLAIN}}{a.password}::::::\n" for a in self.accounts.values()))
        passwd.chmod(0o640)  # read by Dovecot's auth process, which runs as user dovecot
        os.chown(passwd, 0, grp.getgrnam("dovecot").gr_gid)
        (self.postfix_dir / "mailboxes").write_text("".join(f"{a.username} ok\n" for a in self.accounts.values()))
        (self.postfix_dir / "sender_logins").write_text(
            "".join(f"{a.username} {a.username}\n" for a in self.accounts.values()))
        for account in self.accounts.values():
            path = self.workdir / f"{account.role}.pw"
            path.write_text(account.password + "\n")
            path.chmod(0o600)
        for role, token in self.tokens.items():
            path = self.workdir / f"{role}.token"
            path.write_text(token + "\n")
            path.chmod(0o600)

    # -- target ------------------------------------------------------------------------------------

    def write_target(self, path: Path | None = None) -> Path:
        """A target.toml for the running instance (trust anchor: the test CA; passwords in files)."""
        return write_fleet_target([self], path or self.workdir / "target.toml")

    def node_table(self, name: str) -> str:
        services = ", ".join(f"{service} = {port}" for service, port in self.ports.items())
        return f'''
[[node]]
name = "{name}"
host = "{self.host}"
address = "{self.address}"
services = {{ {services} }}
'''


def write_fleet_target(fleet: Sequence[MailServers], path: Path) -> Path:
    """A target.toml with one node per running instance (node1, node2, …), every instance's CA trusted,
    and the first instance's accounts (a second node shares them: see ``MailServers(accounts=...)``)."""
    first = fleet[0]
    anchors = ", ".join(f'"{servers.ca_path}"' for servers in fleet)
    nodes = "".join(servers.node_table(f"node{i}") for i, servers in enumerate(fleet, 1))
    accounts = "".join(
        f'\n[accounts.{a.role}]\nusername = "{a.username}"\npassword_file = "{first.workdir / (a.role + ".pw")}"\n'
        + (f'token_file = "{first.workdir / (a.role + ".token")}"\n' if a.role in first.tokens else "")
        for a in first.accounts.values())
    names = "+".join(servers.config.name for servers in fleet)
    path.write_text(f'''# Written by tests/real/servers.py for the "{names}" configuration.
[target]
name = "real-{names}"
trust_anchors = [{anchors}]
max_connections_per_host = 8
timeout = 5
{nodes}{accounts}
[policy]
lockout_threshold = 5
cert_expiry_warning_days = 30
''')
    return path


@dataclass(frozen=True)
class RealTarget:
    """A running configuration: its servers, the target.toml written for them, and that file loaded."""

    name: str
    servers: MailServers
    path: Path
    target: Target
