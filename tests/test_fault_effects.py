"""Faults act on whole process trees, and each proves its effect: a fault aimed at a worker
whose work runs in child processes, with ``scope = "main"`` (the top process only), proves
nothing and the verdict says so (unknown), never pass; the default reaches the tree and is
verified."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from harness.scenario import load_scenario, run_scenario
from harness.scenario.running import ScenarioOutcome

pytestmark = pytest.mark.processes

REPO = Path(__file__).resolve().parent.parent
APPS = REPO / "tests" / "apps"
TUTORIAL = REPO / "examples" / "tutorial"


def _run(tmp_path: Path, text: str) -> ScenarioOutcome:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return run_scenario(load_scenario(path), tmp_path / "run")


def _coverage(outcome: ScenarioOutcome) -> list[str]:
    verdict = outcome.result.verdict
    return [
        v.message for v in (*verdict.violations, *verdict.unknowns) if v.check == "fault_coverage"
    ]


def _pool_app(fault: str) -> str:
    """The tutorial master, and a worker whose two children each take and put on their own
    connection (its top process only waits for them)."""
    return f"""scenario = 2
name = "pool worker"
description = "a worker whose work runs in two child processes"
seed = 3

[system]
kind = "managers"
cwd = "{TUTORIAL}"
master = ["{{python}}", "task_master.py", "{{port}}", "{{authkey}}", "16", "0.2", "6"]
worker = ["{{python}}", "{APPS / "pool_worker.py"}", "127.0.0.1", "{{port}}", "{{authkey}}", "2", "3", "0.25"]
tasks = "get_task_queue"
results = "get_result_queue"
expected = "examples.tutorial.tasks:square"

[cluster]
workers = 1

{fault}

[expect]
checks = ["exactly_once", "correct_values", "fault_coverage", "liveness"]
within_s = 60
"""


PAUSE = '[[faults]]\nwhen = {{ job_leased = 3 }}\ndo = "pause"\ntarget = "worker-1"\nduration_s = 1.5\n{scope}'
KILL = '[[faults]]\nwhen = {{ job_leased = 3 }}\ndo = "kill"\ntarget = "worker-1"\n{scope}'


def test_a_pause_of_the_top_process_only_misses_the_pool_and_is_unknown(tmp_path: Path) -> None:
    outcome = _run(tmp_path, _pool_app(PAUSE.format(scope='scope = "main"')))
    assert outcome.status == "unknown", outcome.report()
    [message] = _coverage(outcome)
    assert "fault 0 (pause worker-1) did not take effect: worker-1 wrote" in message
    assert "while paused" in message


def test_a_pause_of_the_tree_stops_the_pool_and_is_verified(tmp_path: Path) -> None:
    outcome = _run(tmp_path, _pool_app(PAUSE.format(scope="")))
    assert _coverage(outcome) == [], outcome.report()
    assert outcome.status == "pass", outcome.report()


def test_a_kill_of_the_top_process_only_leaves_the_pool_working_and_is_unknown(
    tmp_path: Path,
) -> None:
    outcome = _run(tmp_path, _pool_app(KILL.format(scope='scope = "main"')))
    assert outcome.status != "pass", outcome.report()
    assert any("after it was killed" in m for m in _coverage(outcome)), outcome.report()


def test_a_kill_of_the_tree_is_verified_gone(tmp_path: Path) -> None:
    outcome = _run(tmp_path, _pool_app(KILL.format(scope="")))
    assert _coverage(outcome) == [], outcome.report()
    lines = outcome.result.history.select("fault_effect")
    assert [e.get("verified") for e in lines] == [True]
    assert len(lines[0].get("pids")) == 3  # the worker and its two children


def test_a_pause_of_a_distq_worker_that_is_gone_proves_nothing(tmp_path: Path) -> None:
    text = """scenario = 2
name = "pause a dead worker"
description = "worker-1 is killed, then paused: the pause has nothing to stop"

[cluster]
workers = 2
lease_timeout_s = 2.0

[jobs]
task = "square"
count = 30
delay_s = 0.05

[[faults]]
when = { job_started = 2 }
do = "kill"
target = "worker-1"

[[faults]]
when = { job_started = 10 }
do = "pause"
target = "worker-1"
duration_s = 0.5

[expect]
checks = ["exactly_once", "correct_values", "fault_coverage"]
within_s = 60
"""
    outcome = _run(tmp_path, text)
    assert outcome.status == "unknown", outcome.report()
    assert any(
        "fault 1 (pause worker-1) did not take effect: no process to pause" in m
        for m in _coverage(outcome)
    ), outcome.report()


def _dramatiq_pause(scope: str) -> str:
    return f"""scenario = 2
name = "dramatiq worker paused"
description = "a Dramatiq worker (a parent and its forked worker process) paused for 2 s"
seed = 1

[cluster]
workers = 2

[jobs]
task = "square"
count = 16
delay_s = 0.3

[system]
kind = "engine"
engine = "dramatiq"
collect_s = 30.0

[[faults]]
when = {{ job_started = 2 }}
do = "pause"
target = "holder"
duration_s = 2.0
{scope}

[expect]
checks = ["exactly_once", "correct_values", "fault_coverage"]
within_s = 45
"""


needs_dramatiq = pytest.mark.skipif(
    importlib.util.find_spec("dramatiq") is None, reason="needs the engines extra (dramatiq)"
)


@needs_dramatiq
def test_a_dramatiq_pause_of_the_top_process_only_is_unknown(tmp_path: Path) -> None:
    outcome = _run(tmp_path, _dramatiq_pause('scope = "main"'))
    assert outcome.status == "unknown", outcome.report()
    assert any("while paused" in m for m in _coverage(outcome)), outcome.report()


@needs_dramatiq
def test_a_dramatiq_pause_of_the_tree_is_verified(tmp_path: Path) -> None:
    outcome = _run(tmp_path, _dramatiq_pause(""))
    assert _coverage(outcome) == [], outcome.report()
    [effect] = outcome.result.history.select("fault_effect")
    assert effect.get("verified") is True
    assert len(effect.get("pids")) >= 2
