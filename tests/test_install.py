"""A user's first run, as a user installs it: `pip install .` (not editable) into a fresh venv, then
`mailconform demo`. The output must carry no warning the user cannot act on (issue 20, item 4)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.reference

CHECKOUT = Path(__file__).resolve().parent.parent
# Bounds for a hung pip or demo only; nothing is asserted about how long either takes.
INSTALL_TIMEOUT = 600
DEMO_TIMEOUT = 600
SKIPPED_WHEN_COPYING = (".git", "build", "*.egg-info", "__pycache__", ".*_cache", ".tox", "mailconform-report.xml")
OFFLINE = re.compile(r"NewConnectionError|Temporary failure in name resolution|No matching distribution found")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv's bin directory with mailconform installed from a copy of this checkout's sources."""
    venv = tmp_path_factory.mktemp("venv-nonedit")
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], check=False, capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a venv here: {made.stderr.strip() or made.stdout.strip()}")
    # pip builds in the source tree (build/, *.egg-info): a copy keeps the checkout clean and stale
    # build output out of the wheel.
    sources = tmp_path_factory.mktemp("sources") / "mailconform"
    shutil.copytree(CHECKOUT, sources, ignore=shutil.ignore_patterns(*SKIPPED_WHEN_COPYING))
    bin_dir = venv / "bin"
    pip = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          str(sources)], check=False, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if pip.returncode != 0 and OFFLINE.search(pip.stderr):
        pytest.skip(f"pip cannot reach a package index: {pip.stderr.strip().splitlines()[-1]}")
    assert pip.returncode == 0, pip.stderr
    return bin_dir


def test_demo_from_a_regular_install_shows_no_warning(installed: Path, tmp_path: Path) -> None:
    demo = subprocess.run([str(installed / "mailconform"), "demo"], check=False, cwd=tmp_path,
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT)
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output
    assert "passed" in output
    assert not re.search(r"warning", output, re.IGNORECASE), output
    assert (tmp_path / "mailconform-report.xml").exists()
