"""Real Postfix as a sender: private Postfix instances that only send, through a private validating
Unbound, with OpenDKIM as their signing milter and postfix-mta-sts-resolver as their MTA-STS policy map.

No pytest here. ``SenderStack`` is the sending side: Knot (``knot``) signing the sender's own zone (its
DKIM key), a validating Unbound (``unbound``) that trusts only the lab zones' keys, OpenDKIM and
mta-sts-daemon on free loopback ports, and one Postfix per ``SenderConfig``. ``SenderRig`` adds the rig's
own lab (``outbound_lab``: one MX per scenario, the MTA-STS policy host); ``sender_suite`` points the stack
at the suite's outbound lab instead.

Postfix's resolver is glibc's, which reads /etc/resolv.conf and nothing else, and a resolv.conf cannot name
a port: Unbound listens on port 53 of a loopback address nothing else uses (127.0.53.1), and Postfix's
master (so every smtp(8) it forks) and mta-sts-daemon run in their own mount namespace (``unshare --mount``)
in which a private resolv.conf naming that Unbound is bind-mounted over /etc/resolv.conf. The host's file,
its resolver and its ports are never touched. Every daemon is stopped by its own command or PID.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography.hazmat.primitives import serialization

from tests.real.daemon import DaemonError, log_tail, wait_until, which
from tests.real.knot import Knot
from tests.real.outbound_lab import ORIGIN, SCENARIOS, Arrival, OutboundLab, records, zone_body
from tests.real.processes import postfix_pid_file, process_alive, read_pid
from tests.real.servers import FIXTURES, free_port, render
from tests.real.unbound import Unbound

BINARIES = ("postfix", "sendmail", "postqueue", "unshare", "mount", "knotd", "knotc", "unbound", "unbound-control",
            "opendkim", "opendkim-genkey", "mta-sts-daemon")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
SENDER_DOMAIN = "sender.test"      # the senders' own domain: OpenDKIM signs for it, Knot serves its key
DKIM_SELECTOR = "mail"
# Postfix retries deferred mail after 5 minutes by default; a suite's window is seconds.
FAST_RETRY = "minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s"
HARDENED_TLS_CLIENT = """smtp_tls_protocols = >=TLSv1.2
smtp_tls_mandatory_protocols = >=TLSv1.2
smtp_tls_ciphers = high
smtp_tls_mandatory_ciphers = high
tls_high_cipherlist = ECDHE+AESGCM:ECDHE+CHACHA20
smtp_tls_exclude_ciphers = aNULL
smtp_tls_servername = hostname"""
RESOLVER_ADDRESS = "127.0.53.1"   # port 53 (resolv.conf has no port syntax), an address nothing else uses
DELIVERY_TIMEOUT = 45.0   # every message delivered or deferred with a reason (first attempts are immediate)
TAG_HEADER = "X-Mailconform-Tag"


@dataclass(frozen=True)
class SenderConfig:
    """A sender: the good one (DANE, MTA-STS, DKIM), or the good one with exactly one of them off."""

    name: str
    tls_level: str = "dane"   # smtp_tls_security_level: dane (good) | may (weak: no DANE)
    mta_sts: bool = True      # smtp_tls_policy_maps through mta-sts-daemon
    dkim: bool = True         # OpenDKIM as milter
    hardened_tls: bool = True  # HARDENED_TLS_CLIENT (else Postfix's own defaults)
    weakness: str = ""


SENDER_CONFIGS = (
    SenderConfig("good"),
    SenderConfig("dane-off", tls_level="may", weakness="smtp_tls_security_level = may: TLSA records are ignored"),
    SenderConfig("no-mta-sts", mta_sts=False, weakness="no MTA-STS policy daemon: policies are ignored"),
    SenderConfig("no-dkim", dkim=False, weakness="no DKIM signer: mail leaves unsigned"),
    SenderConfig("postfix-defaults", hardened_tls=False,
                 weakness="Postfix's default TLS client settings: TLS 1.0/1.1 and anonymous suites offered, no SNI "
                          "without a TLSA record"),
)


@dataclass(frozen=True)
class Outcome:
    """What became of one message: it arrived at the scenario's MX, or Postfix deferred it (and why)."""

    arrival: Arrival | None
    deferred: str | None       # Postfix's delay_reason

    def describe(self) -> str:
        if self.arrival is not None:
            return f"delivered over {self.arrival.tls_version or 'plaintext'}"
        return f"deferred: {self.deferred}" if self.deferred is not None else "nothing arrived and nothing deferred"


class RigError(RuntimeError):
    """A daemon of the rig did not start; the message carries its log's tail."""


def unavailable_reason() -> str | None:
    missing = [b for b in BINARIES if which(b) is None]
    if missing:
        return (f"the outbound rig needs {', '.join(missing)}: install them with `bash ci/install-real-servers.sh`")
    if os.geteuid() != 0:
        return "the outbound rig starts private daemons in their own mount namespace, which needs root"
    return None


def _binary(name: str) -> str:
    return which(name) or name  # not installed: the command fails with the name in its message


def namespaced(argv: Sequence[str], resolv_conf: Path) -> list[str]:
    """``argv`` run in a new mount namespace (private propagation: nothing leaks back to the host) where
    ``resolv_conf`` is bind-mounted over /etc/resolv.conf. A Postfix- or daemon-native setting for the
    resolver's address does not exist: glibc and c-ares read that file."""
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, str(resolv_conf), *argv]


def _wait_port(port: int, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    def listening() -> bool:
        if process.poll() is not None:
            return True  # exited: stop waiting, the check below says so
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            return False

    wait_until(listening, START_TIMEOUT, lambda: f"{what} did not listen on 127.0.0.1:{port}\n{log_tail(log)}")
    if process.poll() is not None:
        raise RigError(f"{what} exited {process.returncode}\n{log_tail(log)}")


class _Daemon:
    """A foreground daemon we started, stopped by its handle."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                            env=env)

    def stop(self) -> str | None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()  # our own child, by its handle
            self.process.wait(timeout=STOP_TIMEOUT)
            return f"{self.name} did not stop within {STOP_TIMEOUT:.0f} s; killed it"
        return None


def start_opendkim(workdir: Path) -> tuple[_Daemon, int, str]:
    """OpenDKIM signing for the sender domain with a fresh 2048-bit key (opendkim-genkey); returns the
    daemon, its milter port and the public key (base64 SubjectPublicKeyInfo) for the zone."""
    keydir = workdir / "dkim"
    keydir.mkdir()
    subprocess.run([_binary("opendkim-genkey"), "-b", "2048", "-d", SENDER_DOMAIN,
                    "-s", DKIM_SELECTOR, "-D", str(keydir)], check=True, capture_output=True, timeout=60)
    private = keydir / f"{DKIM_SELECTOR}.private"
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    port = free_port("127.0.0.1")
    conf = keydir / "opendkim.conf"
    # RequireSafeKeys off: OpenDKIM refuses any file under /tmp (world-writable, if sticky); the key is 0600.
    conf.write_text(f"""Mode s
RequireSafeKeys false
Domain {SENDER_DOMAIN}
Selector {DKIM_SELECTOR}
KeyFile {private}
SignatureAlgorithm rsa-sha256
Canonicalization relaxed/simple
Socket inet:{port}@127.0.0.1
PidFile {keydir / 'opendkim.pid'}
Syslog no
UMask 077
""")
    log = keydir / "opendkim.log"
    daemon = _Daemon("OpenDKIM", [_binary("opendkim"), "-f", "-x", str(conf)], log)
    _wait_port(port, "OpenDKIM", daemon.process, log)
    return daemon, port, public


def start_mta_sts_daemon(workdir: Path, resolv_conf: Path, ca_file: Path) -> tuple[_Daemon, int]:
    """postfix-mta-sts-resolver on a free loopback port, resolving through the lab Unbound (its own mount
    namespace) and trusting the lab CA for the policy host (SSL_CERT_FILE: aiohttp's default context)."""
    directory = workdir / "mta-sts"
    directory.mkdir()
    port = free_port("127.0.0.1")
    conf = directory / "mta-sts-daemon.yml"
    # reuse_port stays on: 1.1.2 fails to start with it off (an unset variable in responder.start)
    conf.write_text(f"""host: 127.0.0.1
port: {port}
reuse_port: true
shutdown_timeout: 2
cache:
  type: internal
  options:
    cache_size: 100
default_zone:
  strict_testing: false
  timeout: 4
""")
    log = directory / "mta-sts-daemon.log"
    env = {**os.environ, "SSL_CERT_FILE": str(ca_file)}
    argv = namespaced([_binary("mta-sts-daemon"), "-c", str(conf), "-v", "debug",
                       "-l", str(log), "--disable-uvloop"], resolv_conf)
    daemon = _Daemon("mta-sts-daemon", argv, directory / "stdout.log", env)
    _wait_port(port, "mta-sts-daemon", daemon.process, log)
    return daemon, port


def config_values(config: SenderConfig, shared: dict[str, str], sts_port: int, milter_port: int) -> dict[str, str]:
    """The template values of ``config``'s main.cf: ``shared`` plus what its switches say."""
    return {**shared, "tls_level": config.tls_level,
            "tls_client_block": HARDENED_TLS_CLIENT if config.hardened_tls else "",
            "policy_maps": f"socketmap:inet:127.0.0.1:{sts_port}:postfix" if config.mta_sts else "",
            "milters": f"inet:127.0.0.1:{milter_port}" if config.dkim else ""}


class PostfixSender:
    """One private Postfix instance for ``config``: started in the resolver namespace, fed by sendmail."""

    def __init__(self, config: SenderConfig, workdir: Path, values: dict[str, str]) -> None:
        self.config = config
        self.workdir = workdir / f"postfix-{config.name}"
        self.config_dir = self.workdir / "postfix"
        self.log = self.workdir / "log" / "postfix.log"
        self._values = values
        self._started = False

    def start(self, resolv_conf: Path) -> None:
        for sub in ("postfix", "spool", "data", "log"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        os.chown(self.workdir / "data", pwd.getpwnam("postfix").pw_uid, 0)
        values = {**self._values, "config": self.config.name, "queue_directory": str(self.workdir / "spool"),
                  "data_directory": str(self.workdir / "data"), "postfix_log": str(self.log),
                  "log_dir": str(self.workdir / "log")}
        for name in ("main.cf", "master.cf"):
            (self.config_dir / name).write_text(render(FIXTURES / "postfix" / f"sender-{name}.in", values))
        self._started = True
        self._run(namespaced([_binary("postfix"), "-c", str(self.config_dir), "start"], resolv_conf))

    def _run(self, argv: list[str], stdin: bytes | None = None) -> str:
        result = subprocess.run(argv, input=stdin, capture_output=True, timeout=START_TIMEOUT, check=False)
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RigError(f"{' '.join(argv)} exited {result.returncode}: "
                           f"{(result.stdout + result.stderr).decode(errors='replace')}\n{tail}")
        return result.stdout.decode(errors="replace")

    def send(self, scenario_domain: str, tag: str) -> None:
        sender = f"{self.config.name}@{SENDER_DOMAIN}"
        message = (f"From: <{sender}>\r\nTo: <probe@{scenario_domain}>\r\nSubject: outbound rig {tag}\r\n"
                   f"Message-ID: <{tag}@{SENDER_DOMAIN}>\r\n{TAG_HEADER}: {tag}\r\n\r\nA test message.\r\n")
        self._run([_binary("sendmail"), "-C", str(self.config_dir), "-f", sender, "-t", "-i"],
                  message.encode())

    def deferred(self) -> dict[str, str]:
        """Recipient address -> Postfix's delay reason, for every message in the deferred queue."""
        out = self._run([_binary("postqueue"), "-c", str(self.config_dir), "-j"])
        reasons = {}
        for line in out.splitlines():
            entry = json.loads(line)
            if entry.get("queue_name") == "deferred":
                for rcpt in entry.get("recipients", []):
                    reasons[rcpt["address"]] = rcpt.get("delay_reason", "")
        return reasons

    def stop(self) -> str | None:
        if not self._started:
            return None
        self._started = False
        pid = read_pid(postfix_pid_file(self.workdir))
        try:
            self._run([_binary("postfix"), "-c", str(self.config_dir), "stop"])
        except (RigError, subprocess.TimeoutExpired) as exc:
            if pid is not None and process_alive(pid):
                return str(exc)
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid is not None and process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a master on its way out; bounded by the deadline
        if pid is not None and process_alive(pid):
            os.kill(pid, 9)  # our own master, by its PID
            return f"sender {self.config.name}: Postfix did not stop; killed its master, PID {pid}"
        return None


@dataclass(frozen=True)
class Stub:
    """A zone the rig's Unbound asks another server for, and the DS it validates it from."""

    address: str
    port: int
    trust_anchor: str


class SenderStack:
    """Everything on the sending side: Knot (the sender's own zone with its DKIM key, and ``own_zones``),
    a validating Unbound on ``resolver:53`` (Knot's zones and the ``stubs``), OpenDKIM, mta-sts-daemon and
    one Postfix per config sending to MX hosts on ``mx_port`` and trusting ``ca_file`` for PKIX.
    A context manager; ``stop()`` stops everything it started, side by side."""

    def __init__(self, workdir: Path, configs: Sequence[SenderConfig], *, resolver: str, mx_port: int,
                 ca_file: Path, stubs: dict[str, Stub] | None = None, own_zones: dict[str, str] | None = None,
                 fast_retry: bool = False) -> None:
        """``fast_retry``: deferred mail is retried within seconds, not Postfix's 5 minutes (a rig setting for
        speed: a suite window of seconds can then see a retry)."""
        self.workdir, self.configs, self.resolver, self.mx_port, self.ca_file = workdir, tuple(configs), resolver, \
            mx_port, ca_file
        self.stubs, self.own_zones, self.fast_retry = dict(stubs or {}), dict(own_zones or {}), fast_retry
        self.resolv_conf = workdir / "resolv.conf"
        self.resolv_conf.write_text(f"nameserver {resolver}\noptions trust-ad\n")
        self.knot: Knot | None = None
        self.unbound: Unbound | None = None
        self.senders: dict[str, PostfixSender] = {}
        self._daemons: list[_Daemon] = []

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        opendkim, milter_port, dkim_public = start_opendkim(self.workdir)
        self._daemons.append(opendkim)
        self.knot = Knot(workdir=self._subdir("knot"))
        self.knot.start()
        zones = {SENDER_DOMAIN: sender_zone(dkim_public), **self.own_zones}
        for zone, body in zones.items():
            self.knot.serve(zone, body)
        stubs = {**{z: Stub(self.knot.address, self.knot.port, self.knot.trust_anchor(z)) for z in zones},
                 **self.stubs}
        self.unbound = Unbound(self.resolver, 53, stub_zones={z: (s.address, s.port) for z, s in stubs.items()},
                               trust_anchors=[s.trust_anchor for s in stubs.values()], workdir=self._subdir("unbound"))
        self.unbound.start()
        sts, sts_port = start_mta_sts_daemon(self.workdir, self.resolv_conf, self.ca_file)
        self._daemons.append(sts)
        shared = {"sender_domain": SENDER_DOMAIN, "mx_port": str(self.mx_port), "lab_ca": str(self.ca_file),
                  "backoff_block": FAST_RETRY if self.fast_retry else ""}
        for config in self.configs:
            self.senders[config.name] = PostfixSender(config, self.workdir,
                                                      config_values(config, shared, sts_port, milter_port))
        # side by side: `postfix start` takes seconds each (its checks and set-permissions), they need not add up
        with ThreadPoolExecutor(max_workers=len(self.senders)) as pool:
            list(pool.map(lambda sender: sender.start(self.resolv_conf), self.senders.values()))

    def _subdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir()
        return path

    def log_tail(self, config: str) -> str:
        log = self.senders[config].log
        return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"

    def stop(self) -> None:
        """Stop everything; RigError naming what did not stop (after stopping the rest)."""
        # side by side (OpenDKIM alone takes seconds to go); a sender that outlives its signer only defers
        stops: list[Callable[[], str | None]] = [*(s.stop for s in self.senders.values()),
                                                 *(d.stop for d in self._daemons)]
        with ThreadPoolExecutor(max_workers=max(1, len(stops))) as pool:
            errors = [e for e in pool.map(lambda stop: stop(), stops) if e]
        self._daemons = []
        for dns_server in (self.unbound, self.knot):
            if dns_server is not None:
                try:
                    dns_server.stop()
                except DaemonError as exc:
                    errors.append(str(exc))
        self.unbound = self.knot = None
        if errors:
            raise RigError("; ".join(errors))


def sender_zone(dkim_public: str) -> str:
    """The sender's own zone: its DKIM key (RFC 6376 §3.6.2: one TXT of 255-octet strings)."""
    record = f"v=DKIM1; k=rsa; p={dkim_public}"
    strings = " ".join(f'"{record[i:i + 255]}"' for i in range(0, len(record), 255))
    return (f"@ NS ns1\nns1 A 127.0.0.1\n{DKIM_SELECTOR}._domainkey TXT {strings}\n")


class SenderRig:
    """The senders with the rig's own lab (``outbound_lab``: MTA-STS scenarios included); a context manager.
    ``send_all()`` then ``outcomes()`` give every message's fate."""

    def __init__(self, configs: Sequence[SenderConfig] = SENDER_CONFIGS) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="mailconform-sender-"))
        self.workdir.chmod(0o755)  # Postfix's processes run as postfix and must traverse it
        self.lab = OutboundLab(self.workdir)
        self.stack = SenderStack(self.workdir, configs, resolver=RESOLVER_ADDRESS, mx_port=self.lab.port,
                                 ca_file=self.lab.pki.ca_path,
                                 own_zones={ORIGIN.rstrip("."): zone_body(records(self.lab.pki, self.lab.port))})
        self._tags: dict[tuple[str, str], str] = {}

    @property
    def senders(self) -> dict[str, PostfixSender]:
        return self.stack.senders

    def __enter__(self) -> Self:
        try:
            self.lab.start()
            self.stack.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def send_all(self) -> None:
        """One message from every sender to every scenario's domain, each with its own tag."""
        for name, sender in self.senders.items():
            for scenario in SCENARIOS:
                tag = f"{name}.{scenario.label}.{uuid.uuid4().hex[:8]}"
                self._tags[(name, scenario.label)] = tag
                sender.send(scenario.domain, tag)

    def outcomes(self) -> dict[tuple[str, str], Outcome]:
        """Every message's fate, waiting until each has arrived or been deferred (bounded)."""
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while True:
            found = self._collect()
            if all(o.arrival is not None or o.deferred is not None for o in found.values()):
                return found
            if time.monotonic() > deadline:
                return found
            time.sleep(0.2)  # Postfix works on its own schedule; bounded by DELIVERY_TIMEOUT

    def _collect(self) -> dict[tuple[str, str], Outcome]:
        arrivals: dict[str, Arrival] = {}
        for arrival in self.lab.arrived():
            for line in arrival.content.decode(errors="replace").splitlines():
                if line.startswith(TAG_HEADER + ":"):
                    arrivals[line.split(":", 1)[1].strip()] = arrival
        deferred = {name: sender.deferred() for name, sender in self.senders.items()}
        by_domain = {s.label: f"probe@{s.domain}" for s in SCENARIOS}
        return {(name, label): Outcome(arrivals.get(tag), deferred[name].get(by_domain[label]))
                for (name, label), tag in self._tags.items()}

    def log_tail(self, config: str) -> str:
        return self.stack.log_tail(config)

    def stop(self) -> None:
        try:
            self.stack.stop()
        finally:
            self.lab.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
