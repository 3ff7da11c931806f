"""More than one machine: a pytest-xdist worker reached through execnet's socket server (``--tx socket=…``)
in a network namespace of its own, a second "machine" on this one behind a veth pair, takes part in a fleet
run; its verdicts equal those of a local serial run, and the connections to its target come from its address.

Needs root and ``ip netns`` (iproute2); the namespace, its veth pair and the socket server are removed
whatever happens.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.reference.gateway import Gateway
from conformance.report import read_junit
from tests.fleet_proxy import FleetProxy, proxied_target
from tests.suite_runner import SuiteRun, run_suite

pytestmark = pytest.mark.real

SOCKET_PORT = 8888  # inside the namespace: nothing else listens there
SELECTION = ("-k", "not enumeration and not dns")


@dataclass(frozen=True)
class Link:
    namespace: str
    local: tuple[str, str]  # two addresses on this machine's end: one per target
    remote: str             # the worker's machine


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=10)
    if proc.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


@pytest.fixture
def link(request: pytest.FixtureRequest) -> Link:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns) for a second machine in a network namespace")
    tag = secrets.token_hex(3)
    subnet = f"10.231.{secrets.randbelow(250) + 1}"
    namespace, host_end, ns_end = f"mcf-{tag}", f"mcfh{tag}", f"mcfp{tag}"

    def remove() -> None:  # deleting the namespace deletes its veth end, and with it the pair
        subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", host_end], check=False, capture_output=True, timeout=10)

    request.addfinalizer(remove)
    _ip("netns", "add", namespace)
    _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
    _ip("link", "set", ns_end, "netns", namespace)
    for address in (f"{subnet}.1/29", f"{subnet}.3/29"):
        _ip("addr", "add", address, "dev", host_end)
    _ip("link", "set", host_end, "up")
    for args in (("addr", "add", f"{subnet}.2/29", "dev", ns_end), ("link", "set", ns_end, "up"),
                 ("link", "set", "lo", "up")):
        _ip("netns", "exec", namespace, "ip", *args)
    return Link(namespace, (f"{subnet}.1", f"{subnet}.3"), f"{subnet}.2")


@pytest.fixture
def socket_worker(link: Link) -> Iterator[str]:
    """execnet's socket server in the namespace (the recipe's "other machine"); yields the --tx spec."""
    script = Path(__import__("execnet").__file__).parent / "script" / "socketserver.py"
    # run as a path, the script's folder would lead sys.path and its name hide the stdlib's socketserver
    launch = f"import runpy, sys; sys.argv[1:] = [{f'{link.remote}:{SOCKET_PORT}'!r}]; " \
             f"runpy.run_path({str(script)!r}, run_name='__main__')"
    server = subprocess.Popen(["ip", "netns", "exec", link.namespace, sys.executable, "-u", "-c", launch],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = threading.Event()
        threading.Thread(target=_watch, args=(server, ready), daemon=True).start()
        if not ready.wait(30):
            raise RuntimeError("execnet's socket server did not start listening within 30 s")
        yield f"socket={link.remote}:{SOCKET_PORT}"
    finally:
        server.kill()
        server.wait(10)


def _watch(server: subprocess.Popen[str], ready: threading.Event) -> None:
    assert server.stdout is not None
    for line in server.stdout:
        if "Entering Accept loop" in line:
            ready.set()


def _without_domain(path: Path) -> Path:
    """The DNS zone answers on this machine's loopback, which the namespace cannot reach: every worker must
    reach the same targets (and resolver) the same way, so the proof leaves the dns family out."""
    text = re.sub(r"^(domain|resolver|dkim_selectors|dnssec_trust_anchors) = .*\n", "",
                  path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_worker_on_another_machine_gives_the_local_verdicts(link: Link, socket_worker: str,
                                                                tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    with ExitStack() as stack:
        proxy = stack.enter_context(FleetProxy())
        gateways = [stack.enter_context(Gateway(workdir=tmp_path / name)) for name in ("east", "west")]
        shipped, remote_home = tmp_path / "targets", tmp_path / "remote"
        shipped.mkdir()
        remote_home.mkdir()
        targets = [_without_domain(proxied_target(g, proxy, host, shipped / f"{name}.toml", name))
                   for g, host, name in zip(gateways, link.local, ("east", "west"))]
        more = tuple(a for t in targets[1:] for a in ("--mail-target", str(t)))
        local = run_suite(targets[0], tmp_path, extra=(*more, *SELECTION))
        local_opened = dict(proxy.opened)
        proxy.reset()
        junit = tmp_path / "spread.xml"
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "--pyargs", "conformance.checks", "--mail-target", str(targets[0]),
             *more, "--junitxml", str(junit), "-p", "no:cacheprovider", "-o", "addopts=", "-vv",
             # the recipe: the target files go to the other machine with --rsyncdir, into its chdir
             "--tx", f"{socket_worker}//chdir={remote_home}", "--rsyncdir", str(shipped), "--tx", "popen", *SELECTION],
            check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert junit.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
        spread = SuiteRun(proc.returncode, tuple(read_junit(junit)), proc.stdout + proc.stderr)
    assert {c.name: c.verdict for c in spread.cases} == {c.name: c.verdict for c in local.cases}, spread.describe()
    assert len(local.cases) > 300 and local.returncode == 0, local.describe()
    assert dict(proxy.opened) == local_opened, (proxy.opened, local_opened)
    # one target was probed from the other machine alone, the other from this one alone
    remote = {host for (host, client) in proxy.clients if client == link.remote}
    assert len(remote) == 1 and all(client == link.remote for (host, client) in proxy.clients if host in remote), \
        (proxy.clients, spread.output[-2000:])
