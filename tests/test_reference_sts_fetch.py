"""The reference sender's MTA-STS policy reading (RFC 8461 §3.2, §4.1): what it allows is what it delivers to."""

from __future__ import annotations

import pytest

from conformance.reference.sts_fetch import StsPolicy, parse_policy

pytestmark = pytest.mark.unit


def test_a_policy_is_read_with_its_mode_and_mx_patterns() -> None:
    policy = parse_policy("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.backup.test\r\n"
                          "max_age: 86400\r\n")
    assert policy == StsPolicy("enforce", ("mx1.example.test", "*.backup.test"))


@pytest.mark.parametrize(("host", "allowed"), [
    ("mx1.example.test.", True), ("MX1.Example.Test", True), ("mx2.example.test", False),
    ("a.backup.test", True), ("a.b.backup.test", False), ("backup.test", False),
])
def test_mx_patterns_match_one_label_wildcards_only(host: str, allowed: bool) -> None:
    assert StsPolicy("enforce", ("mx1.example.test", "*.backup.test")).allows(host) is allowed


@pytest.mark.parametrize("text", ["mode: enforce\nmx: a.test\n", "version: STSv2\nmode: enforce\n", "<html>"])
def test_anything_but_an_stsv1_policy_is_no_policy(text: str) -> None:
    assert parse_policy(text) is None
