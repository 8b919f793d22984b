"""A team's own engine app under the harness: the hooks the wrappers install see each
execution by the harness's job id (a retry, a failure, a child the harness killed), the
settings that would defeat a test are refused in one line, and the deliberately broken
example app fails naming its job. The examples' own scenarios are in scenarios/engine_apps."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness import contract
from harness.scenario import ScenarioError, load_scenario, run_scenario
from tests.support import REPO

EXAMPLES = REPO / "examples" / "engine_apps"

#: engine -> the [system] keys naming its probe app (tests/engine_apps).
PROBES: dict[str, str] = {
    "celery": 'app = "tests.engine_apps.celery_probe:app"\ntask = "probe"',
    "rq": 'task = "tests.engine_apps.rq_probe.probe"\nretry_max = 1',
    "dramatiq": 'app = "tests.engine_apps.dramatiq_probe"\ntask = "probe"\n'
    'broker_env = "PROBE_REDIS_URL"',
    "huey": 'app = "tests.engine_apps.huey_probe:huey"\ntask = "tests.engine_apps.huey_probe.probe"\n'
    'broker_env = "PROBE_REDIS_URL"',
}
#: The engines whose parent process reports the death of the process running a job.
REPORTS_CHILD_LOST = ("celery", "rq")

PROBE_SCENARIO = """\
scenario = 2
name = "{engine} probe"
description = "job 0 retries once, job 1 fails, job 2 (where reported) loses its child"
seed = 1

[cluster]
workers = 1

[jobs]
task = "probe"
count = 0
extra = [
    {{ task = "probe", args = ["flaky", "{tmp}/flaky"] }},
    {{ task = "probe", args = ["fail", "{tmp}/fail"] }},
    {jobs_slow}
]

[system]
kind = "engine"
engine = "{engine}"
{keys}
cwd = "{repo}"
collect_s = 25.0
{faults}
[expect]
checks = ["exactly_once"]
within_s = 40
"""

KILL_CHILD = """
[[faults]]
when = { job_started = 2 }
do = "kill_child"
target = "holder"
"""


def _events(run_dir: Path) -> list[dict[str, Any]]:
    found = []
    for path in run_dir.glob("worker-*.events.jsonl"):
        found += [json.loads(line) for line in path.read_text().splitlines() if line]
    return sorted(found, key=lambda event: float(event["t"]))


def _of(events: Sequence[dict[str, Any]], ev: str, job: int) -> list[dict[str, Any]]:
    return [event for event in events if event["ev"] == ev and event.get("job") == job]


@pytest.mark.processes
@pytest.mark.engines
@pytest.mark.parametrize("engine", sorted(PROBES))
def test_the_hooks_see_a_retry_a_failure_and_a_lost_child(tmp_path: Path, engine: str) -> None:
    child = engine in REPORTS_CHILD_LOST
    text = PROBE_SCENARIO.format(
        engine=engine,
        tmp=tmp_path,
        keys=PROBES[engine],
        repo=REPO,
        jobs_slow=f'{{ task = "probe", args = ["slow", "{tmp_path}/slow"] }},' if child else "",
        faults=KILL_CHILD if child else "",
    )
    path = tmp_path / f"{engine}_probe.toml"
    path.write_text(text)
    outcome = run_scenario(load_scenario(path), tmp_path / "run")
    events = _events(tmp_path / "run")
    report = outcome.report()
    # job 0: a retry, then a successful run, both under job id 0
    retries = _of(events, contract.RETRY, 0)
    assert len(retries) == 1, report
    assert "first run fails" in retries[0]["error"], report
    done = _of(events, contract.COMPLETED, 0)
    assert [event["ok"] for event in done] == [True], report
    assert done[0]["value"] == "flaky ok", report
    assert [event["attempt"] for event in _of(events, contract.STARTED, 0)] == [1, 2], report
    # job 1: a terminal failure, with the task's own error
    failed = [event for event in _of(events, contract.COMPLETED, 1) if event["ok"] is False]
    assert failed, report
    assert "fail: always" in failed[-1]["error"], report
    if child:  # job 2: its process killed by the harness, reported by the engine's parent
        started = _of(events, contract.STARTED, 2)
        lost = _of(events, contract.CHILD_LOST, 2)
        assert started, report
        assert lost, report
        assert lost[0]["pid"] != started[0]["pid"], report  # seen from the parent
        assert outcome.result.verdict.status != "unknown", report  # the kill took effect


def _write(tmp_path: Path, name: str, system: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        'scenario = 2\nname = "refused"\ndescription = "a defeating setting"\n'
        f'[jobs]\nargs = ["{{n}}", 1]\ncount = 1\n[system]\nkind = "engine"\n{system}\n'
    )
    return path


@pytest.mark.engines
def test_settings_that_defeat_a_test_are_refused_in_one_line(tmp_path: Path) -> None:
    app = tmp_path / "eagerapp.py"
    app.write_text(
        "from celery import Celery\napp = Celery('eager')\napp.conf.task_always_eager = True\n"
        "@app.task(name='add')\ndef add(x, y):\n    return x + y\n"
    )
    (tmp_path / "immediate.py").write_text(
        "from huey import RedisHuey\nhuey = RedisHuey('i', immediate=True)\n"
        "@huey.task()\ndef add(x, y):\n    return x + y\n"
    )
    cases = {
        "eager": ('engine = "celery"\napp = "eagerapp:app"\ntask = "add"', "task_always_eager"),
        "unregistered": (
            'engine = "celery"\napp = "tests.engine_apps.celery_probe:app"\ntask = "nope"\n'
            f'cwd = "{REPO}"',
            "'nope' is not registered",
        ),
        "immediate": (
            'engine = "huey"\napp = "immediate:huey"\ntask = "immediate.add"\nbroker_env = "U"',
            "immediate = True",
        ),
        "no_broker_env": ('engine = "dramatiq"\napp = "actors"\ntask = "add"', "broker_env"),
        "own_setting": (
            'engine = "celery"\napp = "eagerapp:app"\ntask = "add"\nacks_late = true',
            "acks_late configures the harness's own celery app",
        ),
    }
    for name, (system, said) in cases.items():
        with pytest.raises(ScenarioError) as raised:
            load_scenario(_write(tmp_path, name, system))
        message = str(raised.value)
        assert said in message, (name, message)
        assert "\n" not in message, (name, message)


@pytest.mark.processes
@pytest.mark.engines
def test_the_broken_example_app_fails_naming_its_job(tmp_path: Path) -> None:
    outcome = run_scenario(
        load_scenario(EXAMPLES / "broken_celery_app" / "scenario.toml"), tmp_path / "run"
    )
    assert outcome.status == "fail", outcome.report()
    wrong = [v for v in outcome.result.verdict.violations if v.check == "correct_values"]
    assert wrong, outcome.report()
    assert wrong[0].jobs == (0,), outcome.report()
    assert "executions disagree" in wrong[0].message, outcome.report()


@pytest.mark.processes
@pytest.mark.engines
def test_a_clean_example_app_passes_and_its_values_are_judged(tmp_path: Path) -> None:
    outcome = run_scenario(
        load_scenario(REPO / "scenarios" / "engine_apps" / "huey_clean.toml"), tmp_path / "run"
    )
    assert outcome.status == "pass", outcome.report()
    submitted = [e for e in _events(tmp_path / "run") if e["ev"] == contract.COMPLETED]
    assert len(submitted) == 6, outcome.report()
    assert all(e["ok"] for e in submitted), outcome.report()
