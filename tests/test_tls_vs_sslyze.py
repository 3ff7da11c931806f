"""Our raw scan and sslyze agree on the same endpoint: the same versions and the same suites per version.

sslyze pins its own cryptography, so it lives in its own venv: set MAILCONFORM_SSLYZE to its
executable (default /tmp/sslyze-venv/bin/sslyze, as benchmarks/tls_scan.py explains); without it the
test is skipped with that reason. The endpoint is the benchmark's OpenSSL SMTP STARTTLS server with
legacy versions and CBC suites switched on, so there is something to disagree about.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.reference

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "tls_scan.py"


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


def test_same_versions_and_suites_as_sslyze() -> None:
    sslyze = _sslyze()
    bench = _benchmark()
    with bench.smtp_server() as port:
        _, scan = bench.run_ours(port)
        _, theirs = bench.run_sslyze(sslyze, port)
    ours = {version: {s.name for s in suites} for version, suites in scan.suites.items()}
    assert ours, "our scan found no TLS at all"
    assert bench.compare(ours, theirs) == []
