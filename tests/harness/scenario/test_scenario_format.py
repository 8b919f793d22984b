"""The scenario file format: its committed JSON Schema, the one-line error of every kind of
malformed file (the corpus in tests/malformed/), and valid files into runs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import msgspec
import pytest

from harness.runtime.faults import Fault, Trigger
from harness.runtime.run import RunSpec
from harness.scenario import (
    CHECK_NAMES,
    ScenarioError,
    dump_scenario,
    is_scenario_file,
    load_scenario,
    scenario_schema,
    to_run_spec,
)
from harness.systems import ProcessSpec, RunSetup
from harness.systems.distq import DistqSystem
from tests.support import REPO, TESTS

REPO_ROOT = REPO
SCHEMA_PATH = REPO_ROOT / "scenarios" / "scenario.schema.json"
MALFORMED = TESTS / "malformed"
REGENERATE = (
    'python -c "import json; from harness.scenario import scenario_schema; '
    "open('scenarios/scenario.schema.json', 'w').write("
    "json.dumps(scenario_schema(), indent=2, sort_keys=True) + '\\n')\""
)

ACTIONS = (
    "kill, kill_tree, kill_child, terminate, pause, resume, restart, add_worker, kill_master, "
    "restart_master, tear_results, tear_events, disk_full, truncate, "
    "wrong_key_worker, empty_key_worker, idle_sockets, garbage, bad_handshakes, add_toxic, "
    "remove_toxic, "
    "partition, heal, isolate, partition_hosts, one_way, loss, bandwidth, delay, heal_hosts, reject"
)
CHECKS = ", ".join(CHECK_NAMES)
TRIGGERS = (
    "after_s, job_leased, job_started, job_completed, results, batch_closed, workers_joined, "
    "auth_rejected"
)

#: Each corpus file and the rest of its error line, after "PATH: ".
EXPECTED_ERRORS = {
    "missing_description": "description: missing (required)",
    "missing_when": "faults[0].when: missing (required)",
    "wrong_type": "cluster.workers: got 'three', expected an integer",
    "unknown_key_top": (
        "unknown key colour (expected one of: scenario, name, description, seed, slow, "
        "cluster, jobs, faults, expect, system, network)"
    ),
    "unknown_key_nested": (
        "unknown key cluster.workerz (expected one of: workers, lease_timeout_s, time_limit_s, "
        "max_attempts, batch_size)"
    ),
    "unknown_key_in_fault": (
        "unknown key faults[1].tagret (expected one of: when, do, target, count, duration_s, "
        "expect, toxic, toxic_name, scope, peers, probability, rate_kbit, delay_ms, output, "
        "keep_bytes, keep_fraction, mid_line)"
    ),
    "unknown_action": f"faults[0].do: got 'explode', expected one of: {ACTIONS}",
    "trigger_none": f"faults[0].when: needs exactly one trigger of {TRIGGERS} (got none)",
    "trigger_two": (
        f"faults[0].when: needs exactly one trigger of {TRIGGERS} (got after_s, job_leased)"
    ),
    "trigger_unknown": (
        f"unknown key faults[0].when.job_finished (expected one of: {TRIGGERS}, attempt, hold, wait_s)"
    ),
    "attempt_on_completed": (
        "faults[0].when: attempt applies to job_leased and job_started, not job_completed"
    ),
    "negative_timeout": "expect.within_s: got -5, expected a number >= 0.001",
    "nan_lease_timeout": "cluster.lease_timeout_s: got nan, expected a finite number of at most 1e+09",
    "holder_with_time_trigger": (
        'faults[0]: target = "holder" needs a job trigger (job_leased, job_started, job_completed)'
    ),
    "host_fault_without_hosts": "faults[0]: isolate needs [network] hosts = true",
    "host_placeholder_without_hosts": (
        "system.worker[6]: {master_host} is a host's address, and the run has no hosts; "
        "set [network] hosts = true or leave it out"
    ),
    "loss_without_probability": "faults[0]: loss needs a probability, and only loss takes one",
    "proxy_and_hosts": (
        "network: proxy and hosts exclude each other: a fault proxy listens on the harness's "
        "loopback, which no host reaches"
    ),
    "peers_on_isolate": "faults[0]: peers applies to partition_hosts and one_way only, not 'isolate'",
    "duration_on_kill": (
        "faults[0]: duration_s applies to bandwidth, delay, isolate, loss, one_way, partition, "
        "partition_hosts, pause only, not 'kill'"
    ),
    "bad_check_name": f"expect.checks[1]: got 'exactly_twice', expected one of: {CHECKS}",
    "wrong_version": "scenario: got 3, expected 1 or 2 (the format version)",
    "syntax_error": "TOML syntax error: Invalid value (at line 6, column 11)",
    "not_utf8": "not UTF-8 text (invalid continuation byte at byte 24)",
    "delay_on_echo": "jobs: delay_s applies to the square task only, not 'echo'",
}

MINIMAL = 'scenario = 1\nname = "minimal"\ndescription = "only what is required"\n'


def error_of(path: Path) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    return str(caught.value)


def write(tmp_path: Path, text: str, name: str = "scenario.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the JSON Schema ----------------------------------------------------------------------


def test_committed_schema_is_the_generated_one() -> None:
    generated = json.dumps(scenario_schema(), indent=2, sort_keys=True) + "\n"
    committed = SCHEMA_PATH.read_text() if SCHEMA_PATH.exists() else "<missing>"
    assert committed == generated, (
        f"{SCHEMA_PATH.relative_to(REPO_ROOT)} is stale; regenerate it from the repository "
        f"root with: {REGENERATE}"
    )


def test_schema_rejects_unknown_keys_and_requires_what_the_loader_requires() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    top = schema["$defs"]["Scenario"]
    assert schema["$ref"] == "#/$defs/Scenario"
    assert top["required"] == ["scenario", "name", "description"]
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object":
            assert definition["additionalProperties"] is False, name
    assert top["properties"]["expect"]["$ref"] == "#/$defs/ExpectSpec"
    checks = schema["$defs"]["ExpectSpec"]["properties"]["checks"]["items"]["enum"]
    assert sorted(checks) == sorted(CHECK_NAMES)


# -- the malformed corpus -----------------------------------------------------------------


def test_every_corpus_file_has_an_expected_error() -> None:
    on_disk = sorted(path.stem for path in MALFORMED.glob("*.toml"))
    assert on_disk == sorted(EXPECTED_ERRORS)


@pytest.mark.parametrize("stem", sorted(EXPECTED_ERRORS))
def test_malformed_file_gives_its_one_line_error(stem: str) -> None:
    path = MALFORMED / f"{stem}.toml"
    assert is_scenario_file(path), "the plugin must collect it, or the error is never shown"
    message = error_of(path)
    assert message == f"{path}: {EXPECTED_ERRORS[stem]}"
    assert "\n" not in message
    assert "Traceback" not in message


def test_syntax_error_points_at_the_offending_character() -> None:
    path = MALFORMED / "syntax_error.toml"
    lines = path.read_text().splitlines()
    line, column = 6, 11
    assert lines[line - 1] == "workers = = 3"
    assert lines[line - 1][column - 1] == "="
    assert lines[line - 1][: column - 1].count("=") == 1
    assert error_of(path).endswith(f"(at line {line}, column {column})")


def test_non_utf8_error_names_the_first_bad_byte() -> None:
    path = MALFORMED / "not_utf8.toml"
    raw = path.read_bytes()
    with pytest.raises(UnicodeDecodeError) as caught:
        raw.decode("utf-8")
    assert raw[caught.value.start] == 0xE9
    assert error_of(path).endswith(f"at byte {caught.value.start})")


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert error_of(path) == f"{path}: cannot read: No such file or directory"


def test_bad_env_value_names_its_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[system]\nenv = { DISTQ_BROKEN = 1 }\n")
    message = error_of(path)
    assert "system.env.DISTQ_BROKEN" in message
    assert "got 1" in message


def test_missing_version_says_missing(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\ndescription = "no version"\n')
    message = error_of(path)
    assert message.startswith(f"{path}: scenario: missing")
    assert "'<missing>'" not in message


# -- which files are scenarios ------------------------------------------------------------


def test_is_scenario_file_only_for_toml_declaring_the_version(tmp_path: Path) -> None:
    assert is_scenario_file(REPO_ROOT / "scenarios" / "worker_death" / "kill_holder.toml")
    assert not is_scenario_file(REPO_ROOT / "pyproject.toml")
    assert not is_scenario_file(write(tmp_path, 'title = "x"\n[owner]\nname = "y"\n', "other.toml"))
    # `scenario` inside a table is someone else's key, not ours.
    assert not is_scenario_file(write(tmp_path, 'title = "x"\n[tool.y]\nscenario = 1\n', "t.toml"))
    assert not is_scenario_file(write(tmp_path, MINIMAL, "scenario.json"))
    assert not is_scenario_file(tmp_path / "absent.toml")
    assert is_scenario_file(write(tmp_path, "# a comment first\n" + MINIMAL, "commented.toml"))


@pytest.mark.parametrize(
    "text",
    ["[tool.y]\nscenario = 1\n", 'title = "x"\n  [tool.y]\nscenario = 1\n'],
    ids=["table-on-line-1", "indented-table"],
)
def test_scenario_key_inside_a_table_is_not_a_scenario(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text, "config.toml")
    assert "scenario" not in tomllib.loads(text)
    assert not is_scenario_file(path)


def library(*, engines: bool) -> list[Path]:
    """The library's scenario files, those of the engine kind or all the others."""
    files = sorted(p for p in (REPO_ROOT / "scenarios").rglob("*.toml") if is_scenario_file(p))
    return [p for p in files if _is_engine_kind(p) is engines]


def _is_engine_kind(path: Path) -> bool:
    kind: object = tomllib.loads(path.read_text()).get("system", {}).get("kind")
    return kind == "engine"


def test_every_library_scenario_loads() -> None:
    files = library(engines=False)
    assert files, "the scenario library is empty"
    for path in files:
        load_scenario(path)


@pytest.mark.engines
def test_every_engine_scenario_loads() -> None:
    files = library(engines=True)
    assert files, "the library has no engine scenario"
    for path in files:
        load_scenario(path)


# -- valid files into runs ----------------------------------------------------------------


def test_minimal_file_gets_the_documented_defaults(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, MINIMAL))
    assert (scenario.name, scenario.seed, scenario.slow, scenario.faults) == (
        "minimal",
        0,
        False,
        [],
    )
    cluster = scenario.cluster
    assert (cluster.workers, cluster.lease_timeout_s, cluster.max_attempts) == (2, 10.0, 3)
    assert (cluster.batch_size, cluster.time_limit_s) == (None, None)
    assert (scenario.jobs.task, scenario.jobs.count, scenario.jobs.delay_s) == ("square", 20, 0.0)
    assert scenario.expect.checks == ["exactly_once", "correct_values", "liveness"]
    assert (scenario.expect.within_s, scenario.expect.expect_violation) == (30.0, None)
    assert scenario.system == {}

    spec = to_run_spec(scenario, tmp_path / "run")
    assert isinstance(spec.system, DistqSystem)
    assert launched(spec, "master")[4:-2] == (
        "--jobs", str(tmp_path / "run" / "jobs.jsonl"),
        "--lease-timeout-s", "10.0",
        "--max-attempts", "3",
        "--handshake-timeout-s", "5.0",
    )  # fmt: skip
    assert launched(spec, "worker")[10:] == (
        "--handshake-timeout-s", "5.0", "--reconnect-s", "0.0"
    )  # fmt: skip
    assert (spec.workers, spec.faults, spec.system.command) == (2, (), ("python", "-m", "distq"))
    assert spec.checks == ("exactly_once", "correct_values", "liveness")
    assert (spec.bound_s, spec.seed, spec.lease_timeout_s) == (30.0, 0, 10.0)
    jobs = (tmp_path / "run" / "jobs.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in jobs] == [
        {"task": "square", "args": [n]} for n in range(20)
    ]


FULL = """\
scenario = 1
name = "everything"
description = "every option that changes the run"
seed = 42
slow = true

[cluster]
workers = 3
lease_timeout_s = 1.5
time_limit_s = 4.0
max_attempts = 2
batch_size = 5
handshake_timeout_s = 0.5
prefetch = 2
worker_idle_exit_s = 3.0
worker_reconnect_s = 20.0

[jobs]
count = 3
delay_s = 0.25
time_limit_s = 2.0
extra = [{ task = "sleep", args = [0.1, "x"], count = 2 }, { task = "crash" }]

[[faults]]
when = { job_started = 1 }
do = "pause"
target = "holder"
duration_s = 2.5
expect = "outlast_lease"

[[faults]]
when = { after_s = 0.5 }
do = "add_worker"

[[faults]]
when = { job_leased = 4, attempt = 2 }
do = "kill"
target = "holder"

[expect]
checks = ["exactly_once", "fault_coverage"]
within_s = 20
expect_violation = "batch_barrier"

[system]
command = ["python", "-m", "tests.broken_distq"]
env = { DISTQ_BROKEN = "batch-early" }
"""


def setup(spec: RunSpec) -> RunSetup:
    return RunSetup(
        Path("run"), spec.jobs_path, spec.settings, spec.master_args, spec.worker_args, b"key"
    )


def process(role: str, restarted: bool = False) -> ProcessSpec:
    """A worker knows the master's address; a master only once it is started again."""
    name = "master" if role == "master" else "worker-1"
    known = role != "master" or restarted
    addresses = {"master": "127.0.0.1:1"} if known else {}
    return ProcessSpec(role, name, Path(f"{name}.events.jsonl"), addresses, b"key")


def launched(spec: RunSpec, role: str) -> tuple[str, ...]:
    """The argv the system under test is started with for ``role``."""
    assert spec.system is not None
    return spec.system.launch(process(role), setup(spec)).argv


def test_a_journaled_master_started_again_resumes_its_journal_on_its_port(
    tmp_path: Path,
) -> None:
    text = FULL.replace("[cluster]\n", "[cluster]\njournal = true\n", 1)
    spec = to_run_spec(load_scenario(write(tmp_path, text)), tmp_path / "run")
    assert spec.system is not None
    first = spec.system.launch(process("master"), setup(spec)).argv
    again = spec.system.launch(process("master", restarted=True), setup(spec)).argv
    journal = ("--journal", str(Path("run").resolve() / "journal.sqlite"))
    assert "--port" not in first
    assert _has(first, journal)
    assert _has(again, journal)
    assert _has(again, ("--port", "1"))


def _has(argv: tuple[str, ...], pair: tuple[str, str]) -> bool:
    return any(argv[i : i + 2] == pair for i in range(len(argv) - 1))


def test_every_option_reaches_the_run(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FULL))
    run_dir = tmp_path / "nested" / "run"
    spec = to_run_spec(scenario, run_dir)
    assert launched(spec, "master") == (
        "python", "-m", "tests.broken_distq", "master",
        "--jobs", str(run_dir / "jobs.jsonl"),
        "--lease-timeout-s", "1.5",
        "--max-attempts", "2",
        "--handshake-timeout-s", "0.5",
        "--time-limit-s", "4.0",
        "--batch-size", "5",
        "--events", "master.events.jsonl",
    )  # fmt: skip
    assert spec.workers == 3
    assert launched(spec, "worker")[10:] == (
        "--prefetch", "2", "--idle-exit-s", "3.0",
        "--handshake-timeout-s", "5.0", "--reconnect-s", "20.0",
    )  # fmt: skip
    assert spec.faults == (
        Fault(Trigger("job_started", 1.0), "pause", "holder", 1, 2.5, "outlast_lease"),
        Fault(Trigger("after_s", 0.5), "add_worker", "random", 1, None, None),
        Fault(Trigger("job_leased", 4.0, 2), "kill", "holder", 1, None, None),
    )
    # The known bug's check is run even when `checks` does not list it.
    assert spec.checks == ("exactly_once", "fault_coverage", "liveness", "batch_barrier")
    assert (spec.seed, spec.bound_s, spec.lease_timeout_s) == (42, 20.0, 1.5)
    worker = spec.system.launch(process("worker"), setup(spec))
    assert worker.env == {"DISTQ_BROKEN": "batch-early", "DISTQ_AUTHKEY": "key"}
    jobs = [json.loads(line) for line in (run_dir / "jobs.jsonl").read_text().splitlines()]
    assert jobs == [
        {"task": "square", "args": [0, 0.25], "time_limit_s": 2.0},
        {"task": "square", "args": [1, 0.25], "time_limit_s": 2.0},
        {"task": "square", "args": [2, 0.25], "time_limit_s": 2.0},
        {"task": "sleep", "args": [0.1, "x"]},
        {"task": "sleep", "args": [0.1, "x"]},
        {"task": "crash", "args": []},
    ]


def test_job_arguments_per_task(tmp_path: Path) -> None:
    def jobs_of(jobs_table: str) -> list[object]:
        scenario = load_scenario(write(tmp_path, MINIMAL + "[jobs]\n" + jobs_table))
        to_run_spec(scenario, tmp_path / "run")
        lines = (tmp_path / "run" / "jobs.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    assert jobs_of('task = "echo"\ncount = 2\n') == [
        {"task": "echo", "args": [0]},
        {"task": "echo", "args": [1]},
    ]
    assert jobs_of('task = "hang"\ncount = 1\n') == [{"task": "hang", "args": []}]
    assert jobs_of('task = "sleep"\ncount = 2\nargs = [0.5]\n') == [
        {"task": "sleep", "args": [0.5]},
        {"task": "sleep", "args": [0.5]},
    ]
    assert jobs_of("count = 0\n") == []


def test_job_arguments_from_a_template_and_from_a_jobs_file(tmp_path: Path) -> None:
    def jobs_of(jobs_table: str) -> list[object]:
        scenario = load_scenario(write(tmp_path, MINIMAL + "[jobs]\n" + jobs_table))
        to_run_spec(scenario, tmp_path / "run")
        lines = (tmp_path / "run" / "jobs.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    assert jobs_of('task = "echo"\ncount = 2\nargs = ["{n}", "x"]\n') == [
        {"task": "echo", "args": [0, "x"]},
        {"task": "echo", "args": [1, "x"]},
    ]
    (tmp_path / "mine.jsonl").write_text('[3]\n\n{"args": [4], "task": "square"}\n')
    assert jobs_of('task = "echo"\nfile = "mine.jsonl"\n') == [
        {"task": "echo", "args": [3]},
        {"task": "square", "args": [4]},
    ]
    bad = {
        'file = "absent.jsonl"\n': "jobs.file: cannot read",
        'file = "mine.jsonl"\ncount = 3\n': "jobs.count: give the jobs either in jobs.file",
        'file = "broken.jsonl"\n': "broken.jsonl line 2: not JSON",
        'file = "odd.jsonl"\n': "odd.jsonl line 1: unknown key 'kwargs'",
    }
    (tmp_path / "broken.jsonl").write_text("[1]\n{oops\n")
    (tmp_path / "odd.jsonl").write_text('{"args": [1], "kwargs": {}}\n')
    for table, said in bad.items():
        with pytest.raises(ScenarioError) as raised:
            load_scenario(write(tmp_path, MINIMAL + "[jobs]\n" + table))
        assert said in str(raised.value), str(raised.value)
        assert "\n" not in str(raised.value)


def test_a_loaded_scenario_survives_a_round_trip_through_builtins(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FULL))
    again = msgspec.convert(msgspec.to_builtins(scenario), type(scenario))
    assert again == scenario
    written = write(tmp_path, dump_scenario(scenario), "written.toml")
    assert load_scenario(written) == scenario
    assert "when = { job_leased = 4, attempt = 2 }" in written.read_text()
