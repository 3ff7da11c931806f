"""Our raw scan and sslyze agree on the same endpoints: the same versions and suites per version, and the same
vulnerability and posture findings as the suite's checks judge them.

sslyze pins its own cryptography, so it lives in its own venv: set MAILCONFORM_SSLYZE to its
executable (default /tmp/sslyze-venv/bin/sslyze, as benchmarks/tls_scan.py explains); without it the
module is skipped with that reason. Endpoints: the benchmark's OpenSSL SMTP STARTTLS server with legacy
versions and CBC suites switched on, so there is something to disagree about; the tests' tlslite-ng ROBOT
oracle that ignores TLS_FALLBACK_SCSV; ``openssl s_server -early_data`` for 0-RTT. sslyze is pointed at
``localhost:PORT``: given 127.0.0.1 it sends the address as SNI, which some stacks reject. Its commands are
named, as its default scan leaves early data and resumption out.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tls_servers import openssl_s_server

from conformance.probes.tls.scan import TlsScan
from conformance.probes.wire.outcome import Attempt
from conformance.target import Endpoint, Service
from tests.tls_peers import agrees, scan, suite_verdict, tlslite_oracle

pytestmark = pytest.mark.reference

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "tls_scan.py"
VERSIONS = ("--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3")
POSTURE = ("--heartbleed", "--openssl_ccs", "--robot", "--reneg", "--fallback", "--elliptic_curves",
           "--early_data", "--resum", "--compression", "--ems")
# s_server takes one connection at a time, which sslyze's concurrent resumption attempts do not survive
EARLY_DATA_ONLY = ("--early_data",)
# Explained disagreements: (endpoint, requirement) -> why.
SSLYZE_DIFFERS = {
    ("s_server 0-RTT", "TLS-0RTT-01"): "sslyze reports no early data where the server's tickets announce 16384 bytes "
    "and `openssl s_client -sess_in -early_data` gets 'Early data was accepted' (test_0rtt_is_real_on_s_server)",
}


def _sslyze() -> str:
    candidates = [os.environ.get("MAILCONFORM_SSLYZE"), "/tmp/sslyze-venv/bin/sslyze", shutil.which("sslyze")]
    found = next((c for c in candidates if c and Path(c).exists()), None)
    if found is None:
        pytest.skip("sslyze not installed (python -m venv /tmp/sslyze-venv && /tmp/sslyze-venv/bin/pip install "
                    "sslyze, or set MAILCONFORM_SSLYZE)")
    return found


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tls_scan_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def _run_sslyze(sslyze: str, endpoint: Endpoint, commands: tuple[str, ...]) -> dict[str, Any]:
    starttls = ("--starttls", "smtp") if endpoint.service in (Service.MX, Service.SUBMISSION) else ()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sslyze.json"
        done = subprocess.run([sslyze, "--quiet", *commands, *starttls, f"localhost:{endpoint.port}",
                               f"--json_out={out}"], check=False, capture_output=True, text=True, timeout=600)
        assert out.exists(), f"sslyze failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}"
        report = json.loads(out.read_text())
    server = report["server_scan_results"][0]
    assert server["scan_status"] == "COMPLETED", server
    return {name: attempt["result"] for name, attempt in server["scan_result"].items()
            if attempt and attempt["status"] == "COMPLETED"}


@dataclass(frozen=True)
class SideBySide:
    endpoint: Endpoint
    ours: Attempt[TlsScan]
    theirs: dict[str, Any]

    @property
    def scan(self) -> TlsScan:
        assert self.ours.result is not None, f"our scan failed: {self.ours.reason}"
        return self.ours.result


@pytest.fixture(scope="module")
def side_by_side() -> Iterator[dict[str, SideBySide]]:
    sslyze = _sslyze()
    with (_benchmark().smtp_server() as port, openssl_s_server("-early_data", "-no_anti_replay") as early,
          tlslite_oracle() as oracle):
        legacy = Endpoint(Service.SUBMISSION, "bench", "localhost", port, "127.0.0.1")
        yield {"openssl legacy": SideBySide(legacy, scan(legacy), _run_sslyze(sslyze, legacy, VERSIONS + POSTURE)),
               "tlslite oracle": SideBySide(oracle.endpoint, scan(oracle.endpoint),
                                            _run_sslyze(sslyze, oracle.endpoint, VERSIONS + POSTURE)),
               "s_server 0-RTT": SideBySide(early.endpoint, scan(early.endpoint),
                                            _run_sslyze(sslyze, early.endpoint, EARLY_DATA_ONLY))}


def _verdicts(theirs: dict[str, Any]) -> dict[str, str | None]:
    """sslyze's findings as the requirement judging the same thing would rate them (None: it could not tell)."""
    def rated(bad: bool) -> str:
        return "fail" if bad else "pass"

    found: dict[str, str | None] = {}
    if "heartbleed" in theirs:
        found["TLS-HEARTBLEED-01"] = rated(theirs["heartbleed"]["is_vulnerable_to_heartbleed"])
    if "openssl_ccs_injection" in theirs:
        found["TLS-CCS-01"] = rated(theirs["openssl_ccs_injection"]["is_vulnerable_to_ccs_injection"])
    if "robot" in theirs:
        robot = theirs["robot"]["robot_result"]
        found["TLS-ROBOT-01"] = ("fail" if robot.startswith("VULNERABLE") else
                                 "pass" if robot.startswith("NOT_VULNERABLE") else None)
    if "session_renegotiation" in theirs:
        reneg = theirs["session_renegotiation"]
        found["TLS-RENEG-01"] = rated(not reneg["supports_secure_renegotiation"])
        found["TLS-RENEG-02"] = rated(reneg["is_vulnerable_to_client_renegotiation_dos"])  # once catalogued
    if "tls_fallback_scsv" in theirs:
        found["TLS-FALLBACK-01"] = rated(not theirs["tls_fallback_scsv"]["supports_fallback_scsv"])
    if "tls_compression" in theirs:
        found["TLS-COMP-01"] = rated(theirs["tls_compression"]["supports_compression"])
    if "tls_extended_master_secret" in theirs:
        found["TLS-EMS-01"] = rated(not theirs["tls_extended_master_secret"]["supports_ems_extension"])
    if "tls_1_3_early_data" in theirs:
        found["TLS-0RTT-01"] = rated(theirs["tls_1_3_early_data"]["supports_early_data"])
    return found


def _differences(name: str, seen: SideBySide) -> list[str]:
    differences = []
    for requirement, theirs in _verdicts(seen.theirs).items():
        ours = suite_verdict(requirement, seen.endpoint, seen.ours)
        if ours is None:
            continue  # not in the catalogue yet: compared from the day its check is merged
        assert theirs is not None, f"{name}: sslyze could not tell {requirement}: {seen.theirs}"
        if not agrees(ours, theirs) and (name, requirement) not in SSLYZE_DIFFERS:
            differences.append(f"{requirement}: ours {ours}, sslyze {theirs}")
    return differences


@pytest.mark.parametrize("name", ["openssl legacy", "tlslite oracle"])
def test_same_versions_and_suites_as_sslyze(name: str, side_by_side: dict[str, SideBySide]) -> None:
    """On tlslite-ng too: the benchmark's "known disagreement" there came from 127.0.0.1 sent as SNI."""
    bench = _benchmark()
    seen = side_by_side[name]
    ours = {version: {s.name for s in suites} for version, suites in seen.scan.suites.items()}
    assert ours, "our scan found no TLS at all"
    theirs = {}
    for version, key in bench.SSLYZE_KEYS.items():
        accepted = (seen.theirs.get(key) or {}).get("accepted_cipher_suites", [])
        if accepted:
            theirs[version] = {entry["cipher_suite"]["name"] for entry in accepted}
    assert bench.compare(ours, theirs) == []


@pytest.mark.parametrize(("name", "failing"), [
    ("openssl legacy", set()),
    ("tlslite oracle", {"TLS-ROBOT-01", "TLS-FALLBACK-01"}),
    ("s_server 0-RTT", {"TLS-0RTT-01"}),
])
def test_same_findings_as_sslyze(name: str, failing: set[str], side_by_side: dict[str, SideBySide]) -> None:
    """``failing``: what each endpoint is for, on our side, so that no comparison is vacuous."""
    seen = side_by_side[name]
    assert _differences(name, seen) == []
    ours = {r for r in _verdicts(seen.theirs) if suite_verdict(r, seen.endpoint, seen.ours) == "fail"}
    assert ours == failing


@pytest.mark.parametrize("name", ["openssl legacy", "tlslite oracle"])
def test_same_curves_as_sslyze(name: str, side_by_side: dict[str, SideBySide]) -> None:
    """sslyze tries the curves its OpenSSL knows: compared on those."""
    seen = side_by_side[name]
    curves = seen.theirs["elliptic_curves"]
    tried = {c["name"].lower() for c in curves["supported_curves"] + curves["rejected_curves"]}
    assert {str(g) for g in seen.scan.groups} & tried == {c["name"].lower() for c in curves["supported_curves"]}


def test_same_resumption_as_sslyze(side_by_side: dict[str, SideBySide]) -> None:
    """Reported, not judged: sslyze resumes TLS 1.2 sessions by ticket, the suite reads the TLS 1.3
    NewSessionTickets; both come from the one OpenSSL ticket setting, so both say yes or both say no."""
    seen = side_by_side["openssl legacy"]
    tickets = seen.theirs["session_resumption"]["tls_ticket_resumption_result"] == "FULLY_SUPPORTED"
    assert seen.scan.session_tickets is not None, seen.scan.inconclusive
    assert bool(seen.scan.session_tickets.tickets) == tickets


def test_0rtt_is_real_on_s_server(side_by_side: dict[str, SideBySide], tmp_path: Path) -> None:
    """The explained 0-RTT disagreement: OpenSSL's own client has early data accepted where sslyze says no."""
    seen = side_by_side["s_server 0-RTT"]
    assert not seen.theirs["tls_1_3_early_data"]["supports_early_data"], "sslyze sees 0-RTT now: drop SSLYZE_DIFFERS"
    assert suite_verdict("TLS-0RTT-01", seen.endpoint, seen.ours) == "fail"
    session, early = tmp_path / "session.pem", tmp_path / "early.txt"
    early.write_text("NOOP\r\n")
    connect = ["openssl", "s_client", "-connect", f"127.0.0.1:{seen.endpoint.port}", "-servername", "localhost",
               "-tls1_3"]
    _save_ticket([*connect, "-sess_out", str(session)])
    resumed = subprocess.run([*connect, "-sess_in", str(session), "-early_data", str(early)], input="",
                             capture_output=True, text=True, timeout=10, check=False)
    assert "Early data was accepted" in resumed.stdout, resumed.stdout[-2000:]


def _save_ticket(command: list[str]) -> None:
    """Run s_client until the server's post-handshake ticket has come (``-msg`` shows it; -sess_out has saved
    it by the time s_client looks at stdin again), then close stdin: closed at once, s_client would hang up
    before the ticket came."""
    client = subprocess.Popen([*command, "-msg"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    timer = threading.Timer(10, client.kill)  # a bound, not a wait: a server that sends no ticket fails below
    timer.start()
    try:
        assert client.stdout is not None and client.stdin is not None
        arrived = any("NewSessionTicket" in line for line in client.stdout)
        client.stdin.close()
        client.wait(10)
    finally:
        timer.cancel()
        client.kill()
    assert arrived, "s_server sent no TLS 1.3 session ticket"
