"""`mailconform run` and `mailconform report` write the same reports from the same JUnit file, put the
comparison with the previous run at the top, stay quiet unless asked (-v), and take each option in one
spelling only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report_runs import mailconform, starttls_run

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A good run with -v, then a quiet run with a flaw compared against it, writing every report."""
    workdir = tmp_path_factory.mktemp("reports")
    good = starttls_run(workdir, [], "-v", junitxml="good.xml")
    assert good.returncode == 0, good.stdout[-2000:] + good.stderr[-2000:]
    flawed = starttls_run(workdir, ["auth_before_tls"], "--baseline", workdir / "good.xml", "--html",
                          workdir / "run.html", "--markdown", workdir / "run.md", junitxml="flawed.xml",
                          env={"GITHUB_STEP_SUMMARY": str(workdir / "step-summary.md")})
    assert flawed.returncode == 1, flawed.stdout[-2000:] + flawed.stderr[-2000:]
    return workdir, flawed.stdout, good.stdout


def test_report_from_the_junit_file_is_the_report_the_run_wrote(runs: tuple[Path, str, str]) -> None:
    workdir, _, _ = runs
    again = mailconform("report", workdir / "flawed.xml", "--baseline", workdir / "good.xml", "--html",
                        workdir / "again.html", "--markdown", workdir / "again.md", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert (workdir / "again.html").read_text() == (workdir / "run.html").read_text()
    assert (workdir / "again.md").read_text() == (workdir / "run.md").read_text()
    assert (workdir / "step-summary.md").read_text() == (workdir / "run.md").read_text()


def test_the_run_opens_its_summary_with_what_changed_since_the_baseline(runs: tuple[Path, str, str]) -> None:
    workdir, output, _ = runs
    summary = output[output.index("\ncompared with "):].splitlines()[1:4]
    assert summary[0] == (f"compared with {workdir / 'good.xml'}: 2 new failure(s), 0 fixed, "
                          "0 newly inconclusive, 0 endpoint(s) appeared, 0 vanished")
    assert all(line.startswith("NEW FAIL     STARTTLS-AUTH-01 [MUST] test_no_auth_before_tls[submission@node")
               for line in summary[1:3])
    markdown = (workdir / "run.md").read_text()
    assert markdown.startswith("### mailconform: NOT CONFORMANT: 2 result(s) fail the run\n")
    assert "**compared with" in markdown


def test_the_run_is_quiet_unless_asked(runs: tuple[Path, str, str]) -> None:
    _, quiet, verbose = runs
    assert "AssertionError" not in quiet and "where " not in quiet and "def test_" not in quiet
    assert "FAIL         STARTTLS-AUTH-01" in quiet and "PASSED" not in quiet  # the reason is in the summary
    assert "test_no_auth_before_tls[submission@node1] PASSED" in verbose
