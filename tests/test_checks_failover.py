"""The failover checks as users run them (pytest in a subprocess, JUnit read back): opt-in skips, missing
hooks, a failing hook stopping the family, evidence; and the parity comparison on its own."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.checks.test_parity import Posture, weaker_than
from conformance.probes.tls.wire import TlsVersion
from conformance.probes.wire.config import CleartextAuth
from conformance.reference.gateway import Gateway
from conformance.report import CaseResult, read_junit
from tests.interrupt import python_module

CHECKS = Path(__file__).parent.parent / "conformance" / "checks"


def posture(*versions: TlsVersion, suites: tuple[str, ...] = ("A",), starttls: bool | None = True,
            cleartext: CleartextAuth = CleartextAuth.REFUSED_FOR_TLS, verified: bool = True) -> Posture:
    return Posture(frozenset(versions), frozenset(suites), starttls, cleartext, None, verified)


@pytest.mark.unit
def test_parity_names_what_the_weaker_node_accepts() -> None:
    strong = posture(TlsVersion.TLS1_2, TlsVersion.TLS1_3)
    weak = posture(TlsVersion.TLS1_0, TlsVersion.TLS1_2, TlsVersion.TLS1_3, suites=("A", "RC4"))
    found = weaker_than(weak, strong, "mx@node1 (mx1.example.test)")
    assert found[0] == "accepts TLS 1.0, mx@node1 (mx1.example.test) does not"
    assert "accepts suite(s) RC4" in found[1]
    assert weaker_than(strong, weak, "mx@node2") == []  # the strong node is not the weaker one


@pytest.mark.unit
def test_parity_missing_modern_versions_and_features_are_weaker() -> None:
    best = posture(TlsVersion.TLS1_2, TlsVersion.TLS1_3)
    older = posture(TlsVersion.TLS1_2, starttls=False, cleartext=CleartextAuth.CREDENTIALS_CHECKED, verified=False)
    found = " | ".join(weaker_than(older, best, "other"))
    assert "does not accept TLS 1.3, other does" in found
    assert "does not offer STARTTLS" in found and "credentials-checked" in found and "does not verify" in found
    assert weaker_than(best, best, "other") == []


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(workdir=tmp_path_factory.mktemp("gw")) as gw:
        yield gw
        gw.check_errors()


def run_checks(target: Path, tmp: Path, *args: str) -> tuple[list[CaseResult], str]:
    junit = tmp / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(CHECKS / "test_failover.py"),
                           str(CHECKS / "test_parity.py"), "--mail-target", str(target), "--junitxml", str(junit),
                           "-p", "no:cacheprovider", "-q", "-o", "addopts=", "-o", "testpaths=", *args],
                          check=False, capture_output=True, text=True, timeout=300, cwd=tmp)
    assert junit.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return read_junit(junit), proc.stdout + proc.stderr


def by_requirement(cases: list[CaseResult], requirement: str) -> list[CaseResult]:
    return [c for c in cases if c.requirement == requirement]


def properties(tmp: Path, name: str) -> dict[str, str]:
    """The JUnit <properties> of one test case (evidence.* among them)."""
    case = next(c for c in ET.parse(tmp / "junit.xml").getroot().iter("testcase") if c.get("name") == name)
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


@pytest.mark.reference
def test_active_checks_skip_without_the_opt_in(gateway: Gateway, tmp_path: Path) -> None:
    gateway.reset()
    cases, output = run_checks(gateway.write_target(tmp_path / "t.toml"), tmp_path)
    active = [c for c in cases if c.requirement not in ("FAIL-REDUNDANT-01", "FAIL-PARITY-01")]
    assert active and all(c.verdict == "skipped" and "--mail-allow-disruption" in c.reason for c in active)
    passive = [c for c in cases if c not in active]
    assert passive and all(c.verdict == "pass" for c in passive), output[-2000:]
    assert not gateway.outages.is_down("node1", "node")  # type: ignore[arg-type]


@pytest.mark.reference
def test_good_gateway_passes_with_evidence(gateway: Gateway, tmp_path: Path) -> None:
    gateway.reset()
    cases, output = run_checks(gateway.write_target(tmp_path / "t.toml"), tmp_path, "--mail-allow-disruption")
    assert cases and all(c.verdict == "pass" for c in cases), output[-3000:]
    counts = properties(tmp_path, by_requirement(cases, "FAIL-NOLOSS-01")[0].name).get("evidence.counts", "")
    assert re.search(r"sent 6, accepted 6, deferred \d, delivered 6, lost 0, duplicated 0", counts), counts
    temp = properties(tmp_path, by_requirement(cases, "FAIL-TEMP-01")[0].name)
    assert "DATA 451" in temp.get("evidence.replies", "") and "down for" in temp.get("evidence.outage", "")
    redundant = properties(tmp_path, by_requirement(cases, "FAIL-REDUNDANT-01")[0].name)
    assert "mx1.example.test" in redundant.get("evidence.mx", "")


@pytest.mark.reference
def test_missing_hooks_skip_with_the_component_named(gateway: Gateway, tmp_path: Path) -> None:
    gateway.reset()
    text = gateway.write_target(tmp_path / "full.toml").read_text()
    stripped = re.sub(r"\[node\.outages\.\w+\]\ndown = .*\nup = .*\ntimeout = \d+\n", "", text)
    stripped = re.sub(r"hooks = \{.*\}\n", "", stripped)
    target = tmp_path / "t.toml"
    target.write_text(stripped)
    cases, output = run_checks(target, tmp_path, "--mail-allow-disruption", "-k", "test_delivery_outage")
    assert cases and all(c.verdict == "skipped" for c in cases), output[-2000:]
    assert "target has no outage hooks for delivery (node node1)" in cases[0].reason


@pytest.mark.reference
def test_a_failing_hook_stops_the_family(gateway: Gateway, tmp_path: Path) -> None:
    gateway.reset()
    text = gateway.write_target(tmp_path / "full.toml").read_text()
    broken = f'down = ["{sys.executable}", "-c", "print(\'backend refused\'); raise SystemExit(3)"]'
    lines = text.splitlines()
    index = lines.index("[node.outages.delivery]")  # node1's delivery hook: the first one
    lines[index + 1] = broken
    target = tmp_path / "t.toml"
    target.write_text("\n".join(lines) + "\n")
    cases, output = run_checks(target, tmp_path, "--mail-allow-disruption", "-k", "test_delivery_outage or auth")
    first = by_requirement(cases, "FAIL-TEMP-01")
    assert first and all(c.verdict == "fail" for c in first), output[-2000:]
    assert "failover family stopped: down hook for delivery on node1" in first[0].reason
    assert "exit 3" in first[0].reason and "backend refused" in first[0].reason
    later = by_requirement(cases, "FAIL-AUTHDOWN-01")
    assert later and all(c.verdict == "fail" and "failover family stopped" in c.reason for c in later)
    assert not gateway.outages.is_down("node1", "delivery")  # type: ignore[arg-type]  # `up` ran anyway


@pytest.mark.reference
def test_ctrl_c_during_an_outage_brings_the_node_back(gateway: Gateway, tmp_path: Path) -> None:
    """SIGINT to a real suite run while node1's delivery is down: the run stops, and `up` has run."""
    gateway.reset()
    text = gateway.write_target(tmp_path / "full.toml").read_text()
    lines = text.splitlines()
    index = lines.index("[node.outages.delivery]")
    down = json.loads(lines[index + 1].removeprefix("down = "))
    # the real down command, then a hook that keeps running: the run is interrupted inside the outage
    slow = [sys.executable, "-c", f"import subprocess, time; subprocess.run({down!r}, check=True); time.sleep(30)"]
    lines[index + 1] = f"down = {json.dumps(slow)}"
    target = tmp_path / "t.toml"
    target.write_text("\n".join(lines) + "\n")
    child = subprocess.Popen(python_module("pytest", str(CHECKS / "test_failover.py"), "--mail-target",
                                           str(target), "--mail-allow-disruption", "-k", "test_delivery_outage",
                                           "-p", "no:cacheprovider", "-q", "-o", "addopts=", "-o", "testpaths="),
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not gateway.outages.is_down("node1", "delivery"):  # type: ignore[arg-type]
            assert child.poll() is None, child.communicate()[0].decode()[-2000:]
            assert time.monotonic() < deadline, "the run never took node1's delivery down"
            time.sleep(0.05)  # polling the gateway's state: the run gives no event to wait on
        child.send_signal(signal.SIGINT)
        output = child.communicate(timeout=60)[0].decode()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "KeyboardInterrupt" in output or "Interrupted" in output, output[-2000:]
    assert not gateway.outages.is_down("node1", "delivery"), "`up` did not run after Ctrl-C"  # type: ignore[arg-type]
