"""Shared test helpers: a minimal valid target file writer."""

from __future__ import annotations

from pathlib import Path

import pytest

MINIMAL_TARGET = """
[target]
name = "unit"
timeout = 2

[[node]]
name = "node1"
host = "mx1.example.test"
address = "127.0.0.1"
services = {{ mx = {port}, submission = {port} }}

[accounts.test]
username = "alice@example.test"
password_file = "alice.pw"
"""

SECRET = "s3cret-Horse-Battery"


@pytest.fixture
def minimal_target(tmp_path: Path) -> Path:
    (tmp_path / "alice.pw").write_text(SECRET + "\n")
    path = tmp_path / "target.toml"
    path.write_text(MINIMAL_TARGET.format(port=1))
    return path
