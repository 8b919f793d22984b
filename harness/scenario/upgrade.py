"""Bring a scenario file up to the current format in place, keeping its comments and layout.

Format 1 kept the distq kind's own knobs in ``[cluster]``; format 2 keeps them in
``[system]``. The loader still reads format 1; ``python -m harness upgrade FILE...`` rewrites
the file, and refuses (changing nothing) unless the new text loads to the very same scenario.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from harness.scenario.loader import MOVED_TO_SYSTEM, load_scenario
from harness.scenario.model import FORMAT_VERSION, ScenarioError

__all__ = ["UpgradeError", "upgrade_file", "upgrade_text"]

_HEADER = re.compile(r"^\s*\[")
_VERSION = re.compile(r"^(\s*(?:scenario|\"scenario\"|'scenario')\s*=\s*)1\b")


class UpgradeError(ValueError):
    """The file cannot be upgraded in place; the message says why and what to do."""


def _section(lines: list[str], name: str) -> tuple[int, int] | None:
    """(header line, end) of the ``[name]`` table, end exclusive; None when absent."""
    header = re.compile(rf"^\s*\[\s*{re.escape(name)}\s*\]\s*(#.*)?$")
    for number, line in enumerate(lines):
        if header.match(line):
            end = next(
                (n for n in range(number + 1, len(lines)) if _HEADER.match(lines[n])), len(lines)
            )
            return number, end
    return None


def upgrade_text(text: str) -> str:
    """The text of a format-1 scenario written in the current format; the same text when
    it already is. Raises UpgradeError when a knob is not where a plain edit can move it."""
    raw = tomllib.loads(text)
    if raw.get("scenario") == FORMAT_VERSION:
        return text
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines):
        if _HEADER.match(line):
            break
        if _VERSION.match(line):
            lines[number] = _VERSION.sub(rf"\g<1>{FORMAT_VERSION}", line)
            break
    else:
        raise UpgradeError("no 'scenario = 1' line at the top level")
    cluster_table = raw.get("cluster", {})
    keys = [key for key in MOVED_TO_SYSTEM if key in cluster_table]
    if not keys:
        return "".join(lines)
    cluster = _section(lines, "cluster")
    if cluster is None:
        raise UpgradeError("[cluster] is not a table of its own: move its keys by hand")
    start, end = cluster
    moved: list[str] = []
    for number in range(end - 1, start, -1):
        key = re.match(r"^\s*([A-Za-z_]+)\s*=", lines[number])
        if key and key.group(1) in keys:
            moved.insert(0, lines.pop(number).lstrip())
    if len(moved) != len(keys):
        raise UpgradeError(f"cannot find {', '.join(keys)} as plain lines of [cluster]")
    if moved and not moved[-1].endswith("\n"):
        moved[-1] += "\n"
    system = _section(lines, "system")
    if system is not None:
        lines[system[0] + 1 : system[0] + 1] = moved
    else:
        at = _section(lines, "cluster")
        assert at is not None
        insert = at[1]
        block = ["[system]\n", *moved]
        if insert < len(lines) or (lines and lines[-1].strip()):
            block.append("\n")
        if insert > 0 and lines[insert - 1].strip():
            block.insert(0, "\n")
        lines[insert:insert] = block
    return "".join(lines)


def upgrade_file(path: Path) -> bool:
    """Rewrite ``path`` in the current format; False when it already was. Raises
    UpgradeError (the file untouched) when the new text would not be the same scenario."""
    text = path.read_text(encoding="utf-8")
    new = upgrade_text(text)
    if new == text:
        return False
    before = load_scenario(path)
    # Beside the file (a [system] cwd is relative to it), under a name no collector takes.
    trial = path.with_name(path.name + ".upgrading")
    try:
        trial.write_text(new, encoding="utf-8")
        after = load_scenario(trial)
    except ScenarioError as exc:
        raise UpgradeError(f"the upgraded text does not load: {exc}") from None
    finally:
        trial.unlink(missing_ok=True)
    if after != before:
        raise UpgradeError("the upgraded text is not the same scenario; upgrade it by hand")
    trial.write_text(new, encoding="utf-8")
    trial.replace(path)  # atomic: the file is either the old text or the new
    return True
