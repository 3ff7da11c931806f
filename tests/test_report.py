from __future__ import annotations

import re
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from conformance.report import (
    CaseResult,
    Run,
    compare,
    read_junit,
    read_run,
    statement,
    summary_markdown,
    summary_text,
)
from conformance.report.html import render_html

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


def _case(name: str, verdict: str, endpoint: str = "submission mx1:587 (node1)", level: str = "MUST",
          requirement: str = "STARTTLS-AUTH-01") -> str:
    props = {"verdict": verdict, "requirement": requirement, "level": level, "family": "starttls",
             "endpoint": endpoint, "reason": f"{name} is {verdict} <script>alert(1)</script>"}
    body = "".join(f'<property name="{k}" value="{escape(v, {chr(34): "&quot;"})}"/>' for k, v in props.items())
    return f'<testcase classname="c" name="{name}"><properties>{body}</properties></testcase>'


def _junit(path: Path, *cases: str, facts: str = "") -> Path:
    path.write_text(f'<testsuites><testsuite name="pytest" timestamp="2026-12-01T10:00:00.5+00:00" time="12.34">'
                    f'<properties>{facts}</properties>{"".join(cases)}</testsuite></testsuites>')
    return path


def _runs(tmp_path: Path) -> tuple[Run, Run]:
    previous = _junit(tmp_path / "previous.xml", _case("a", "pass"), _case("b", "fail"), _case("c", "pass"),
                      _case("d", "pass", "imap mx2:143 (node2)"))
    current = _junit(tmp_path / "current.xml", _case("a", "fail"), _case("b", "pass"), _case("c", "inconclusive"),
                     _case("e", "pass", "imap mx3:143 (node3)"),
                     facts='<property name="mailconform.profile" value="sensitive-data"/>'
                           '<property name="mailconform.target" value="staging"/>')
    return read_run(previous), read_run(current)


def test_baseline_names_new_failures_fixed_newly_inconclusive_and_endpoints(tmp_path: Path) -> None:
    previous, current = _runs(tmp_path)
    comparison = compare(previous, current)
    assert [c.name for c in comparison.new_failures] == ["a"] and [c.name for c in comparison.fixed] == ["b"]
    assert [c.name for c in comparison.newly_inconclusive] == ["c"]
    assert comparison.appeared == ("imap@node3",) and comparison.vanished == ("imap@node2",)
    lines = summary_text(current.cases, comparison).splitlines()
    assert lines[:6] == [
        (f"compared with {tmp_path / 'previous.xml'}: 1 new failure(s), 1 fixed, 1 newly inconclusive, "
        "1 endpoint(s) appeared, 1 vanished"),
        "NEW FAIL     STARTTLS-AUTH-01 [MUST] a: a is fail <script>alert(1)</script>",
        "FIXED        STARTTLS-AUTH-01 [MUST] b",
        "NEW INCONCL  STARTTLS-AUTH-01 [MUST] c: c is inconclusive <script>alert(1)</script>",
        "APPEARED     imap@node3",
        "VANISHED     imap@node2"]
    markdown = summary_markdown(current.cases, comparison, current)
    assert markdown.index("1 new failure(s)") < markdown.index("| family |")
    assert "- NEW FAIL: STARTTLS-AUTH-01 [MUST] a:" in markdown
    html = render_html(current, comparison)
    assert html.index('id="baseline-headline"') < html.index('id="matrix"') and "VANISHED" in html


def test_an_unchanged_run_says_nothing_changed(tmp_path: Path) -> None:
    _, current = _runs(tmp_path)
    comparison = compare(current, current)
    assert comparison.unchanged and summary_text(current.cases, comparison).splitlines()[1] == ""


def test_markdown_is_short_verdict_table_and_failing_checks(tmp_path: Path) -> None:
    cases = [_case(f"f{i}", "fail") for i in range(35)] + [_case("p", "pass"), _case("s", "skipped")]
    run = read_run(_junit(tmp_path / "r.xml", *cases, facts='<property name="mailconform.target" value="staging"/>'))
    lines = summary_markdown(run.cases, None, run).splitlines()
    assert lines[0] == "### mailconform: NOT CONFORMANT: 35 result(s) fail the run"
    assert lines[2] == ("target staging · profile baseline, --mail-fail-on must (exit code 1) · suite unknown · "
                        "2026-12-01 10:00:00 UTC · 12.3 s")
    assert "| starttls | 1 | 35 | 0 | 0 | 1 |" in lines
    assert sum(line.startswith("| STARTTLS-AUTH-01 | MUST | `f") for line in lines) == 30
    assert lines[-1] == "5 more in the JUnit file and the HTML report" and len(lines) < 50


@pytest.mark.parametrize(("verdicts", "facts", "headline", "code"), [
    (("pass", "inconclusive"), "", "CONFORMANT", 0),
    (("pass", "inconclusive"), '<property name="mailconform.profile" value="sensitive-data"/>',
     "NOT CONFORMANT: 1 result(s) fail the run", 1),
    (("inconclusive",), "", "NOT PROVEN: no endpoint could be reached", 6),
    (("pass", "fail"), '<property name="mailconform.fail_on" value="never"/>', "CONFORMANT", 0),
])
def test_the_statement_follows_the_profile_and_exit_policy_of_the_run(
        tmp_path: Path, verdicts: tuple[str, ...], facts: str, headline: str, code: int) -> None:
    run = read_run(_junit(tmp_path / "r.xml", *(_case(f"t{i}", v) for i, v in enumerate(verdicts)), facts=facts))
    said = statement(run)
    assert (said.headline, said.exit_code) == (headline, code)


def test_the_html_escapes_what_the_server_said(tmp_path: Path) -> None:
    _, current = _runs(tmp_path)
    html = render_html(current)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!#)""", html)  # nothing outside the file
    assert html.count("<script>") == 1  # the one inline script that opens a linked check
