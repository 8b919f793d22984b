"""Writing a scenario back as TOML: a generated or shrunk failure becomes a file."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import msgspec

from harness.scenario.model import (
    Scenario,
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON escapes are valid TOML escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(
            f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None
        )
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _table(lines: list[str], header: str, table: dict[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if v is not None and not _is_table_array(v)}
    lines += ["", header, *(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items())]
    for key, value in table.items():
        if _is_table_array(value):
            for item in value:
                _table(lines, f"[[{header.strip('[]')}.{key}]]", item)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


#: The [system] keys that hold a folder, written relative to the file (as they are read).
_FOLDER_KEYS = ("cwd", "scenario_dir")


#: The modifiers of a ``when`` table at their defaults: left out of a written file.
_WHEN_DEFAULTS: dict[str, Any] = {"hold": False, "wait_s": 0.0}


def dump_scenario(
    scenario: Scenario, header_comment: str = "", relative_to: Path | None = None
) -> str:
    """The scenario as a TOML file that ``load_scenario`` reads back to an equal value;
    with ``relative_to`` (the file's folder), its system's folders relative to it."""
    raw: dict[str, Any] = msgspec.to_builtins(scenario)
    system = raw.get("system", {})
    for key in _FOLDER_KEYS:
        value = system.get(key)
        if relative_to is not None and isinstance(value, str) and os.path.isabs(value):
            system[key] = os.path.relpath(value, relative_to.resolve())
    lines = [f"# {line}" for line in header_comment.splitlines()]
    for key in ("scenario", "name", "description", "seed", "slow"):
        lines.append(f"{key} = {_toml_value(raw[key])}")
    for key in ("cluster", "jobs", "expect", "system", "network"):
        _table(lines, f"[{key}]", raw[key])
    for fault in raw["faults"]:
        when = {k: v for k, v in fault.pop("when").items() if _WHEN_DEFAULTS.get(k, ...) != v}
        lines += ["", "[[faults]]", f"when = {_toml_value(when)}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in fault.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_regression(scenario: Scenario, path: Path, why: str) -> Path:
    """Write a failing scenario as a file anyone can rerun with ``pytest PATH``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    named = msgspec.structs.replace(
        scenario,
        name=path.stem,
        description=f"found by a property test: {why}"[:500],
    )
    header = f"Found by a property test. Rerun with:\n  pytest {path}\nor\n  python -m harness run {path} --repeat 10"
    path.write_text(dump_scenario(named, header), encoding="utf-8")
    return path
