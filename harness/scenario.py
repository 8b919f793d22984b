"""Scenario files: the TOML format, its validation and JSON Schema, and running one.

A file is a scenario when its top level says ``scenario = 1`` (the format version); any
other TOML is not ours and is left alone. Every field has a default and its unit in its
name; unknown keys are rejected. A bad file gives one line: the file, the key path, the
bad value and what was expected (or, for TOML syntax, the line and column).
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from harness.faults import ACTIONS, NETWORK_ACTIONS, Fault, Trigger
from harness.run import RunResult, RunSpec, run
from harness.toxics import Toxic

__all__ = [
    "CHECK_NAMES",
    "FORMAT_VERSION",
    "Scenario",
    "ScenarioError",
    "ScenarioOutcome",
    "dump_scenario",
    "is_scenario_file",
    "load_scenario",
    "run_scenario",
    "scenario_schema",
    "to_run_spec",
    "write_regression",
]

FORMAT_VERSION = 1

CheckName = Literal[
    "exactly_once",
    "correct_values",
    "batch_barrier",
    "auth",
    "liveness",
    "fault_coverage",
    "clean_exits",
]
CHECK_NAMES: tuple[str, ...] = typing.get_args(CheckName)
ToxicKind = Literal[
    "latency", "bandwidth", "slicer", "limit_data", "reset", "blackhole", "slow_close"
]
Flow = Literal["upstream", "downstream"]
ActionName = Literal[
    "kill",
    "terminate",
    "pause",
    "resume",
    "restart",
    "add_worker",
    "kill_master",
    "restart_master",
    "wrong_key_worker",
    "empty_key_worker",
    "idle_sockets",
    "garbage",
    "bad_handshakes",
    "add_toxic",
    "remove_toxic",
    "partition",
    "heal",
]
assert set(typing.get_args(ActionName)) == set(ACTIONS), "scenario actions out of sync with faults"

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
JobId = Annotated[int, msgspec.Meta(ge=0)]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message is one line for a person."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class ClusterSpec(_Strict, frozen=True):
    workers: Annotated[
        int, msgspec.Meta(ge=0, le=32, description="workers started at the beginning")
    ] = 2
    lease_timeout_s: Annotated[
        float, msgspec.Meta(gt=0, description="a lease not heartbeaten for this long expires")
    ] = 10.0
    time_limit_s: (
        Annotated[float, msgspec.Meta(gt=0, description="kill a job running longer than this")]
        | None
    ) = None
    max_attempts: Annotated[
        int, msgspec.Meta(ge=1, description="failed attempts before a job is dead")
    ] = 3
    batch_size: (
        Annotated[int, msgspec.Meta(ge=1, description="release jobs in batches of this size")]
        | None
    ) = None
    handshake_timeout_s: PositiveFloat = 5.0
    prefetch: (
        Annotated[int, msgspec.Meta(ge=1, description="most jobs one lease may hold")] | None
    ) = None
    worker_idle_exit_s: PositiveFloat | None = None
    worker_handshake_timeout_s: Annotated[
        float, msgspec.Meta(gt=0, description="a worker gives up on an unanswered handshake")
    ] = 5.0
    worker_reconnect_s: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            le=3600,
            description="a worker that loses its connection tries this long to rejoin "
            "(0: it exits 5 at once)",
        ),
    ] = 0.0


class ExtraJob(_Strict, frozen=True):
    task: str
    args: list[Any] = []
    time_limit_s: PositiveFloat | None = None
    count: Annotated[int, msgspec.Meta(ge=1)] = 1


class JobsSpec(_Strict, frozen=True):
    task: Annotated[str, msgspec.Meta(description="built-in task or module:function")] = "square"
    count: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 20
    args: list[Any] | None = None
    delay_s: NonNegativeFloat = 0.0
    time_limit_s: PositiveFloat | None = None
    extra: list[ExtraJob] = []

    def __post_init__(self) -> None:
        if self.delay_s and self.task != "square":
            raise ValueError(f"delay_s applies to the square task only, not {self.task!r}")
        if self.delay_s and self.args is not None:
            raise ValueError("give either args or delay_s, not both")


class WhenSpec(_Strict, frozen=True):
    after_s: NonNegativeFloat | None = None
    job_leased: JobId | None = None
    job_started: JobId | None = None
    job_completed: JobId | None = None
    results: Annotated[int, msgspec.Meta(ge=1)] | None = None
    batch_closed: JobId | None = None
    workers_joined: Annotated[int, msgspec.Meta(ge=1)] | None = None
    auth_rejected: Annotated[int, msgspec.Meta(ge=1)] | None = None
    attempt: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                description="with job_leased or job_started: fire on this attempt of the job "
                "(default: the first seen)",
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        kinds = [name for name in self.__struct_fields__ if name != "attempt"]
        given = [name for name in kinds if getattr(self, name) is not None]
        if len(given) != 1:
            got = ", ".join(given) or "none"
            raise ValueError(f"needs exactly one trigger of {', '.join(kinds)} (got {got})")
        self.trigger()  # attempt with a trigger it does not apply to: one line, from Trigger

    def trigger(self) -> Trigger:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not None and name != "attempt":
                return Trigger(name, float(value), self.attempt)
        raise AssertionError("validated in __post_init__")


NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class ToxicSpec(_Strict, frozen=True):
    """A network toxic on a worker's fault proxy (see harness.toxics.Toxic)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$")]
    kind: ToxicKind
    direction: Literal["upstream", "downstream", "both"] = "both"
    probability: Annotated[
        float, msgspec.Meta(ge=0, le=1, description="per connection, from the seed")
    ] = 1.0
    latency_ms: NonNegative = 0.0
    jitter_ms: NonNegative = 0.0
    rate_kbps: NonNegative = 0.0
    chunk_bytes: Annotated[int, msgspec.Meta(ge=0)] = 0
    chunk_delay_ms: NonNegative = 0.0
    limit_bytes: Annotated[int, msgspec.Meta(ge=0)] = 0
    delay_ms: NonNegative = 0.0
    after_frames: (
        Annotated[int, msgspec.Meta(ge=0, description="act from this frame on")] | None
    ) = None
    frames_direction: Flow | None = None
    frames_matching: (
        Annotated[str, msgspec.Meta(description="count only requests naming this method")] | None
    ) = None
    workers: list[str] = []  # in [[network.toxics]]: the workers it applies to; empty: all

    def __post_init__(self) -> None:
        self.to_toxic()  # the proxy's own validation, as a one-line error

    def to_toxic(self) -> Toxic:
        fields = msgspec.structs.asdict(self)
        fields.pop("workers")
        matching = fields.pop("frames_matching")
        return Toxic(**fields, frames_matching=None if matching is None else matching.encode())


class NetworkSpec(_Strict, frozen=True):
    proxy: Annotated[
        bool, msgspec.Meta(description="each worker reaches the master through its own fault proxy")
    ] = False
    toxics: list[ToxicSpec] = []

    def __post_init__(self) -> None:
        if self.toxics and not self.proxy:
            raise ValueError("toxics need proxy = true")


class FaultSpec(_Strict, frozen=True):
    when: WhenSpec
    do: ActionName
    target: Annotated[str, msgspec.Meta(pattern=r"^(holder|random|all|[A-Za-z0-9_.-]+)$")] = (
        "random"
    )
    count: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    duration_s: PositiveFloat | None = None
    expect: Literal["holder", "outlast_lease"] | None = None
    toxic: ToxicSpec | None = None
    toxic_name: str | None = None

    def __post_init__(self) -> None:
        if self.target == "holder" and self.when.trigger().job is None:
            raise ValueError(
                'target = "holder" needs a job trigger (job_leased, job_started, job_completed)'
            )
        if self.duration_s is not None and self.do not in ("pause", "partition"):
            raise ValueError(f"duration_s applies to pause and partition only, not {self.do!r}")
        if (self.do == "add_toxic") != (self.toxic is not None):
            raise ValueError("add_toxic needs a toxic table, and only add_toxic takes one")
        if (self.do == "remove_toxic") != (self.toxic_name is not None):
            raise ValueError("remove_toxic needs toxic_name, and only remove_toxic takes one")
        if self.target == "all" and self.do not in NETWORK_ACTIONS:
            raise ValueError(f'target = "all" applies to network faults only, not {self.do!r}')


class ExpectSpec(_Strict, frozen=True):
    checks: list[CheckName] = msgspec.field(
        default_factory=lambda: ["exactly_once", "correct_values", "liveness"]
    )
    within_s: Annotated[
        float, msgspec.Meta(gt=0, le=3600, description="bound on the whole run")
    ] = 30.0
    expect_violation: CheckName | None = None


class SystemSpec(_Strict, frozen=True):
    command: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None
    env: dict[str, str] = {}


class Scenario(_Strict, frozen=True):
    """One scenario file. Cross-checks between tables are in ``__post_init__``."""

    scenario: Literal[1]
    name: Annotated[str, msgspec.Meta(min_length=1)]
    description: Annotated[str, msgspec.Meta(min_length=1, description="what the scenario proves")]
    seed: int = 0
    slow: bool = False
    cluster: ClusterSpec = ClusterSpec()
    jobs: JobsSpec = JobsSpec()
    faults: list[FaultSpec] = []
    expect: ExpectSpec = ExpectSpec()
    system: SystemSpec = SystemSpec()
    network: NetworkSpec = NetworkSpec()

    def __post_init__(self) -> None:
        total = self.jobs.count + sum(extra.count for extra in self.jobs.extra)
        for number, fault in enumerate(self.faults):
            if fault.do in NETWORK_ACTIONS and not self.network.proxy:
                raise ValueError(f"faults[{number}]: {fault.do} needs [network] proxy = true")
            trigger = fault.when.trigger()
            if trigger.job is not None and trigger.job >= total:
                raise ValueError(
                    f"faults[{number}].when.{trigger.kind} = {trigger.job} names no job "
                    f"(there are {total} jobs: 0..{total - 1})"
                )


def scenario_schema() -> dict[str, Any]:
    """The JSON Schema of the format, for editors (committed as scenario.schema.json)."""
    schema: dict[str, Any] = msgspec.json.schema(Scenario)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "distq scenario"
    return schema


# -- writing ----------------------------------------------------------------------------------


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


def dump_scenario(scenario: Scenario, header_comment: str = "") -> str:
    """The scenario as a TOML file that ``load_scenario`` reads back to an equal value."""
    raw: dict[str, Any] = msgspec.to_builtins(scenario)
    lines = [f"# {line}" for line in header_comment.splitlines()]
    for key in ("scenario", "name", "description", "seed", "slow"):
        lines.append(f"{key} = {_toml_value(raw[key])}")
    for key in ("cluster", "jobs", "expect", "system", "network"):
        _table(lines, f"[{key}]", raw[key])
    for fault in raw["faults"]:
        when = fault.pop("when")
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


# -- loading ----------------------------------------------------------------------------------

_MARKER = re.compile(r"^\s*scenario\s*=", re.MULTILINE)
_TABLE_HEADER = re.compile(r"^\s*\[", re.MULTILINE)


def is_scenario_file(path: Path) -> bool:
    """A ``.toml`` file whose top level declares ``scenario = ...``. Cheap: no parsing
    beyond a look for the key, so other TOML files are never touched further."""
    if path.suffix != ".toml":
        return False
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    table = _TABLE_HEADER.search(text)
    head = text if table is None else text[: table.start()]  # the top level: before any table
    return bool(_MARKER.search(head))


def load_scenario(path: Path) -> Scenario:
    where = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
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
            f"{where}: scenario: got {_show(version)}, expected {FORMAT_VERSION} (the format version)"
        )
    try:
        return msgspec.convert(raw, Scenario)
    except msgspec.ValidationError as exc:
        raise ScenarioError(f"{where}: {_explain(exc, raw)}") from None


def _show(value: Any) -> str:
    text = json.dumps(value, default=repr) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _lookup(raw: Any, path: str) -> tuple[bool, Any]:
    node = raw
    for key, index in _PATH_PART.findall(path):
        try:
            node = node[key] if key else node[int(index)]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, node


def _struct_at(path: str) -> type[msgspec.Struct] | None:
    """The Struct type found at a ``$.a.b[0]`` path, for listing its valid keys."""
    current: Any = Scenario
    for key, _index in _PATH_PART.findall(path):
        if not key:
            continue
        hints = typing.get_type_hints(current, include_extras=True)
        current = _unwrap(hints.get(key))
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, msgspec.Struct) else None


def _unwrap(hint: Any) -> Any:
    """Strip Annotated, Optional and list[] down to a Struct type, if there is one."""
    while True:
        origin = typing.get_origin(hint)
        if origin is Annotated or origin is list:
            hint = typing.get_args(hint)[0]
        elif origin is not None and type(None) in typing.get_args(hint):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        elif origin is not None and str(origin) in ("typing.Union", "<class 'types.UnionType'>"):
            hint = typing.get_args(hint)[0]
        else:
            return hint


_KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
}


def _explain(exc: msgspec.ValidationError, raw: Any) -> str:
    message, _, at = str(exc).rpartition(" - at `")
    if not _:
        message, at = str(exc), "$"
    path = at.rstrip("`")
    key = path[2:] if path.startswith("$.") else path.lstrip("$")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
    if unknown:
        struct = _struct_at(path)
        valid = ", ".join(struct.__struct_fields__) if struct else "see the schema"
        full = f"{key}.{unknown[1]}" if key else unknown[1]
        return f"unknown key {full} (expected one of: {valid})"
    missing = re.match(r"Object missing required field `([^`]+)`", message)
    if missing:
        full = f"{key}.{missing[1]}" if key else missing[1]
        return f"{full}: missing (required)"
    if path.endswith("[...]"):  # a value in a table of arbitrary keys: find the bad one
        found, table = _lookup(raw, path[: -len("[...]")])
        bad = (
            [k for k, v in table.items() if not isinstance(v, str)]
            if found and isinstance(table, dict)
            else []
        )
        if bad:
            key = f"{key[: -len('[...]')]}.{bad[0]}"
            path = f"{path[: -len('[...]')]}.{bad[0]}"
    found, value = _lookup(raw, path)
    got = f"got {_show(value)}, " if found and not isinstance(value, dict) else ""
    enum = re.match(r"Invalid enum value (.+)", message)
    if enum:
        allowed = _allowed_values(path)
        return f"{key}: {got}expected one of: {allowed}"
    expected = re.match(r"Expected `([^`]+)`(.*?)(?:, got `[^`]+`)?$", message)
    if expected:
        kinds = [_KIND_WORDS.get(k.strip(), k.strip()) for k in expected[1].split("|")]
        words = " or ".join(k for k in kinds if k != "null")
        return f"{key}: {got}expected {words}{expected[2]}"
    return f"{key}: {got}{message[:1].lower()}{message[1:]}" if key else message


def _allowed_values(path: str) -> str:
    parts = [key for key, _ in _PATH_PART.findall(path) if key]
    parent = _struct_at("$." + ".".join(parts[:-1])) if len(parts) > 1 else Scenario
    if parent is None or not parts:
        return "see the schema"
    hint = typing.get_type_hints(parent, include_extras=True).get(parts[-1])
    while typing.get_origin(hint) in (Annotated, list) or (
        typing.get_origin(hint) is not None and type(None) in typing.get_args(hint)
    ):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0]
    values = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
    return ", ".join(str(v) for v in values) or "see the schema"


# -- running ----------------------------------------------------------------------------------


def _jobs(scenario: Scenario) -> list[dict[str, Any]]:
    spec = scenario.jobs
    jobs: list[dict[str, Any]] = []
    for number in range(spec.count):
        if spec.args is not None:
            args: list[Any] = list(spec.args)
        elif spec.task == "square" and spec.delay_s:
            args = [number, spec.delay_s]
        elif spec.task in ("square", "echo"):
            args = [number]
        else:
            args = []
        job: dict[str, Any] = {"task": spec.task, "args": args}
        if spec.time_limit_s is not None:
            job["time_limit_s"] = spec.time_limit_s
        jobs.append(job)
    for extra in spec.extra:
        for _ in range(extra.count):
            job = {"task": extra.task, "args": list(extra.args)}
            if extra.time_limit_s is not None:
                job["time_limit_s"] = extra.time_limit_s
            jobs.append(job)
    return jobs


def to_run_spec(scenario: Scenario, run_dir: Path) -> RunSpec:
    """Write the job set into ``run_dir`` and translate the scenario into a run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    jobs_path = run_dir.resolve() / "jobs.jsonl"  # the master runs inside the run directory
    jobs_path.write_text("".join(json.dumps(job) + "\n" for job in _jobs(scenario)))
    cluster = scenario.cluster
    master_args = [
        "--jobs", str(jobs_path),
        "--lease-timeout-s", repr(cluster.lease_timeout_s),
        "--max-attempts", str(cluster.max_attempts),
        "--handshake-timeout-s", repr(cluster.handshake_timeout_s),
    ]  # fmt: skip
    if cluster.time_limit_s is not None:
        master_args += ["--time-limit-s", repr(cluster.time_limit_s)]
    if cluster.batch_size is not None:
        master_args += ["--batch-size", str(cluster.batch_size)]
    worker_args: list[str] = []
    if cluster.prefetch is not None:
        worker_args += ["--prefetch", str(cluster.prefetch)]
    if cluster.worker_idle_exit_s is not None:
        worker_args += ["--idle-exit-s", repr(cluster.worker_idle_exit_s)]
    if cluster.worker_handshake_timeout_s != 5.0:
        worker_args += ["--handshake-timeout-s", repr(cluster.worker_handshake_timeout_s)]
    if cluster.worker_reconnect_s:
        worker_args += ["--reconnect-s", repr(cluster.worker_reconnect_s)]
    faults = tuple(
        Fault(
            f.when.trigger(),
            f.do,
            f.target,
            f.count,
            f.duration_s,
            f.expect,
            None if f.toxic is None else f.toxic.to_toxic(),
            f.toxic_name,
        )
        for f in scenario.faults
    )
    checks = list(scenario.expect.checks)
    if scenario.expect.expect_violation and scenario.expect.expect_violation not in checks:
        checks.append(scenario.expect.expect_violation)
    command = tuple(scenario.system.command) if scenario.system.command else None
    if command and command[0] in ("python", "python3"):
        command = (sys.executable, *command[1:])  # the interpreter running the harness
    return RunSpec(
        master_args=tuple(master_args),
        workers=cluster.workers,
        worker_args=tuple(worker_args),
        faults=faults,
        seed=scenario.seed,
        bound_s=scenario.expect.within_s,
        checks=tuple(checks),
        lease_timeout_s=cluster.lease_timeout_s,
        command=command,
        env=dict(scenario.system.env),
        proxy_seed=scenario.seed if scenario.network.proxy else None,
        initial_toxics=tuple((t.to_toxic(), frozenset(t.workers)) for t in scenario.network.toxics),
    )


@dataclass(frozen=True, slots=True)
class ScenarioOutcome:
    """A scenario's run and what it means, ``expect_violation`` taken into account."""

    scenario: Scenario
    result: RunResult
    status: Literal["pass", "fail", "unknown"]
    message: str

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "fail": 1, "unknown": 2}[self.status]

    def report(self) -> str:
        return f"{self.message}\n{self.result.report()}"


def run_scenario(scenario: Scenario, run_dir: Path) -> ScenarioOutcome:
    result = run(to_run_spec(scenario, run_dir), run_dir)
    verdict = result.verdict
    known = scenario.expect.expect_violation
    if known is None:
        return ScenarioOutcome(
            scenario, result, verdict.status, f"{scenario.name}: {verdict.status}"
        )
    if any(v.check == known for v in verdict.violations):
        message = f"{scenario.name}: pass (the known {known} violation is still there)"
        return ScenarioOutcome(scenario, result, "pass", message)
    message = (
        f"{scenario.name}: fail: expect_violation = {known!r} but the run had no {known} "
        f"violation (verdict {verdict.status}); if the bug is fixed, remove expect_violation"
    )
    return ScenarioOutcome(scenario, result, "fail", message)
