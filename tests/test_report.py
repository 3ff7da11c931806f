from __future__ import annotations

from pathlib import Path

import pytest

from conformance.report import CaseResult, read_junit, summary_markdown, summary_text

pytestmark = pytest.mark.unit

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
 <testcase classname="c" name="test_a[mx@node1]"><properties>
  <property name="verdict" value="pass"/><property name="requirement" value="STARTTLS-OFFER-01"/>
  <property name="level" value="MUST"/><property name="family" value="starttls"/></properties></testcase>
 <testcase classname="c" name="test_b[submission@node1]"><properties>
  <property name="verdict" value="fail"/><property name="requirement" value="STARTTLS-AUTH-01"/>
  <property name="level" value="MUST"/><property name="family" value="starttls"/>
  <property name="reason" value="AUTH PLAIN advertised before TLS"/></properties>
  <failure message="x">trace</failure></testcase>
 <testcase classname="c" name="test_c"><properties>
  <property name="verdict" value="inconclusive"/><property name="requirement" value="TLS-IMPLICIT-01"/>
  <property name="level" value="MUST"/><property name="family" value="tls"/>
  <property name="reason" value="421 4.7.0 Too many connections"/></properties>
  <skipped message="INCONCLUSIVE: 421"/></testcase>
</testsuite></testsuites>"""


def test_summary_counts_and_reasons(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_text(JUNIT)
    results = read_junit(path)
    text = summary_text(results)
    assert "starttls" in text and "tls" in text
    assert "FAIL         STARTTLS-AUTH-01 [MUST] test_b[submission@node1]: AUTH PLAIN advertised before TLS" in text
    assert "INCONCLUSIVE TLS-IMPLICIT-01 [MUST] test_c: 421 4.7.0 Too many connections" in text
    assert "| STARTTLS-AUTH-01 | MUST | `test_b[submission@node1]` | fail |" in summary_markdown(results)


def _skipped(name: str, reason: str) -> CaseResult:
    return CaseResult(name, "skipped", "LOCK-THRESHOLD-01", "MUST", "lockout", "", reason)


def test_summary_says_how_many_skips_it_left_out() -> None:
    results = [_skipped(f"test_{i}_{n}", f"reason {i}") for i in range(7) for n in range(7 - i)]
    lines = summary_text(results).splitlines()
    assert [line for line in lines if line.startswith("skipped")][-2:] == [
        "skipped      3 check(s): reason 4",
        "skipped      3 more check(s) for 2 other reason(s), in the JUnit file",
    ]


def test_summary_with_few_skip_reasons_leaves_nothing_out() -> None:
    text = summary_text([_skipped("test_a", "no lockout account"), _skipped("test_b", "no hooks")])
    assert "more check(s)" not in text
