"""Loading a scenario file: TOML, then the typed format, then the limits.

A bad file gives one line: the file, the key path, the bad value and what was expected
(or, for TOML syntax, the line and column).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from harness import systems
from harness.explain import explain, show
from harness.scenario.limits import check_numbers
from harness.scenario.model import (
    FORMAT_VERSION,
    FORMAT_VERSIONS,
    Scenario,
    ScenarioError,
)

#: The distq kind's knobs that format 1 kept in [cluster] and format 2 keeps in [system].
MOVED_TO_SYSTEM = (
    "handshake_timeout_s",
    "prefetch",
    "worker_idle_exit_s",
    "worker_handshake_timeout_s",
    "worker_reconnect_s",
    "journal",
    "worker_rpc_timeout_s",
)


def _moved_out_of_cluster(raw: dict[str, Any], version: int) -> str | None:
    """Bring a format-1 table up to the current format in place: the distq kind's knobs go
    from [cluster] to [system]. Returns one line when a knob sits where its format does not
    have it (format 2 in [cluster], or any format for another kind)."""
    raw["scenario"] = FORMAT_VERSION
    cluster, system = raw.get("cluster"), raw.get("system", {})
    if not isinstance(cluster, dict) or not isinstance(system, dict):
        return None  # the format's own validation says what is wrong
    kind = system.get("kind", systems.DEFAULT_KIND)
    for key in [key for key in MOVED_TO_SYSTEM if key in cluster]:
        if kind != systems.DEFAULT_KIND:
            return (
                f"cluster.{key}: not supported by system kind {kind!r} (it is a key of "
                f"kind {systems.DEFAULT_KIND!r}, in its [system] table)"
            )
        if version >= 2:
            return (
                f"cluster.{key}: a key of the {systems.DEFAULT_KIND} system since format 2: "
                f"write it in [system], not [cluster]"
            )
        if key in system:
            return f"cluster.{key} and system.{key} both given (format 1 has it in [cluster] only)"
        system[key] = cluster.pop(key)
        raw["system"] = system
    return None


def _takes_cwd(system: dict[str, Any]) -> bool:
    """Whether the table's kind has a working directory (``cwd``) among its keys."""
    return _takes(system, "cwd")


def _default_cwd(system: dict[str, Any]) -> object:
    """The kind's default ``cwd`` (None: the run directory, unless the scenario says)."""
    kind = systems.get_kind(str(system.get("kind", systems.DEFAULT_KIND)))
    field = next(f for f in msgspec.structs.fields(kind.config) if f.name == "cwd")
    return field.default


def _takes(system: dict[str, Any], key: str) -> bool:
    """Whether the table's kind has ``key`` among its keys."""
    try:
        kind = systems.get_kind(str(system.get("kind", systems.DEFAULT_KIND)))
    except systems.SystemConfigError:
        return False  # the format's own validation says what is wrong
    return key in kind.config.__struct_fields__


def _read_jobs_file(raw: dict[str, Any], scenario_path: Path) -> str | None:
    """``[jobs] file``: its lines become ``extra`` jobs (the file's path made absolute);
    what is wrong with it, in one line, or None."""
    jobs = raw.get("jobs")
    if not isinstance(jobs, dict) or "file" not in jobs:
        return None
    if not isinstance(jobs["file"], str):
        return f"jobs.file: got {show(jobs['file'])}, expected a path"
    for key in ("count", "args", "delay_s", "extra"):
        if key in jobs:
            return f"jobs.{key}: give the jobs either in jobs.file or by count and args, not both"
    path = (scenario_path.resolve().parent / jobs["file"]).resolve()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return f"jobs.file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
    task, extra = jobs.get("task", "square"), []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except ValueError as exc:
            return f"jobs.file: {path} line {number}: not JSON ({exc})"
        if isinstance(job, list):
            job = {"args": job}
        unknown = sorted(set(job) - {"args", "task"}) if isinstance(job, dict) else []
        if unknown:
            return f"jobs.file: {path} line {number}: unknown key {unknown[0]!r} (args, task)"
        if not isinstance(job, dict) or not isinstance(job.get("args", []), list):
            return (
                f"jobs.file: {path} line {number}: expected the args (an array) or {{args, task?}}"
            )
        extra.append({"task": job.get("task", task), "args": job.get("args", [])})
    jobs.update(file=str(path), count=0, extra=extra)
    return None


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
    if type(version) is not int or version not in FORMAT_VERSIONS:
        known = " or ".join(map(str, FORMAT_VERSIONS))
        raise ScenarioError(
            f"{where}: scenario: got {show(version)}, expected {known} (the format version)"
        )
    system = raw.get("system")
    if (
        isinstance(system, dict)
        and _takes_cwd(system)
        and ("cwd" in system or _default_cwd(system) is not None)
        and isinstance(system.get("cwd", "."), str)
    ):
        # A system's working directory is relative to the scenario file (by default, its own,
        # unless the kind's default is none: its processes run in the run directory).
        here = Path(path).resolve().parent
        system["cwd"] = str((here / system.get("cwd", ".")).resolve())
        if _takes(system, "scenario_dir") and isinstance(system.get("scenario_dir", ""), str):
            given = system.get("scenario_dir") or "."  # relative to the file, like cwd
            system["scenario_dir"] = str((here / given).resolve())
    bad_jobs = _read_jobs_file(raw, Path(path))
    if bad_jobs:
        raise ScenarioError(f"{where}: {bad_jobs}")
    bad_number = check_numbers(raw)
    if bad_number:
        raise ScenarioError(f"{where}: {bad_number}")
    moved = _moved_out_of_cluster(raw, version)
    if moved:
        raise ScenarioError(f"{where}: {moved}")
    try:
        return msgspec.convert(raw, Scenario)
    except msgspec.ValidationError as exc:
        raise ScenarioError(f"{where}: {explain(exc, raw, Scenario)}") from None
