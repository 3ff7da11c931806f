"""target.toml -> a typed, validated ``Target``.

Every error is one ``TargetError`` line naming the file, the key, its line and what was expected,
so an operator can fix the file without reading a traceback. Passwords come from an environment
variable or a file, never from the file itself or the command line.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from datetime import datetime as datetime_type
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from conformance import requirements


class TargetError(ValueError):
    """A target file (or the values it points at) is unusable; the message is one actionable line."""


class Service(StrEnum):
    MX = "mx"
    SUBMISSION = "submission"
    SUBMISSIONS = "submissions"
    IMAP = "imap"
    IMAPS = "imaps"
    POP3 = "pop3"
    POP3S = "pop3s"

    @property
    def protocol(self) -> str:
        if self in (Service.IMAP, Service.IMAPS):
            return "imap"
        return "pop3" if self in (Service.POP3, Service.POP3S) else "smtp"

    @property
    def implicit_tls(self) -> bool:
        return self in (Service.SUBMISSIONS, Service.IMAPS, Service.POP3S)


class Secret:
    """A password that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.origin})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Account:
    role: str
    username: str
    password: Secret = field(repr=False)   # empty for an account that carries only a bearer token
    address: str
    token: Secret | None = field(default=None, repr=False)   # an OAuth 2.0 bearer token (RFC 6750)


@dataclass(frozen=True)
class Hook:
    """An operator command (argv, run without a shell) that takes a node out or brings it back."""

    down: tuple[str, ...]
    up: tuple[str, ...]
    timeout: float = 60.0


# What an outage hook takes down: the whole node (``hooks``) or one component of it (``outages.<kind>``).
OUTAGE_KINDS = ("node", "delivery", "auth", "directory", "stall")


@dataclass(frozen=True)
class Node:
    name: str
    host: str
    address: str | None = None
    hooks: Hook | None = None
    # Per-component outage hooks as (kind, Hook) pairs: a tuple, so a frozen Node stays hashable.
    outages: tuple[tuple[str, Hook], ...] = ()

    def outage_hook(self, kind: str) -> Hook | None:
        """The hook that takes ``kind`` down ("node" is the whole-node ``hooks``), or None."""
        if kind == "node" and self.hooks is not None:
            return self.hooks
        return dict(self.outages).get(kind)


@dataclass(frozen=True)
class Endpoint:
    """One service on one node: the unit every check is parametrized over."""

    service: Service
    node: str
    host: str
    port: int
    address: str | None = None

    @property
    def protocol(self) -> str:
        return self.service.protocol

    @property
    def implicit_tls(self) -> bool:
        return self.service.implicit_tls

    @property
    def connect_host(self) -> str:
        return self.address or self.host

    @property
    def id(self) -> str:
        """Stable, readable test ID: CI history keys on it, so no ephemeral port in it."""
        return f"{self.service}@{self.node}"

    def __str__(self) -> str:
        return f"{self.service} {self.host}:{self.port} (node {self.node})"


@dataclass(frozen=True)
class Policy:
    lockout_threshold: int = 10
    lockout_window: float = 900.0
    lockout_duration: float = 900.0
    cert_expiry_warning_days: int = 30
    recovery_time_objective: float = 300.0
    max_outage: float = 120.0
    # Seconds the final reply to DATA may take while a backend stalls: a sender that times out first
    # resends, and the message arrives twice (RFC 5321 §4.5.3.2.6, §6.1).
    data_reply_budget: float = 10.0
    # Seconds the outbound family waits for mail that should (or must not) arrive at the lab's MX hosts.
    outbound_window: float = 20.0
    # "forbidden": basic authentication is retired, so an account that carries a token must not log in with
    # its password over PLAIN or LOGIN on any client port (Microsoft's and NHSmail's retirement of basic auth).
    basic_auth: str = "allowed"


@dataclass(frozen=True)
class Outbound:
    """The suite as the far end of the gateway's outbound mail: its test domain, zone and MX hosts."""

    domain: str
    address: str                        # the lab DNS listens here; MX host i on address + i (i >= 1)
    dns_port: int = 53
    mx_port: int = 25
    https_port: int = 443               # the MTA-STS policy hosts (on ``address``)
    lab_dir: Path | None = None         # zone key and lab CA (made on first use); else a fresh pair per run
    send: tuple[str, ...] | None = None  # operator hook: argv + recipient, message file (else: submission)
    via: Service = Service.SUBMISSION    # where the test account submits, without a send hook
    tlsrpt_send: tuple[str, ...] | None = None  # operator hook (argv): the gateway sends its TLS-RPT reports now


@dataclass(frozen=True)
class Waiver:
    """A requirement the operator knowingly does not meet (``[[waiver]]``): its checks still run, and a failed
    or inconclusive one is reported as waived instead of failing the run, until the waiver expires."""

    requirement: str
    reason: str
    approved_by: str
    expires: date                      # the last day it applies
    endpoints: tuple[str, ...] = ()    # globs on endpoint IDs (``submission@mx*``); none and no nodes: all
    nodes: tuple[str, ...] = ()        # globs on node names

    def covers(self, requirement: str, endpoint_id: str, node: str | None) -> bool:
        if requirement != self.requirement:
            return False
        if not self.endpoints and not self.nodes:
            return True
        return (any(fnmatchcase(endpoint_id, glob) for glob in self.endpoints)
                or node is not None and any(fnmatchcase(node, glob) for glob in self.nodes))

    def expired(self, today: date) -> bool:
        return today > self.expires

    def __str__(self) -> str:
        return f"waived until {self.expires}, approved by {self.approved_by}: {self.reason}"


@dataclass(frozen=True)
class Target:
    name: str
    nodes: tuple[Node, ...]
    endpoints: tuple[Endpoint, ...]
    accounts: dict[str, Account]
    policy: Policy = Policy()
    domain: str | None = None
    resolver: str | None = None
    ehlo_name: str = "mailconform.invalid"
    trust_anchors: tuple[Path, ...] = ()
    max_connections_per_host: int = 4
    timeout: float = 10.0
    relay_sink: str | None = None
    source: Path | None = None
    dkim_selectors: tuple[str, ...] = ()            # DKIM selectors whose keys the dns family judges
    dnssec_trust_anchors: tuple[Path, ...] = ()     # DS/DNSKEY files for lab zones (else the IANA root)
    waivers: tuple[Waiver, ...] = ()
    outbound: Outbound | None = None                # the outbound family's lab ([outbound]), opt-in

    def waiver_for(self, requirement: str, endpoint_id: str, node: str | None, today: date) -> Waiver | None:
        """The waiver covering this check: one in force before an expired one (which only says so)."""
        covering = [w for w in self.waivers if w.covers(requirement, endpoint_id, node)]
        return min(covering, key=lambda w: w.expired(today), default=None)
    mta_sts_address: tuple[str, int] | None = None  # lab: fetch mta-sts.<domain> from here (name kept for SNI)

    def endpoints_for(self, *services: Service | str) -> tuple[Endpoint, ...]:
        wanted = {Service(s) for s in services}
        return tuple(e for e in self.endpoints if e.service in wanted)

    def account(self, role: str) -> Account | None:
        return self.accounts.get(role)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def secrets(self) -> tuple[str, ...]:
        """Every password and token value, so reporters can scrub them from anything they write."""
        values = [a.password.reveal() for a in self.accounts.values()]
        values += [a.token.reveal() for a in self.accounts.values() if a.token is not None]
        return tuple(v for v in values if v)


_TOP_KEYS = {"target", "node", "accounts", "policy", "waiver", "outbound"}
_OUTBOUND_KEYS = {"domain", "address", "dns_port", "mx_port", "https_port", "lab_dir", "send", "via",
                  "tlsrpt_send"}
_TARGET_KEYS = {
    "name", "domain", "resolver", "ehlo_name", "trust_anchors", "max_connections_per_host", "timeout",
    "relay_sink", "dkim_selectors", "dnssec_trust_anchors", "mta_sts_address",
}
_NODE_KEYS = {"name", "host", "address", "services", "hooks", "outages"}
_HOOK_KEYS = {"down", "up", "timeout"}
_ACCOUNT_KEYS = {"username", "password_env", "password_file", "token_env", "token_file", "address"}
_POLICY_FIELDS = {f for f in Policy.__dataclass_fields__}
_WAIVER_KEYS = {"requirement", "endpoints", "nodes", "reason", "approved_by", "expires"}
BASIC_AUTH = ("allowed", "forbidden")


class _Reader:
    """Typed access to the parsed TOML that reports the file, key path and line of a bad value."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def fail(self, key: str, message: str) -> TargetError:
        line = self._line_of(key)
        where = f"{self.path}:{line}" if line else str(self.path)
        return TargetError(f"{where}: key '{key}': {message}")

    def fail_in(self, table: str, index: int, key: str, message: str) -> TargetError:
        """Like ``fail``, for the ``index``-th ``[[table]]`` of an array of tables."""
        headers = [i for i, raw in enumerate(self.lines) if re.match(rf"\s*\[\[\s*{re.escape(table)}\s*\]\]", raw)]
        start = headers[index] if index < len(headers) else 0
        end = next((i for i, raw in enumerate(self.lines[start + 1:], start + 1) if re.match(r"\s*\[", raw)),
                   len(self.lines))
        line = next((i + 1 for i, raw in enumerate(self.lines[start:end], start)
                     if re.match(rf"\s*{re.escape(key)}\s*=", raw)), start + 1 if headers else None)
        return TargetError(f"{self.path}:{line}: key '{table}.{key}': {message}" if line
                           else f"{self.path}: key '{table}.{key}': {message}")

    def _line_of(self, dotted: str) -> int | None:
        """Best-effort line of a dotted key: tomllib reports lines only for syntax errors."""
        parts = [p for p in re.split(r"\.|\[\d+\]", dotted) if p]
        leaf = parts[-1] if parts else dotted
        tables = [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
        headers: dict[str, int] = {}
        for i, raw in enumerate(self.lines, 1):
            header = re.match(r"\s*\[\[?\s*([^\]]+?)\s*\]\]?", raw)
            if header:
                headers.setdefault(header.group(1), i)
        # the most specific table header wins ([node.outages.auth] over [[node]])
        table_line = next((headers[t] for t in tables if t in headers), 0)
        for i, raw in enumerate(self.lines[table_line:], table_line + 1):
            if re.search(rf"(?:^|[\s{{,.]){re.escape(leaf)}\s*=", raw) or re.match(
                rf"\s*\[\[?\s*{re.escape(dotted)}\s*\]\]?", raw
            ):
                return i
        return table_line or None

    def table(self, data: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
        value = data
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}" if key else unknown[0],
                            f"unknown key (expected one of: {', '.join(sorted(allowed))})")
        return value

    def get(self, data: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...],
            default: Any = ..., expected: str = "") -> Any:
        if key not in data:
            if default is ...:
                raise self.fail(f"{where}.{key}" if where else key, f"missing (expected {expected or _name(kind)})")
            return default
        value = data[key]
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
        if not ok:
            raise self.fail(f"{where}.{key}" if where else key,
                            f"expected {expected or _name(kind)}, got {type(value).__name__} {value!r}")
        return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a table", bool: "true/false"}
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


def load_target(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Target:
    """Read and validate a target file. Raises TargetError (one line) on any bad input."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetError(f"{path}: cannot read target file: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(_syntax_error(path, exc)) from None
    return parse_target(data, _Reader(path, text), os.environ if environ is None else environ)


def _syntax_error(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    """`file:line: not valid TOML: ...` like every other target error. Python < 3.14 puts the position
    only into the message ("Invalid value (at line 2, column 8)"), so it is read from there."""
    position = re.search(r"\s*\(at line (\d+), column (\d+)\)$", str(exc))
    if not position:
        return f"{path}: not valid TOML: {exc}"
    message = str(exc)[:position.start()]
    return f"{path}:{position.group(1)}: not valid TOML: {message} (column {position.group(2)})"


def parse_target(data: dict[str, Any], reader: _Reader, environ: Any) -> Target:
    reader.table(data, "", _TOP_KEYS)
    top = reader.table(reader.get(data, "target", "", dict, {}), "target", _TARGET_KEYS)
    base = reader.path.parent
    anchors = tuple(_anchor(reader, base, a, i) for i, a in
                    enumerate(reader.get(top, "trust_anchors", "target", list, [])))
    nodes, endpoints = _nodes(reader, reader.get(data, "node", "", list, expected="at least one [[node]] table"))
    accounts = {role: _account(reader, role, spec, base, environ)
                for role, spec in reader.get(data, "accounts", "", dict, {}).items()}
    return Target(
        name=reader.get(top, "name", "target", str, reader.path.stem),
        nodes=nodes,
        endpoints=endpoints,
        accounts=accounts,
        policy=_policy(reader, reader.get(data, "policy", "", dict, {})),
        domain=reader.get(top, "domain", "target", str, None),
        resolver=reader.get(top, "resolver", "target", str, None),
        ehlo_name=reader.get(top, "ehlo_name", "target", str, "mailconform.invalid"),
        trust_anchors=anchors,
        max_connections_per_host=_positive(reader, top, "max_connections_per_host", "target", 4),
        timeout=float(_positive(reader, top, "timeout", "target", 10.0)),
        relay_sink=reader.get(top, "relay_sink", "target", str, None),
        source=reader.path,
        dkim_selectors=_dkim_selectors(reader, top),
        dnssec_trust_anchors=_dnssec_anchors(reader, top, base),
        waivers=tuple(_waiver(reader, i, raw) for i, raw in enumerate(reader.get(data, "waiver", "", list, []))),
        outbound=_outbound(reader, reader.get(data, "outbound", "", dict, None), base),
        mta_sts_address=_mta_sts_address(reader, top),
    )


def _positive(reader: _Reader, data: dict[str, Any], key: str, where: str, default: float) -> Any:
    value = reader.get(data, key, where, (int, float), default)
    if value <= 0:
        raise reader.fail(f"{where}.{key}", f"expected a positive number, got {value!r}")
    return value


def _anchor(reader: _Reader, base: Path, value: Any, index: int) -> Path:
    if not isinstance(value, str):
        raise reader.fail(f"target.trust_anchors[{index}]", f"expected a file path, got {value!r}")
    path = (base / value).resolve()
    if not path.is_file():
        raise reader.fail("target.trust_anchors", f"file not found: {path}")
    return path


def _nodes(reader: _Reader, raw_nodes: list[Any]) -> tuple[tuple[Node, ...], tuple[Endpoint, ...]]:
    if not raw_nodes:
        raise reader.fail("node", "expected at least one [[node]] table")
    nodes: list[Node] = []
    endpoints: list[Endpoint] = []
    for index, raw in enumerate(raw_nodes):
        where = f"node[{index}]"
        if not isinstance(raw, dict):
            raise reader.fail("node", "expected [[node]] tables")
        reader.table(raw, "node", _NODE_KEYS)
        name = reader.get(raw, "name", where, str, f"node{index + 1}")
        if any(n.name == name for n in nodes):
            raise reader.fail("node.name", f"duplicate node name {name!r}")
        host = reader.get(raw, "host", "node", str)
        address = reader.get(raw, "address", "node", str, None)
        hooks = _hooks(reader, reader.get(raw, "hooks", "node", dict, None))
        outages = _outages(reader, reader.get(raw, "outages", "node", dict, {}), hooks)
        nodes.append(Node(name=name, host=host, address=address, hooks=hooks, outages=outages))
        services = reader.get(raw, "services", "node", dict, expected="a table of service = port")
        for service_name, port in services.items():
            try:
                service = Service(service_name)
            except ValueError:
                raise reader.fail(f"node.services.{service_name}",
                                  f"unknown service (expected one of: {', '.join(s.value for s in Service)})") from None
            if not isinstance(port, int) or isinstance(port, bool):
                raise reader.fail(f"node.services.{service_name}",
                                  f"port must be a number, got {type(port).__name__} {port!r}")
            if not 0 < port < 65536:
                raise reader.fail(f"node.services.{service_name}", f"port out of range 1-65535: {port!r}")
            endpoints.append(Endpoint(service=service, node=name, host=host, port=port, address=address))
    return tuple(nodes), tuple(endpoints)


def _hooks(reader: _Reader, raw: dict[str, Any] | None, where: str = "node.hooks",
           default_timeout: float = 60.0) -> Hook | None:
    if raw is None:
        return None
    reader.table(raw, where, _HOOK_KEYS)
    commands = {}
    for key in ("down", "up"):
        argv = reader.get(raw, key, where, list, expected="a command as a list of strings")
        if not argv or not all(isinstance(a, str) for a in argv):
            raise reader.fail(f"{where}.{key}", "expected a non-empty list of strings (argv, no shell)")
        commands[key] = tuple(argv)
    return Hook(down=commands["down"], up=commands["up"],
                timeout=float(_positive(reader, raw, "timeout", where, default_timeout)))


def _outages(reader: _Reader, raw: dict[str, Any], hooks: Hook | None) -> tuple[tuple[str, Hook], ...]:
    """``outages = { delivery = { down = [...], up = [...] }, ... }``: one hook pair per component.
    A component's timeout defaults to the node's ``hooks.timeout``; ``node`` here is the same as ``hooks``."""
    found: list[tuple[str, Hook]] = []
    for kind, spec in raw.items():
        where = f"node.outages.{kind}"
        if kind not in OUTAGE_KINDS:
            raise reader.fail(where, f"unknown outage kind (expected one of: {', '.join(OUTAGE_KINDS)})")
        if kind == "node" and hooks is not None:
            raise reader.fail(where, "the whole-node outage is already given by node.hooks: give one of them")
        if not isinstance(spec, dict):
            raise reader.fail(where, "expected a table { down = [...], up = [...], timeout = N }")
        hook = _hooks(reader, spec, where, hooks.timeout if hooks else 60.0)
        assert hook is not None
        found.append((kind, hook))
    return tuple(found)


def _account(reader: _Reader, role: str, spec: Any, base: Path, environ: Any) -> Account:
    where = f"accounts.{role}"
    if not isinstance(spec, dict):
        raise reader.fail(where, "expected a table with username and password_env or password_file")
    reader.table(spec, where, _ACCOUNT_KEYS)
    if "password" in spec:
        raise reader.fail(f"{where}.password", "passwords are never written in the target file")
    username = reader.get(spec, "username", where, str)
    token = _secret(reader, spec, where, "token", base, environ)
    password = _secret(reader, spec, where, "password", base, environ)
    if password is None and token is None:
        raise reader.fail(where, "missing password_env or password_file (or token_env / token_file)")
    address = reader.get(spec, "address", where, str, username if "@" in username else None)
    if address is None:
        raise reader.fail(f"{where}.address", "missing (username is not an address)")
    return Account(role=role, username=username, password=password or Secret("", "no password"), address=address,
                   token=token)


def _secret(reader: _Reader, spec: dict[str, Any], where: str, kind: str, base: Path, environ: Any) -> Secret | None:
    """A password or token from ``<kind>_env`` or ``<kind>_file`` (never from the file itself or argv)."""
    env_name = reader.get(spec, f"{kind}_env", where, str, None)
    file_name = reader.get(spec, f"{kind}_file", where, str, None)
    if env_name is not None and file_name is not None:
        raise reader.fail(f"{where}.{kind}_file", f"give {kind}_env or {kind}_file, not both")
    if env_name is not None:
        if env_name not in environ:
            raise reader.fail(f"{where}.{kind}_env", f"environment variable {env_name} is not set")
        return Secret(environ[env_name], f"${env_name}")
    if file_name is None:
        return None
    secret_path = (base / file_name).resolve()
    try:
        return Secret(secret_path.read_text(encoding="utf-8").rstrip("\r\n"), str(secret_path))
    except OSError as exc:
        raise reader.fail(f"{where}.{kind}_file", f"cannot read {secret_path}: {exc.strerror}") from None


def _policy(reader: _Reader, raw: dict[str, Any]) -> Policy:
    reader.table(raw, "policy", _POLICY_FIELDS)
    values: dict[str, Any] = {}
    for key in _POLICY_FIELDS - {"basic_auth"}:
        if key in raw:
            values[key] = _positive(reader, raw, key, "policy", 0)
    basic = reader.get(raw, "basic_auth", "policy", str, "allowed")
    if basic not in BASIC_AUTH:
        raise reader.fail("policy.basic_auth", f"expected one of {', '.join(BASIC_AUTH)}, got {basic!r}")
    values["basic_auth"] = basic
    if "lockout_threshold" in values and not isinstance(values["lockout_threshold"], int):
        raise reader.fail("policy.lockout_threshold", "expected an integer")
    return Policy(**values)


def _dkim_selectors(reader: _Reader, top: dict[str, Any]) -> tuple[str, ...]:
    selectors = reader.get(top, "dkim_selectors", "target", list, [])
    for index, selector in enumerate(selectors):
        if not isinstance(selector, str) or not selector.strip(". ") or " " in selector:
            raise reader.fail("target.dkim_selectors", f"entry {index}: expected a DNS label such as "
                              f'"mail" or "s2024._mta", got {selector!r}')
    return tuple(s.strip(".") for s in selectors)


def _mta_sts_address(reader: _Reader, top: dict[str, Any]) -> tuple[str, int] | None:
    value = reader.get(top, "mta_sts_address", "target", str, None)
    if value is None:
        return None
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise reader.fail("target.mta_sts_address", f'expected "address:port" such as "127.0.0.1:8443" or '
                          f'"[::1]:8443", got {value!r}')
    return host, number


def _dnssec_anchors(reader: _Reader, top: dict[str, Any], base: Path) -> tuple[Path, ...]:
    paths = []
    for index, value in enumerate(reader.get(top, "dnssec_trust_anchors", "target", list, [])):
        path = (base / value).resolve() if isinstance(value, str) else None
        if path is None or not path.is_file():
            raise reader.fail("target.dnssec_trust_anchors",
                              f"entry {index}: expected a file with DS or DNSKEY records, got {value!r}"
                              + (f" (not found: {path})" if path is not None else ""))
        paths.append(path)
    return tuple(paths)


def _waiver(reader: _Reader, index: int, raw: Any) -> Waiver:
    if not isinstance(raw, dict):
        raise reader.fail("waiver", "expected [[waiver]] tables")
    unknown = sorted(set(raw) - _WAIVER_KEYS)
    if unknown:
        raise reader.fail_in("waiver", index, unknown[0],
                             f"unknown key (expected one of: {', '.join(sorted(_WAIVER_KEYS))})")

    def text(key: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise reader.fail_in("waiver", index, key, "missing (expected a non-empty string)"
                                 if value is None else f"expected a non-empty string, got {value!r}")
        return value.strip()

    requirement = text("requirement")
    if requirement not in requirements.CATALOGUE:
        raise reader.fail_in("waiver", index, "requirement",
                             f"unknown requirement {requirement!r} (see `mailconform requirements`)")
    expires = raw.get("expires")
    if not isinstance(expires, date) or isinstance(expires, datetime_type):
        raise reader.fail_in("waiver", index, "expires", f"expected a date such as 2027-06-30, got {expires!r}")
    globs = {}
    for key in ("endpoints", "nodes"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(g, str) and g for g in value):
            raise reader.fail_in("waiver", index, key, f"expected a list of globs such as [\"mx@*\"], got {value!r}")
        globs[key] = tuple(value)
    return Waiver(requirement=requirement, reason=text("reason"), approved_by=text("approved_by"),
                  expires=expires, endpoints=globs["endpoints"], nodes=globs["nodes"])


def _outbound(reader: _Reader, raw: dict[str, Any] | None, base: Path) -> Outbound | None:
    if raw is None:
        return None
    reader.table(raw, "outbound", _OUTBOUND_KEYS)
    domain = reader.get(raw, "domain", "outbound", str, expected='the suite\'s test mail domain, e.g. "outbound.test"')
    if not re.fullmatch(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9-]+\.?", domain.lower()):
        raise reader.fail("outbound.domain", f"expected a DNS domain name, got {domain!r}")
    address = reader.get(raw, "address", "outbound", str, expected="an IPv4 address the lab listens on")
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        raise reader.fail("outbound.address", f"expected an IPv4 address, got {address!r}") from None
    ports = {key: reader.get(raw, key, "outbound", int, default)
             for key, default in (("dns_port", 53), ("mx_port", 25), ("https_port", 443))}
    for key, port in ports.items():
        if not 0 < port < 65536:
            raise reader.fail(f"outbound.{key}", f"port out of range 1-65535: {port!r}")
    send, tlsrpt_send = (_argv(reader, raw, key) for key in ("send", "tlsrpt_send"))
    via = reader.get(raw, "via", "outbound", str, "submission")
    if via not in ("submission", "submissions"):
        raise reader.fail("outbound.via", f'expected "submission" or "submissions", got {via!r}')
    lab_dir = reader.get(raw, "lab_dir", "outbound", str, None)
    return Outbound(domain=domain.lower().rstrip("."), address=str(parsed), dns_port=ports["dns_port"],
                    mx_port=ports["mx_port"], https_port=ports["https_port"], lab_dir=(base / lab_dir).resolve() if lab_dir else None,
                    send=send, via=Service(via), tlsrpt_send=tlsrpt_send)


def _argv(reader: _Reader, raw: dict[str, Any], key: str) -> tuple[str, ...] | None:
    argv = reader.get(raw, key, "outbound", list, None, expected="a command as a list of strings")
    if argv is not None and (not argv or not all(isinstance(a, str) for a in argv)):
        raise reader.fail(f"outbound.{key}", "expected a non-empty list of strings (argv, no shell)")
    return tuple(argv) if argv else None
