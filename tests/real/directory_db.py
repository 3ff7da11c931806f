"""A private PostgreSQL cluster holding the real-server tier's users: the SQL user directory of Postfix
(``virtual_mailbox_maps = pgsql:...``) and Dovecot (passdb and userdb ``driver = sql``).

No pytest here. ``DirectoryDb`` runs ``initdb`` in a subdirectory of a ``MailServers`` work directory,
listens only on a Unix socket there (no TCP port at all), trusts local connections (``pg_hba``: ``local
all all trust``: the socket directory is the boundary), and fills a ``users`` table from the accounts.
Every command runs as the ``postgres`` system user and every wait has a deadline: ``pg_ctl -w -t``
for the server, a subprocess timeout for each command. The cluster is stopped by its own ``pg_ctl``,
never by process name. Passwords are fed on stdin, never on a command line, and are cut out of any
output that ends up in an exception.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Mapping
from pathlib import Path

__all__ = ["DB_NAME", "DB_ROLE", "DirectoryDb", "DirectoryError", "pg_bin", "pg_ctl_argv"]

DB_NAME = "mailconform"
DB_ROLE = "mailconform"
SUBDIR = "pgsql"
PORT = 5432            # only names the socket file (.s.PGSQL.5432) in our own directory: no TCP listener
WAIT = 30              # seconds: pg_ctl's -t for start and stop, and the bound on every other command
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGTZ": "UTC"}


class DirectoryError(RuntimeError):
    """A PostgreSQL command failed or did not return in time; the message never holds a password."""


def pg_bin() -> Path | None:
    """Debian's PostgreSQL binaries (/usr/lib/postgresql/<version>/bin), the newest version, or None."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_ctl").exists()]
    if not found:
        return None
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def pg_ctl_argv(workdir: Path, action: str) -> list[str]:
    """``pg_ctl`` for the cluster of a MailServers work directory: ``start`` or ``stop`` (fast), waiting
    at most ``WAIT`` seconds. Shared with tests/real/outage_hook.py's directory-stop/-start."""
    binaries = pg_bin()
    if binaries is None:
        raise DirectoryError("PostgreSQL is not installed (run ci/install-real-servers.sh)")
    root = workdir / SUBDIR
    argv = [str(binaries / "pg_ctl"), "-D", str(root / "data"), "-w", "-t", str(WAIT)]
    if action == "start":
        return [*argv, "-l", str(root / "postgresql.log"), "start"]
    if action == "stop":
        return [*argv, "-m", "fast", "stop"]
    raise ValueError(f"unknown pg_ctl action {action!r}")


class DirectoryDb:
    """The users of one MailServers instance in a private PostgreSQL cluster under ``workdir/pgsql``.

    ``create()`` once (initdb, start, role, database, table, rows), then ``stop()``/``start()`` as often
    as wanted. ``accounts`` maps user names to passwords."""

    def __init__(self, workdir: Path, accounts: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.root = workdir / SUBDIR
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log = self.root / "postgresql.log"
        self._accounts = dict(accounts)
        self.running = False

    def __repr__(self) -> str:  # the accounts' passwords stay out of reprs
        return f"DirectoryDb({str(self.root)!r}, users={sorted(self._accounts)!r}, running={self.running})"

    # -- lifecycle ---------------------------------------------------------------------------------

    def create(self) -> None:
        """initdb a fresh cluster, start it and fill the ``users`` table. Stops the server on failure."""
        binaries = pg_bin()
        if binaries is None:
            raise DirectoryError("PostgreSQL is not installed (run ci/install-real-servers.sh)")
        postgres = pwd.getpwnam("postgres")
        for path in (self.root, self.socket_dir):
            path.mkdir(exist_ok=True)
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
            path.chmod(0o755)  # Postfix (user postfix) and Dovecot's auth worker reach the socket through it
        self._run([str(binaries / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--locale=C", "--no-sync"], "initdb")
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"""
# mailconform: a private cluster reached only through the Unix socket in {self.socket_dir}
listen_addresses = ''
port = {PORT}
unix_socket_directories = '{self.socket_dir}'
unix_socket_permissions = 0777
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 50
# never a statement (with its literals) in the log
log_min_error_statement = panic
""")
        (self.data / "pg_hba.conf").write_text("local all all trust\n")
        self.start()
        try:
            self._psql("postgres", "postgres",
                       f"CREATE ROLE {DB_ROLE} LOGIN;\nCREATE DATABASE {DB_NAME} OWNER {DB_ROLE};\n")
            self._psql(DB_NAME, DB_ROLE,
                       "CREATE TABLE users (username text PRIMARY KEY, password text NOT NULL);\n"
                       "COPY users (username, password) FROM STDIN;\n"
                       + "".join(f"{_copy_field(u)}\t{_copy_field(p)}\n" for u, p in self._accounts.items())
                       + "\\.\n")
        except BaseException:
            self.stop()
            raise

    def start(self) -> None:
        self.running = True  # first: a start that fails late may have left a postmaster behind
        self._run(pg_ctl_argv(self.workdir, "start"), "pg_ctl start")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``, waiting for the postmaster to go; a no-op when nothing runs."""
        if not self.running:
            return
        self.running = False
        if (self.data / "postmaster.pid").exists():
            self._run(pg_ctl_argv(self.workdir, "stop"), "pg_ctl stop")

    # -- the clients' configuration ---------------------------------------------------------------

    def write_postfix_table(self, path: Path) -> None:
        """A pgsql_table(5) file for ``virtual_mailbox_maps``: a known user is ``ok``, anyone else not
        found. ``hosts = unix:DIR`` is libpq's socket directory (Postfix 3.7 takes no ``:port`` after a
        socket path: it becomes part of the path; libpq's default 5432 is PORT). No password: the socket
        is trusted."""
        path.write_text(f"""# Written by tests/real/directory_db.py: the users of the mailconform SQL directory.
hosts = unix:{self.socket_dir}
user = {DB_ROLE}
dbname = {DB_NAME}
query = SELECT 'ok' FROM users WHERE username = '%s'
""")
        path.chmod(0o644)

    def write_dovecot_sql(self, path: Path, uid: int, gid: int, mail_root: str) -> None:
        """Dovecot's ``args`` file for passdb and userdb ``driver = sql`` (dovecot-sql.conf.ext)."""
        path.write_text(f"""# Written by tests/real/directory_db.py: the users of the mailconform SQL directory.
driver = pgsql
connect = host={self.socket_dir} port={PORT} dbname={DB_NAME} user={DB_ROLE}
default_pass_scheme = PLAIN
password_query = SELECT username AS user, password FROM users WHERE username = '%u'
user_query = SELECT {uid} AS uid, {gid} AS gid, '{mail_root}/%d/%n' AS home FROM users WHERE username = '%u'
""")
        path.chmod(0o644)

    # -- helpers -----------------------------------------------------------------------------------

    def _psql(self, database: str, role: str, script: str) -> None:
        binaries = pg_bin()
        assert binaries is not None
        self._run([str(binaries / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
                   "-p", str(PORT), "-U", role, "-d", database, "-f", "-"], f"psql {database}", stdin=script)

    def _run(self, argv: list[str], what: str, stdin: str | None = None) -> str:
        try:
            result = subprocess.run(argv, input=stdin if stdin is not None else "", capture_output=True, text=True,
                                    timeout=WAIT + 10, check=False, user="postgres", group="postgres",
                                    extra_groups=[], cwd=self.root, env=ENV)
        except subprocess.TimeoutExpired:
            raise DirectoryError(f"{what} did not return within {WAIT + 10} s\n{self._log_tail()}") from None
        output = self._redact((result.stdout + result.stderr).strip())
        if result.returncode != 0:
            raise DirectoryError(f"{what} exited {result.returncode}: {output}\n{self._log_tail()}")
        return output

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        except OSError:
            text = ["(no log yet)"]
        return self._redact(f"--- {self.log.name} ---\n" + "\n".join(text))

    def _redact(self, text: str) -> str:
        for password in self._accounts.values():
            if password:
                text = text.replace(password, "********")
        return text


def _copy_field(value: str) -> str:
    """A value in COPY's text format (backslash, tab and newline escaped)."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
