"""The engine systems: settings validated per engine, and real runs in which a mis-set
engine and a miswired adapter are caught (the engine scenarios themselves are in
scenarios/engines)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import pytest

from harness import systems
from harness.checks import Expect, duplicate_executions
from harness.scenario import Scenario, ScenarioError, load_scenario, run_scenario
from harness.systems.engine import EngineSystem, expected_value, worker_argv
from harness.systems.engines.broker import broker_argv
from tests.support import REPO

REPO_ROOT = REPO
ENGINE_SCENARIOS = REPO_ROOT / "scenarios" / "engines"


@pytest.mark.engines
def test_each_engine_takes_only_its_own_settings() -> None:
    _, config = systems.parse_table({"kind": "engine", "engine": "celery", "acks_late": True})
    assert config.settings().acks_late is True  # type: ignore[attr-defined]
    with pytest.raises(
        systems.SystemConfigError, match="acks_late is not a setting of engine 'rq'"
    ):
        systems.parse_table({"kind": "engine", "engine": "rq", "acks_late": True})
    with pytest.raises(systems.SystemConfigError, match=r"unknown key system\.bogus"):
        systems.parse_table({"kind": "engine", "engine": "huey", "bogus": 1})
    with pytest.raises(systems.SystemConfigError, match="engine"):
        systems.parse_table({"kind": "engine", "engine": "sidekiq"})
    with pytest.raises(systems.SystemConfigError, match="engine"):
        systems.parse_table({"kind": "engine"})


def test_a_bad_setting_in_a_scenario_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'scenario = 1\nname = "x"\ndescription = "x"\n'
        '[system]\nkind = "engine"\nengine = "dramatiq"\nheartbeat_timeout_s = -1\n'
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    assert "heartbeat_timeout_s" in message


@pytest.mark.engines
def test_unsupported_checks_and_actions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    path.write_text(
        'scenario = 1\nname = "x"\ndescription = "x"\n'
        '[system]\nkind = "engine"\nengine = "rq"\n[expect]\nchecks = ["auth"]\n'
    )
    with pytest.raises(ScenarioError, match="'auth' is not supported by system kind 'engine'"):
        load_scenario(path)


@pytest.mark.engines
def test_each_engine_runs_its_own_worker_command() -> None:
    commands = {
        "celery": "celery",
        "rq": "rq",
        "dramatiq": "dramatiq",
        "huey": "huey",
    }
    for engine, command in commands.items():
        _, config = systems.parse_table({"kind": "engine", "engine": engine})
        argv = worker_argv(config.settings(), "worker-1", "redis://127.0.0.1:1/0")  # type: ignore[attr-defined]
        assert argv[:2] == ("python", "-m"), argv
        assert argv[2].split(".")[0] == command, argv


@pytest.mark.engines
def test_the_broker_persists_only_when_asked(tmp_path: Path) -> None:
    plain = broker_argv(6399, tmp_path / "a")
    kept = broker_argv(6399, tmp_path / "b", appendonly=True)
    assert plain[plain.index("--appendonly") + 1] == "no"
    assert kept[kept.index("--appendonly") + 1] == "yes"
    assert "always" in kept
    assert plain[plain.index("--bind") + 1] == "127.0.0.1"


def test_expected_values_follow_the_task_module() -> None:
    assert expected_value("square", (7, 0.5)) == 49
    assert expected_value("sleep", (0.1,)) == 0.1
    assert expected_value("crash", ()) is Expect.FAILURE
    assert expected_value("mystery", ()) is Expect.UNKNOWN


@pytest.mark.engines
def test_every_engine_scenario_cites_a_setting_and_its_default() -> None:
    files = sorted(ENGINE_SCENARIOS.glob("*.toml"))
    engines = {load_scenario(path).system["engine"] for path in files}
    assert engines == {"celery", "rq", "dramatiq", "huey"}
    for path in files:
        description = load_scenario(path).description
        assert "default" in description, path.name
        assert "Pinned:" in description, path.name


def _variant(name: str, **system: object) -> Scenario:
    raw = tomllib.loads((ENGINE_SCENARIOS / name).read_text())
    raw["system"] = {**raw["system"], **system}
    return msgspec.convert(raw, Scenario)


@pytest.mark.processes
@pytest.mark.engines
def test_a_mis_set_engine_is_caught(tmp_path: Path) -> None:
    # The redelivery scenario with Celery's default acks (on receipt): the task worker-1 was
    # running dies with it and the at_least_once contract must fail, naming a lost job.
    scenario = _variant("celery_kill_redelivery.toml", acks_late=False, reject_on_worker_lost=False)
    outcome = run_scenario(scenario, tmp_path / "run")
    assert outcome.status == "fail", outcome.report()
    lost = [v for v in outcome.result.verdict.violations if v.check == "at_least_once"]
    assert any("lost" in violation.message for violation in lost), outcome.report()


@pytest.mark.processes
@pytest.mark.engines
def test_a_second_execution_still_running_at_the_last_result_is_seen_to_its_end(
    tmp_path: Path,
) -> None:
    # A 2.5 s task behind a 1 s visibility timeout: the second worker gets it again while the
    # first runs it. The first result is in at ~2.5 s; the second execution ends later, and
    # the producer waits for it (it stops once nothing runs in a live process).
    path = tmp_path / "twice.toml"
    path.write_text(
        """scenario = 2
name = "a task redelivered while it runs"
description = "celery, acks_late, a 1 s visibility timeout, one 2.5 s task"
seed = 1
[cluster]
workers = 2
[jobs]
task = "square"
count = 1
delay_s = 2.5
[system]
kind = "engine"
engine = "celery"
collect_s = 15.0
acks_late = true
visibility_timeout_s = 1.0
unacked_restore_interval_s = 1
unacked_restore_throttle = 1
prefetch = 1
[expect]
checks = ["at_least_once", "correct_values"]
within_s = 30
""",
        encoding="utf-8",
    )
    outcome = run_scenario(load_scenario(path), tmp_path / "run")
    assert outcome.status == "pass", outcome.report()
    history = outcome.result.history
    [accepted] = history.select("result_accepted", job=0)
    runs = duplicate_executions(history).get(0, ())
    assert len(runs) >= 2, outcome.report()
    assert runs[-1].t > accepted.t  # the later run ended after the result was taken...
    [stopped] = history.select("master_stopped")
    assert stopped.t >= runs[-1].t  # ...and the producer was still there to see it


@pytest.mark.processes
@pytest.mark.engines
def test_a_miswired_adapter_is_caught(tmp_path: Path) -> None:
    raw = tomllib.loads((ENGINE_SCENARIOS / "huey_kill_default.toml").read_text())
    raw["system"] = {"kind": "tests.broken_engine:KIND", "engine": "huey", "collect_s": 4.0}
    raw["faults"] = []
    raw.pop("expect")
    scenario = msgspec.convert(raw, Scenario)
    assert isinstance(systems.build(scenario.system), EngineSystem)
    outcome = run_scenario(scenario, tmp_path / "run")
    assert outcome.status == "fail", outcome.report()
    assert any(v.check == "exactly_once" for v in outcome.result.verdict.violations)


@pytest.mark.engines
def test_the_matrix_runs_a_distq_file_everywhere_and_an_engine_file_in_its_column() -> None:
    from harness.matrix import (
        COLUMNS,
        Cell,
        Matrix,
        dropped_keys,
        render_markdown,
        row_of,
        variant,
    )

    assert list(COLUMNS) == ["distq", "celery", "rq", "dramatiq", "huey"]
    neutral_path = REPO_ROOT / "scenarios" / "matrix" / "worker_killed_mid_task.toml"
    neutral = load_scenario(neutral_path)
    for column in COLUMNS:
        chosen = variant(neutral, column)
        assert isinstance(chosen, Scenario), (column, chosen)
        if column != "distq":
            assert chosen.system["engine"] == column
            assert chosen.cluster.lease_timeout_s == 10.0  # distq's knob, dropped for engines
    assert dropped_keys(neutral, "distq") == ()
    lease_set = msgspec.structs.replace(
        neutral, cluster=msgspec.structs.replace(neutral.cluster, lease_timeout_s=2.0)
    )
    assert dropped_keys(lease_set, "distq") == ()
    assert dropped_keys(lease_set, "celery") == ("lease_timeout_s",)
    assert "(without lease_timeout_s)" in Cell("pass", dropped=("lease_timeout_s",)).text()
    # A scenario about one of distq's own knobs means nothing to an engine: n/a, saying why.
    journaled = load_scenario(REPO_ROOT / "scenarios" / "master" / "journal_kill_mid_run.toml")
    assert isinstance(variant(journaled, "distq"), Scenario)
    assert variant(journaled, "rq") == "needs distq's journal, worker_reconnect_s"
    pinned_path = ENGINE_SCENARIOS / "rq_broker_restart.toml"
    pinned = load_scenario(pinned_path)
    assert row_of(pinned_path, pinned) == "broker_restart"
    assert isinstance(variant(pinned, "rq"), Scenario)
    assert variant(pinned, "celery") == ""  # the row's celery cell is celery's own file
    assert variant(pinned, "distq") == ""
    table = Matrix(
        {"kill": {"distq": Cell("pass"), "rq": Cell("fail", "exactly_once: job 0 lost", True)}},
        ("distq", "rq"),
        12.0,
    )
    assert render_markdown(table).splitlines()[:3] == [
        "| scenario | distq | rq |",
        "|---|---|---|",
        "| kill | pass | fail: exactly_once: job 0 lost (documented) |",
    ]


@pytest.mark.processes
@pytest.mark.engines
def test_the_matrix_command_prints_a_table_and_writes_html(tmp_path: Path) -> None:
    import subprocess
    import sys

    scenario = tmp_path / "tiny.toml"
    scenario.write_text(
        'scenario = 1\nname = "tiny"\ndescription = "two tiny jobs, no fault"\n'
        '[jobs]\ntask = "square"\ncount = 2\n[expect]\nwithin_s = 20\n'
    )
    html_path = tmp_path / "matrix.html"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "matrix", str(scenario), "--jobs", "2",
         "--runs-dir", str(tmp_path / "runs"), "--html", str(html_path)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "| scenario | distq | celery | rq | dramatiq | huey |"
    assert lines[2] == "| tiny | pass | pass | pass | pass | pass |", done.stdout
    assert lines[-1].startswith("wall time: ")
    assert "<table>" in html_path.read_text()
