"""Faults act on whole process trees, and each proves its effect. A worker whose work runs
in processes that left its tree (a daemon's double fork) goes on working through a pause or
a kill of the tree: the fault proves nothing and the verdict says so (unknown), never pass.
The same faults on a worker whose children stay in its tree are verified. ``scope = "main"``
strikes the top process only, and only what that process writes must stop."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from harness.scenario import load_scenario, run_scenario
from harness.scenario.running import ScenarioOutcome
from tests.support import REPO

pytestmark = pytest.mark.processes

REPO = REPO
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


def _pool_app(fault: str, detach: bool = False) -> str:
    """The tutorial master, and a worker whose two children each take and put on their own
    connection (its top process only waits for them); with ``detach`` they leave its tree."""
    how = ', "detach"' if detach else ""
    return f"""scenario = 2
name = "pool worker"
description = "a worker whose work runs in two child processes"
seed = 3

[system]
kind = "managers"
cwd = "{TUTORIAL}"
master = ["{{python}}", "task_master.py", "{{port}}", "{{authkey}}", "16", "0.2", "6"]
worker = ["{{python}}", "{APPS / "pool_worker.py"}", "127.0.0.1", "{{port}}", "{{authkey}}", "2", "3", "0.25"{how}]
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


def test_a_pause_that_misses_detached_workers_is_unknown(tmp_path: Path) -> None:
    outcome = _run(tmp_path, _pool_app(PAUSE.format(scope=""), detach=True))
    assert outcome.status == "unknown", outcome.report()
    [message] = _coverage(outcome)
    assert "fault 0 (pause worker-1) did not take effect: worker-1 wrote" in message
    assert "while paused" in message


def test_a_pause_of_the_tree_stops_the_pool_and_is_verified(tmp_path: Path) -> None:
    outcome = _run(tmp_path, _pool_app(PAUSE.format(scope="")))
    assert _coverage(outcome) == [], outcome.report()
    assert outcome.status == "pass", outcome.report()


def test_a_kill_that_misses_detached_workers_is_unknown(tmp_path: Path) -> None:
    outcome = _run(tmp_path, _pool_app(KILL.format(scope=""), detach=True))
    assert outcome.status != "pass", outcome.report()
    assert any("after it was killed" in m for m in _coverage(outcome)), outcome.report()


def test_a_kill_of_the_tree_is_verified_gone(tmp_path: Path) -> None:
    outcome = _run(tmp_path, _pool_app(KILL.format(scope="")))
    assert _coverage(outcome) == [], outcome.report()
    lines = outcome.result.history.select("fault_effect")
    assert [e.get("verified") for e in lines] == [True]
    assert len(lines[0].get("pids")) == 3  # the worker and its two children


def test_a_pause_of_the_top_process_is_judged_by_what_that_process_wrote(
    tmp_path: Path,
) -> None:
    """scope = "main": the pool's children were meant to go on; the top process stopped."""
    outcome = _run(tmp_path, _pool_app(PAUSE.format(scope='scope = "main"')))
    assert _coverage(outcome) == [], outcome.report()
    [effect] = outcome.result.history.select("fault_effect")
    assert effect.get("scope") == "main"
    assert len(effect.get("pids")) == 1


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
def test_a_dramatiq_run_that_never_reaches_its_window_is_unknown(tmp_path: Path) -> None:
    """A pause that ends long before any lease could matter: the duplicate the scenario
    is for never happens, so the run proves nothing about it."""
    text = _dramatiq_pause("").replace(
        "within_s = 45", 'within_s = 45\nreached = ["duplicate_dropped"]'
    )
    outcome = _run(tmp_path, text)
    assert outcome.status == "unknown", outcome.report()
    unknowns = [v.message for v in outcome.result.verdict.unknowns]
    assert "never reached: duplicate_dropped; the run did not show what it is for" in unknowns


@needs_dramatiq
def test_a_dramatiq_pause_of_the_tree_is_verified(tmp_path: Path) -> None:
    outcome = _run(tmp_path, _dramatiq_pause(""))
    assert _coverage(outcome) == [], outcome.report()
    [effect] = outcome.result.history.select("fault_effect")
    assert effect.get("verified") is True
    assert len(effect.get("pids")) >= 2
