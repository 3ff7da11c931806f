"""testssl.sh beside the suite: on the same SMTP STARTTLS endpoints, its vulnerability and posture findings
and the suite's verdicts agree, and every place where they cannot is named below with its reason.

testssl.sh is Debian's package (ci/install-real-servers.sh installs it); without it the module is skipped
with that reason. Marked ``real``: testssl.sh forks openssl hundreds of times and reads the server with
fixed timeouts, so under a loaded ``-n 2`` run it could report a timeout as a finding; the serial tier is
also where CI installs it. One testssl.sh run per endpoint, limited to the groups compared, all at once.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.probes.tls.scan import TlsScan
from conformance.probes.tls.wire import TlsVersion
from conformance.probes.wire.outcome import Attempt
from conformance.reference.gateway import Gateway
from conformance.target import Endpoint, Service
from tests.tls_peers import agrees, scan, suite_verdict, tlslite_oracle

pytestmark = pytest.mark.real

# Only the groups compared: protocols, server preference, and the vulnerabilities one by one (-U would add
# BEAST, LUCKY13, SWEET32, ... which the suite judges as suites, not as findings of their own).
TESTSSL_ARGS = ("--quiet", "--warnings", "batch", "--color", "0", "--nodns", "min", "--connect-timeout", "10",
                "--openssl-timeout", "10", "--starttls", "smtp", "-p", "-P", "-H", "-I", "-BB", "-R", "-Z", "-J")
TESTSSL_VERSIONS = {"SSLv2": TlsVersion.SSL2, "SSLv3": TlsVersion.SSL3, "TLS1": TlsVersion.TLS1_0,
                    "TLS1_1": TlsVersion.TLS1_1, "TLS1_2": TlsVersion.TLS1_2, "TLS1_3": TlsVersion.TLS1_3}
# testssl.sh finding ID -> the requirement whose check judges the same thing
COMPARED = {"heartbleed": "TLS-HEARTBLEED-01", "CCS": "TLS-CCS-01", "ROBOT": "TLS-ROBOT-01",
            "secure_renego": "TLS-RENEG-01", "secure_client_renego": "TLS-RENEG-02",
            "fallback_SCSV": "TLS-FALLBACK-01", "cipher_order": "TLS-PREF-01",
            "LOGJAM-common_primes": "TLS-KEX-01"}
# Where testssl.sh cannot tell (severity WARN), and why: (endpoint, finding ID) -> reason.
TESTSSL_CANNOT_TELL = {
    ("weak gateway", "fallback_SCSV"): "asyncio's TLS server refuses the SCSV hello by closing the connection "
    "without the inappropriate_fallback alert, and testssl.sh greps s_client's output for that alert",
    ("tlslite oracle", "fallback_SCSV"): "testssl.sh's own OpenSSL aborts on tlslite-ng's RFC 8446 4.1.3 downgrade "
    "sentinel in the ServerHello random before it can see whether the server honours the SCSV",
}
# What each endpoint is for: the findings both sides must report as failing (so no comparison is vacuous).
EXPECTED_FAILURES = {
    "good gateway": set(),
    "weak gateway": {"TLS-VER-01", "TLS-PREF-01", "TLS-KEX-01"},
    "tlslite oracle": {"TLS-VER-01", "TLS-ROBOT-01"},
}


@dataclass(frozen=True)
class Finding:
    severity: str
    text: str

    @property
    def verdict(self) -> str | None:
        """testssl.sh's OK is a pass, a rated severity a finding; WARN and INFO say it could not judge."""
        if self.severity == "OK":
            return "pass"
        return "fail" if self.severity in ("LOW", "MEDIUM", "HIGH", "CRITICAL") else None


@dataclass(frozen=True)
class SideBySide:
    endpoint: Endpoint
    ours: Attempt[TlsScan]
    theirs: dict[str, Finding]
    seconds: float


def _testssl() -> str:
    found = shutil.which("testssl") or shutil.which("testssl.sh")
    if found is None:
        pytest.skip("testssl.sh not installed (apt-get install --no-install-recommends testssl.sh, "
                    "or bash ci/install-real-servers.sh)")
    return found


def _run_testssl(testssl: str, port: int, workdir: Path) -> tuple[dict[str, Finding], float]:
    out = workdir / f"testssl-{port}.json"
    started = time.monotonic()
    done = subprocess.run([testssl, *TESTSSL_ARGS, "--jsonfile", str(out), f"localhost:{port}"],
                          check=False, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    assert out.exists(), f"testssl.sh wrote no JSON ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}"
    return {e["id"]: Finding(e["severity"], e["finding"]) for e in json.loads(out.read_text())}, elapsed


@contextlib.contextmanager
def _endpoints() -> Iterator[dict[str, Endpoint]]:
    with contextlib.ExitStack() as stack:
        good = stack.enter_context(Gateway())
        # the three flaws whose findings testssl.sh reports: TLS 1.0/1.1, client's order, Oakley group 2
        weak = stack.enter_context(Gateway(("tls1_0", "client_cipher_preference", "weak_dh_params")))
        oracle = stack.enter_context(tlslite_oracle())
        yield {"good gateway": Endpoint(Service.MX, "node1", "localhost", good.ports[("node1", "mx")], "127.0.0.1"),
               "weak gateway": Endpoint(Service.MX, "node1", "localhost", weak.ports[("node1", "mx")], "127.0.0.1"),
               "tlslite oracle": oracle.endpoint}


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SideBySide]]:
    testssl = _testssl()
    workdir = tmp_path_factory.mktemp("testssl")
    with _endpoints() as endpoints, ThreadPoolExecutor(len(endpoints)) as pool:
        runs = {name: pool.submit(_run_testssl, testssl, e.port, workdir) for name, e in endpoints.items()}
        ours = {name: scan(e) for name, e in endpoints.items()}  # while testssl.sh runs
        yield {name: SideBySide(e, ours[name], *runs[name].result()) for name, e in endpoints.items()}


def _peer_verdicts(seen: SideBySide) -> dict[str, Finding]:
    """testssl.sh's findings keyed by the requirement judging the same thing; its protocol lines become
    TLS-VER-01 (an offered version below TLS 1.2 is a finding)."""
    found = {requirement: seen.theirs[f] for f, requirement in COMPARED.items() if f in seen.theirs}
    legacy = [key for key, v in TESTSSL_VERSIONS.items() if v < TlsVersion.TLS1_2 and _offered(seen.theirs[key])]
    found["TLS-VER-01"] = Finding("HIGH", f"{', '.join(legacy)} offered") if legacy else Finding("OK", "none offered")
    return found


def _offered(finding: Finding) -> bool:
    return finding.text.startswith("offered")  # "not offered + downgraded to weaker protocol" is not


def _differences(name: str, seen: SideBySide) -> list[str]:
    assert seen.ours.result is not None, f"{name}: our scan failed: {seen.ours.reason}"
    offered = {v for key, v in TESTSSL_VERSIONS.items() if _offered(seen.theirs[key])}
    differences = []
    if offered != set(seen.ours.result.accepted_versions):
        differences.append(f"versions: ours {sorted(map(str, seen.ours.result.accepted_versions))} vs testssl.sh "
                           f"{sorted(map(str, offered))}")
    finding_ids = {requirement: f for f, requirement in COMPARED.items()}
    for requirement, finding in _peer_verdicts(seen).items():
        ours = suite_verdict(requirement, seen.endpoint, seen.ours)
        if ours is None:
            continue  # not in the catalogue yet: compared from the day its check is merged
        if finding.verdict is None:
            key = (name, finding_ids.get(requirement, requirement))
            assert key in TESTSSL_CANNOT_TELL, f"{name}: testssl.sh could not judge {key[1]}: {finding}"
            continue
        if not agrees(ours, finding.verdict):
            differences.append(f"{requirement}: ours {ours}, testssl.sh {finding.severity} {finding.text!r}")
    return differences


@pytest.mark.parametrize("name", list(EXPECTED_FAILURES))
def test_same_findings_as_testssl(name: str, side_by_side: dict[str, SideBySide]) -> None:
    seen = side_by_side[name]
    assert _differences(name, seen) == []
    failing = {r for r, finding in _peer_verdicts(seen).items() if finding.verdict == "fail"}
    assert failing == EXPECTED_FAILURES[name], f"{name}: testssl.sh's findings changed: {seen.theirs}"


def test_cannot_tell_list_is_current(side_by_side: dict[str, SideBySide]) -> None:
    """An explanation whose disagreement has gone (testssl.sh now judges it) is removed, not kept."""
    stale = [key for key in TESTSSL_CANNOT_TELL
             if side_by_side[key[0]].theirs.get(key[1], Finding("OK", "")).verdict is not None]
    assert stale == []

