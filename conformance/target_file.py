"""Target files as `mailconform init` writes them: commented, the packaged example the one source of the notes.

A key the example explains carries the same note in every target file the suite writes (the one of
`mailconform serve --write-target` too). Read by hand, line by line, because tomllib drops comments and
the suite's target files hold one key or table header a line.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

EXAMPLE = "example-target.toml"
NOTE_COLUMN = 40

Place = tuple[str, str | None]   # (dotted table, key); the key is None on a table header


def example() -> str:
    """The commented example target file `mailconform init` writes."""
    return files("conformance").joinpath(EXAMPLE).read_text("utf-8")


def write(path: Path, text: str, *, replace: bool = True) -> Path:
    """Write ``text`` as a target file with the example's notes. Raises FileExistsError when ``path``
    exists and ``replace`` is False."""
    with path.open("w" if replace else "x", encoding="utf-8") as out:
        out.write(commented(text))
    return path


def commented(text: str) -> str:
    """``text`` with the example's notes on the keys and tables it shares with the example: each note
    once, on the first line it fits that has no comment, unless ``text`` carries it already."""
    notes = _notes(example())
    lines = text.splitlines()
    said = {c for c in (_split(line)[1] for line in lines) if c} | {line.strip() for line in lines}
    out: list[str] = []
    table = ""
    for line in lines:
        code, comment = _split(line)
        if not code:
            out.append(line)
            continue
        place = _place(code, table)
        table = place[0]
        block = [b for b in notes.above.get(place, []) if b.strip() not in said]
        note = notes.trailing.get(place)
        out += block
        said |= {b.strip() for b in block}
        if comment is None and note is not None and note not in said:
            line = f"{code.ljust(NOTE_COLUMN)}  # {note}"
            said.add(note)
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


@dataclass
class _Notes:
    trailing: dict[Place, str] = field(default_factory=dict)
    above: dict[Place, list[str]] = field(default_factory=dict)


def _notes(text: str) -> _Notes:
    """The example's notes by place; its first comment block speaks of the example as a whole: left out."""
    notes, table, block, started = _Notes(), "", list[str](), False
    for line in text.splitlines():
        code, comment = _split(line)
        if not code:
            block = block + [line] if comment is not None and started else []
            continue
        started = True
        place = _place(code, table)
        table = place[0]
        if comment:
            notes.trailing.setdefault(place, comment)
        if block:
            notes.above.setdefault(place, block)
        block = []
    return notes


def _split(line: str) -> tuple[str, str | None]:
    """The code and the trailing comment of one line; a '#' inside a string stays code."""
    at = line.find("#")
    while at >= 0:
        code = line[:at].rstrip()
        if not code.strip() or _valid(code):
            return code, line[at + 1:].strip()
        at = line.find("#", at + 1)
    return line.rstrip(), None


def _valid(code: str) -> bool:
    try:
        tomllib.loads(code.strip())
    except tomllib.TOMLDecodeError:
        return False
    return True


def _place(code: str, table: str) -> Place:
    stripped = code.strip()
    if stripped.startswith("["):
        return stripped.strip("[]").strip(), None
    return table, stripped.split("=", 1)[0].strip()
