"""Loading a scenario file: TOML, then the typed format, then the limits.

A bad file gives one line: the file, the key path, the bad value and what was expected
(or, for TOML syntax, the line and column).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

from harness.explain import explain, show
from harness.scenario.limits import check_numbers
from harness.scenario.model import (
    FORMAT_VERSION,
    Scenario,
    ScenarioError,
)


def load_scenario(path: Path) -> Scenario:
    where = str(path)
    try:
        # A UTF-8 byte order mark (some editors write one) is not TOML, but not an error.
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8").removeprefix("\ufeff"))
    except RecursionError:
        raise ScenarioError(f"{where}: nested too deeply (tables or arrays)") from None
    except OSError as exc:
        raise ScenarioError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{where}: TOML syntax error: {exc}") from None
    if "scenario" not in raw:
        raise ScenarioError(
            f"{where}: scenario: missing (a scenario file starts with scenario = {FORMAT_VERSION}, "
            "the format version)"
        )
    version = raw["scenario"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise ScenarioError(
            f"{where}: scenario: got {show(version)}, expected {FORMAT_VERSION} (the format version)"
        )
    system = raw.get("system")
    if isinstance(system, dict) and isinstance(system.get("cwd"), str):
        # A system's working directory is written relative to the scenario file.
        system["cwd"] = str((Path(path).resolve().parent / system["cwd"]).resolve())
    bad_number = check_numbers(raw)
    if bad_number:
        raise ScenarioError(f"{where}: {bad_number}")
    try:
        return msgspec.convert(raw, Scenario)
    except msgspec.ValidationError as exc:
        raise ScenarioError(f"{where}: {explain(exc, raw, Scenario)}") from None
