"""The job runner sends outcomes back in batches and still knows which job runs.

A real job process per test: a crash or a time limit is blamed on exactly the job that
was running; outcomes the dead child had not sent yet are not lost, their jobs run again;
a time limit counts from the job's own start, not from the start of its batch.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest

from distq.events import read_events
from distq.jobs import Result, WireJob
from distq.runner import JobRunner
from tests.support import REPO

pytestmark = pytest.mark.processes

REPO_ROOT = REPO

NEVER_FLUSH_S = 3600.0  # the child keeps every outcome until its batch is done


def unpicklable(n: int) -> Callable[[], int]:
    """A task (``tests.distq.test_runner_batching:unpicklable``) whose value cannot be pickled."""
    return lambda: n


def job(job_id: int, task: str, *args: Any, time_limit_s: float | None = None) -> WireJob:
    return (job_id, task, args, 1, time_limit_s, None)


@pytest.fixture
def make_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., JobRunner]]:
    # The job process gets our sys.path: let it import this module's tasks as a worker would.
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    runners: list[JobRunner] = []

    def make(flush_s: float = NEVER_FLUSH_S) -> JobRunner:
        runner = JobRunner("w", str(tmp_path / "w.events.jsonl"), time.monotonic(), flush_s=flush_s)
        runners.append(runner)
        runner.start()
        runner.wait_ready()
        return runner

    yield make
    for runner in runners:
        runner.close()
    # Spawning started multiprocessing's resource tracker in this process; a worker's dies
    # with the worker, ours would outlive the test.
    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop is not None:
        stop()


def run(runner: JobRunner, jobs: list[WireJob]) -> tuple[bool, list[Result]]:
    results: list[Result] = []
    finished = runner.run(jobs, on_result=results.append, on_tick=lambda: False, tick_s=0.05)
    return finished, results


def by_job(results: list[Result]) -> dict[int, Result]:
    counts = Counter(result.job_id for result in results)
    assert [job_id for job_id, n in counts.items() if n > 1] == [], "an outcome came twice"
    return {result.job_id: result for result in results}


def started(tmp_path: Path) -> Counter[int]:
    events = read_events(tmp_path / "w.events.jsonl")
    return Counter(e["job"] for e in events if e["ev"] == "started")


def test_a_batch_of_tiny_jobs_yields_each_outcome_once_in_order(
    make_runner: Callable[..., JobRunner],
) -> None:
    runner = make_runner(flush_s=0.01)
    finished, results = run(runner, [job(i, "square", i) for i in range(500)])
    assert finished
    assert [(r.job_id, r.ok, r.value, r.worker, r.attempt) for r in results] == [
        (i, True, i * i, "w", 1) for i in range(500)
    ]


def test_a_crash_is_blamed_on_its_job_and_unsent_outcomes_run_again(
    make_runner: Callable[..., JobRunner], tmp_path: Path
) -> None:
    runner = make_runner()
    jobs = [job(i, "square", i) for i in range(4)] + [job(4, "crash")]
    jobs += [job(i, "square", i) for i in range(5, 8)]
    finished, results = run(runner, jobs)
    assert finished
    out = by_job(results)
    assert sorted(out) == list(range(8))
    assert (out[4].ok, out[4].error) == (False, "job process exited with code 13")
    assert all(out[i].ok and out[i].value == i * i for i in range(8) if i != 4)
    # Jobs 0-3 finished before the crash, but their outcomes died with the child.
    assert started(tmp_path) == Counter({0: 2, 1: 2, 2: 2, 3: 2, 4: 1, 5: 1, 6: 1, 7: 1})
    killed = [e for e in read_events(tmp_path / "w.events.jsonl") if e["ev"] == "runner_killed"]
    assert [(e["job"], e["reason"], e["time_limit_s"]) for e in killed] == [
        (4, "job process exited with code 13", None)
    ]


def test_outcomes_sent_before_a_crash_are_not_run_again(
    make_runner: Callable[..., JobRunner], tmp_path: Path
) -> None:
    runner = make_runner(flush_s=0.0)  # every outcome leaves before the next job starts
    finished, results = run(runner, [job(0, "square", 3), job(1, "crash", 7)])
    assert finished
    out = by_job(results)
    assert (out[0].value, out[1].error) == (9, "job process exited with code 7")
    assert started(tmp_path) == Counter({0: 1, 1: 1})


def test_a_time_limit_kills_only_the_job_over_it(
    make_runner: Callable[..., JobRunner], tmp_path: Path
) -> None:
    runner = make_runner()
    jobs = [job(0, "square", 2), job(1, "hang", time_limit_s=0.3), job(2, "square", 5)]
    begun = time.monotonic()
    finished, results = run(runner, jobs)
    assert finished
    assert 0.3 <= time.monotonic() - begun < 10
    out = by_job(results)
    assert (out[0].value, out[2].value) == (4, 25)
    assert (out[1].ok, out[1].error) == (False, "time limit of 0.3 s exceeded")
    assert started(tmp_path)[1] == 1
    # The history says which limit the kill enforced (a crash's kill has none).
    killed = [e for e in read_events(tmp_path / "w.events.jsonl") if e["ev"] == "runner_killed"]
    assert [(e["job"], e["time_limit_s"]) for e in killed] == [(1, 0.3)]


def test_a_time_limit_counts_from_the_jobs_own_start(
    make_runner: Callable[..., JobRunner],
) -> None:
    runner = make_runner()
    # Counted from the start of the batch, job 1 would be killed at 0.9 s, 0.1 s before
    # it ends; counted from its own start, it has 0.4 s to spare.
    jobs = [job(0, "sleep", 0.5), job(1, "sleep", 0.5, "ok", time_limit_s=0.9)]
    finished, results = run(runner, jobs)
    assert finished
    assert [(r.job_id, r.ok, r.value) for r in results] == [(0, True, 0.5), (1, True, "ok")]


def test_an_unpicklable_value_fails_its_job_only(
    make_runner: Callable[..., JobRunner],
) -> None:
    runner = make_runner()
    jobs = [
        job(0, "square", 3),
        job(1, "tests.distq.test_runner_batching:unpicklable", 1),
        job(2, "threading:Lock"),
        job(3, "square", 4),
    ]
    finished, results = run(runner, jobs)
    assert finished
    out = by_job(results)
    assert (out[0].value, out[3].value) == (9, 16)
    for job_id in (1, 2):
        assert not out[job_id].ok
        assert (out[job_id].error or "").startswith("result not serialisable: ")


def test_an_abandoned_batch_kills_the_child_and_reports_nothing_more(
    make_runner: Callable[..., JobRunner],
) -> None:
    runner = make_runner()
    results: list[Result] = []
    begun = time.monotonic()
    finished = runner.run(
        [job(0, "hang"), job(1, "square", 1)],
        on_result=results.append,
        on_tick=lambda: time.monotonic() - begun > 0.2,
        tick_s=0.05,
    )
    assert not finished
    assert results == []
    # The runner starts a fresh child for the next batch.
    assert run(runner, [job(2, "square", 3)]) == (True, [Result(2, True, 9, None, "w", 1)])


def test_on_sent_runs_once_while_the_job_process_works(
    make_runner: Callable[..., JobRunner],
) -> None:
    runner = make_runner()
    results: list[Result] = []
    seen_when_sent: list[int] = []
    # The crash makes the runner start a second job process for job 2: still one call.
    finished = runner.run(
        [job(0, "sleep", 0.2), job(1, "crash"), job(2, "square", 2)],
        on_result=results.append,
        on_tick=lambda: False,
        tick_s=0.05,
        on_sent=lambda: seen_when_sent.append(len(results)),
    )
    assert finished
    assert seen_when_sent == [0]
    assert sorted((r.job_id, r.ok) for r in results) == [(0, True), (1, False), (2, True)]


def test_a_job_done_in_time_is_not_killed_when_the_parent_looks_late(
    make_runner: Callable[..., JobRunner], tmp_path: Path
) -> None:
    runner = make_runner()
    # on_sent stands for a slow round trip to the master: by the time the parent looks,
    # the job's 0.5 s limit has passed, but the job is done and its outcome is waiting.
    for attempt in range(3):  # three needless kills in a row used to stop the runner
        results: list[Result] = []
        finished = runner.run(
            [job(attempt, "sleep", 0.2, "ok", time_limit_s=0.5)],
            on_result=results.append,
            on_tick=lambda: False,
            tick_s=0.05,
            on_sent=lambda: time.sleep(0.8),
        )
        assert finished
        assert [(r.job_id, r.ok, r.value) for r in results] == [(attempt, True, "ok")]
    events = list(read_events(tmp_path / "w.events.jsonl"))
    assert [e for e in events if e["ev"] == "runner_killed"] == []
    assert started(tmp_path) == Counter({0: 1, 1: 1, 2: 1})
