"""A small real run for the report tests: the starttls family against the reference gateway with a flaw on,
through `mailconform run` as a user types it, so the JUnit file carries real properties and transcripts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from conformance.reference.gateway import Gateway

CHECKOUT = Path(__file__).resolve().parent.parent


def mailconform(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, **env} if env else None)


def starttls_run(workdir: Path, flaws: Sequence[str], *options: str | Path, junitxml: str = "report.xml",
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`mailconform run TARGET -k test_starttls ...` against the reference with ``flaws``."""
    with Gateway(tuple(flaws), workdir=workdir) as gateway:
        target = gateway.write_target(workdir / "target.toml")
        proc = mailconform("run", target, "--junitxml", workdir / junitxml, "-k", "test_starttls",
                           *options, cwd=workdir, env=env)
        gateway.check_errors()
    return proc
