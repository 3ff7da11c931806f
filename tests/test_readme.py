"""The README stays true to the code: the family table matches the catalogue, every file it names exists,
and the example target file says what the README says about the policy keys they share."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from conformance import requirements

pytestmark = pytest.mark.unit

CHECKOUT = Path(__file__).resolve().parent.parent
README = (CHECKOUT / "README.md").read_text()
EXAMPLE_TARGET = CHECKOUT / "fixtures" / "targets" / "two-node-staging.toml"
# `STARTTLS-OFFER/AUTH/IMAP/RECAP-01` and `STARTTLS-RESET/INJECT/PREAUTH`: one prefix, several names.
ALTERNATIVES = re.compile(r"([A-Z]+-)([A-Z]+(?:/[A-Z]+)+)(-\d+)?")


def _patterns(token: str) -> list[str]:
    grouped = ALTERNATIVES.fullmatch(token)
    if not grouped:
        return [token]
    prefix, names, suffix = grouped.groups()
    return [f"{prefix}{name}{suffix or '-*'}" for name in names.split("/")]


def _family_rows() -> dict[str, set[str]]:
    rows = {}
    for family in {r.family for r in requirements.CATALOGUE.values()}:
        row = re.search(rf"^\| {family} \|.*\| (.*) \|$", README, re.MULTILINE)
        assert row, f"README's family table has no row for {family}"
        patterns = [p for token in re.findall(r"`([^`]+)`", row.group(1)) for p in _patterns(token)]
        rows[family] = {rid for rid in requirements.CATALOGUE if any(fnmatchcase(rid, p) for p in patterns)}
    return rows


def test_family_table_names_each_requirement_under_its_catalogue_family() -> None:
    rows = _family_rows()
    for family, named in rows.items():
        in_catalogue = {r.id for r in requirements.CATALOGUE.values() if r.family == family}
        assert named == in_catalogue, f"README row {family!r}: {sorted(named ^ in_catalogue)}"


def test_files_the_readme_names_exist_in_the_repository() -> None:
    links = re.findall(r"\]\(([^)#:]+)\)", README)  # relative Markdown links
    paths = [p for p in re.findall(r"`([^`\s<>]*/[^`\s<>]*)`", README)
             if not p.startswith("/") and re.search(r"^\.|\.\w+$", p)]  # files, not /etc or ID groups
    outside_or_missing = sorted(
        p for p in {*links, *paths}
        if not (CHECKOUT / p).resolve().is_relative_to(CHECKOUT) or not (CHECKOUT / p).exists())
    assert not outside_or_missing


def test_example_target_comments_agree_with_the_readme() -> None:
    example = EXAMPLE_TARGET.read_text()
    tomllib.loads(example)
    for key in ("lockout_window", "lockout_duration", "lockout_threshold"):
        readme_comment = re.search(rf"^{key} = \S+\s+# (.*)$", README, re.MULTILINE)
        example_comment = re.search(rf"^{key} = \S+\s+# (.*)$", example, re.MULTILINE)
        assert readme_comment and example_comment, key
        assert example_comment.group(1) == readme_comment.group(1), key


def test_every_key_a_target_file_takes_is_in_the_readme() -> None:
    from conformance import target

    keys = (target._TARGET_KEYS | target._NODE_KEYS | target._ACCOUNT_KEYS | target._HOOK_KEYS
            | target._POLICY_FIELDS | target._WAIVER_KEYS | target._OUTBOUND_KEYS)
    as_key = [rf"(^|[\s{{,`]){k}\s*=|\[[\w.]*\.{k}[.\]]" for k in sorted(keys)]
    undocumented = [k for k, pattern in zip(sorted(keys), as_key, strict=True)
                    if not re.search(pattern, README, re.MULTILINE)]
    assert not undocumented


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    """`.ci/run` is the README's second command, word for word, so CI proves what a new user runs."""
    block = README.split("```sh", 1)[1].split("```", 1)[0]
    readme_command = block.strip().splitlines()[-1]
    ci_script = (CHECKOUT / ".ci" / "run").read_text()
    (ci_command,) = re.findall(r'^TEST_COMMAND="(.*)"$', ci_script, flags=re.MULTILINE)
    assert ci_command == readme_command
