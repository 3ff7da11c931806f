from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance import cli, requirements
from conformance.reference.flaws import FLAWS

pytestmark = pytest.mark.unit


def test_requirements_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["requirements"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["ID", "LEVEL", "FAMILY"]
    for requirement_id in requirements.CATALOGUE:
        assert requirement_id in out


def test_requirements_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["requirements", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in rows} == set(requirements.CATALOGUE)
    assert all(r["level"] in ("MUST", "SHOULD") and r["source"] for r in rows)


def test_every_requirement_cites_a_source_and_both_profiles_exist() -> None:
    for req in requirements.CATALOGUE.values():
        assert req.source and req.title and req.family
        assert set(req.profiles) <= set(requirements.PROFILES)


def test_run_with_bad_target_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[target]\nname = 3\n[[node]]\nhost='h'\nservices={mx=25}\n")
    assert cli.main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mailconform: {bad}:2: key 'target.name': expected a string, got int 3"


@pytest.mark.parametrize("profile", requirements.PROFILES)
def test_requirements_json_carries_the_level_in_force_for_the_profile(
        profile: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["requirements", "--format", "json", "--mail-profile", profile]) == 0
    rows = json.loads(capsys.readouterr().out)
    expected = {r.id: str(r.level_in(profile)) for r in requirements.CATALOGUE.values() if r.level_in(profile)}
    assert {r["id"]: r["level"] for r in rows} == expected
    assert any(r["level"] != str(requirements.get(r["id"]).level) for r in rows) == (profile != "baseline")


@pytest.mark.parametrize(("content", "problem"), [
    (None, ": No such file or directory"),
    ("", ":1: not XML: no element found at column 1"),
    ("hello\n", ":1: not XML: syntax error at column 1"),
    ("<html><body/></html>", ": not a JUnit XML file: the root element is <html>, not <testsuites> or <testsuite>"),
])
def test_report_on_a_bad_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          content: str | None, problem: str) -> None:
    path = tmp_path / "report.xml"
    if content is not None:
        path.write_text(content)
    assert cli.main(["report", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [f"mailconform: {path}{problem}"]


def test_report_on_a_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"mailconform: {tmp_path}: Is a directory"


@pytest.mark.parametrize("columns", [80, 120])
def test_requirements_table_fits_the_terminal(columns: int, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert cli.main(["requirements"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= columns
    text = " ".join(" ".join(lines).split())
    for req in requirements.CATALOGUE.values():
        assert req.id in text and req.title in text and req.source in text


def test_requirements_table_shows_the_level_in_force_for_the_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["requirements", "--mail-profile", "sensitive-data"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()
            if line[:1].strip()}
    assert requirements.get("TLS-SUITE-02").level == requirements.Level.SHOULD
    assert rows["TLS-SUITE-02"] == "MUST"


def test_list_flaws_rows_are_aligned(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--list-flaws"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert {row.split()[0] for row in rows} == set(FLAWS)
    family_columns = {row.index(" " + FLAWS[row.split()[0]].family + " ") for row in rows}
    breaks_columns = {row.index(FLAWS[row.split()[0]].breaks) for row in rows}
    assert len(family_columns) == 1 and len(breaks_columns) == 1


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    listing = subprocess.run(f"{sys.executable} -m conformance.cli requirements | head -1", shell=True,
                             check=True, capture_output=True, text=True, timeout=60,
                             cwd=Path(cli.__file__).resolve().parent.parent)
    assert listing.stdout.split()[:3] == ["ID", "LEVEL", "FAMILY"]
    assert listing.stderr == ""


def test_run_help_lists_what_it_passes_to_pytest(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "pytest --pyargs conformance.checks --mail-target TARGET --junitxml JUNITXML" in out
    assert " ".join(cli.PYTEST_OPTIONS[:4]) in out
    for option in ("--mail-profile", "--mail-fail-on", "--mail-allow-lockout", "--mail-allow-disruption",
                   "--mail-timeout", "--html", "--markdown", "--baseline"):
        assert f"\n  {option}" in out


@pytest.mark.parametrize(("options", "error"), [
    (["--profile", "sensitive-data"], "--profile is spelled --mail-profile (the same for run, demo and pytest)"),
    (["--fail-on=never"], "--fail-on is spelled --mail-fail-on (the same for run, demo and pytest)"),
    (["--mail-profile", "baseline", "--mail-profile=sensitive-data"],
     "--mail-profile given twice with different values ('baseline', 'sensitive-data'): give it once"),
    (["--html", "a.html", "--html", "b.html"], "--html given twice: give it once"),
    (["--mail-target", "other.toml"],
     "--mail-target given twice with different values ('{target}', 'other.toml'): give it once"),
])
def test_each_option_has_one_spelling_and_one_value(minimal_target: Path, capsys: pytest.CaptureFixture[str],
                                                    options: list[str], error: str) -> None:
    assert cli.main(["run", str(minimal_target), *options]) == 2
    assert capsys.readouterr().err.strip() == "mailconform: " + error.format(target=minimal_target)


def test_demo_takes_the_same_spellings(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--profile", "baseline"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mailconform: --profile is spelled --mail-profile (the same for run, demo and pytest)")


def test_init_writes_the_commented_example_target(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init"]) == 0
    example = Path(__file__).resolve().parent.parent / "fixtures" / "targets" / "two-node-staging.toml"
    assert (tmp_path / "target.toml").read_text() == example.read_text()  # one example, two places
    assert cli.main(["init"]) == 2
    assert capsys.readouterr().err.strip() == "mailconform: target.toml: exists already; give another file name"


# notes of the example target that `init` writes, each on a key or table the reference gateway's target has too
SHARED_NOTES = ("# its MX set is resolved", "# seconds, every connect and read", "# the name its certificate must carry",
                "# Failover hooks: argv lists", "# Per-component outages", "# dedicated, throw-away",
                "# consecutive failures after which the account locks", "# no outage the suite causes lasts")


@pytest.fixture
def served_target(tmp_path: Path) -> Iterator[Path]:
    """`mailconform serve --write-target` running in its own process; stopped with SIGTERM."""
    target = tmp_path / "served.toml"
    serve = subprocess.Popen([sys.executable, "-m", "conformance.cli", "serve", "--write-target", str(target)],
                             stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in serve.stdout or ()], daemon=True).start()
    try:
        while "serving" not in (line := lines.get(timeout=60)):
            assert serve.poll() is None, f"serve ended early ({line})"
        yield target
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)


def test_serve_writes_the_commented_target_init_writes(served_target: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init"]) == 0
    for text in ((tmp_path / "target.toml").read_text(), served_target.read_text()):
        assert [note for note in SHARED_NOTES if note not in text] == []
    run = subprocess.run([sys.executable, "-m", "conformance.cli", "run", str(served_target), "-k",
                          "test_starttls_offered", "--junitxml", str(tmp_path / "report.xml")],
                         check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
