"""The CI scripts, run against stand-ins for sudo, dpkg-query and id that record what they are asked and
change nothing on the machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

INSTALL_SCRIPT = Path(__file__).resolve().parent.parent / "ci" / "install-real-servers.sh"
# sudo only records its command line and swallows its input (what `tee` would write), so nothing runs
# as root.
STAND_INS = {
    "sudo": 'echo "$*" >> "$LOG"; cat >/dev/null',
    "dpkg-query": "exit 1",
    "id": "echo 1000",
}


def _stand_ins(directory: Path) -> Path:
    directory.mkdir()
    for name, body in STAND_INS.items():
        path = directory / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return directory


def test_install_real_servers_waits_for_the_package_managers_lock(tmp_path: Path) -> None:
    log = tmp_path / "sudo.log"
    bin_dir = _stand_ins(tmp_path / "bin")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log)}
    done = subprocess.run(["bash", str(INSTALL_SCRIPT)], env=env, check=False, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    apt_calls = [line for line in log.read_text().splitlines() if line.startswith("apt-get")]
    assert [call.split()[3] for call in apt_calls] == ["update", "install"]
    assert all(call.startswith("apt-get -o DPkg::Lock::Timeout=600 ") for call in apt_calls)
