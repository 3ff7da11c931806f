"""Shared test helpers: a minimal valid target file writer, the test PKI and a TLS server context."""

from __future__ import annotations

import ssl
from pathlib import Path

import certgen
import pytest
from certgen import Pki, make_pki

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


@pytest.fixture(scope="session")
def pki() -> Pki:
    """One test CA and its leaves for every probe test that needs a real certificate chain."""
    return make_pki()


@pytest.fixture(scope="session")
def anchor(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test CA as a trust-anchor file, as a target's trust_anchors would name it."""
    return pki.root.write(tmp_path_factory.mktemp("anchor"), "root")[0]


@pytest.fixture(scope="session")
def context(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a localhost leaf issued by the test CA."""
    return certgen.server_context(pki, pki.leaf("localhost"), tmp_path_factory.mktemp("server"))
