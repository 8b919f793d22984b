"""``distq master --journal``: real masters SIGKILLed and restarted on their journal, real
workers rejoining them; the results file and the history hold every job exactly once."""

from __future__ import annotations

import json
import os
import resource
import secrets
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distq.errors import EXIT_MASTER_LOST, EXIT_OUTPUT_FAILED, EXIT_USAGE
from distq.events import read_events
from harness.checks import CheckContext, judge
from harness.history import History
from harness.runtime.cluster import Cluster
from harness.systems.distq import builtin_expected

#: The values distq's built-in tasks must yield, for correct_values.
SQUARES = CheckContext(expected=builtin_expected)

pytestmark = pytest.mark.processes

BOUND_S = 60.0  # generous: a loaded 2-core machine


def result_lines(cluster: Cluster) -> list[dict[str, Any]]:
    return [json.loads(line) for line in cluster.results_path.read_text().splitlines()]


def journal_args(tmp_path: Path, jobs: int, *extra: str) -> list[str]:
    return [
        "--task", "square", "--count", str(jobs), "--args", "[3, 0.02]",
        "--journal", str(tmp_path / "journal.sqlite"), *extra,
    ]  # fmt: skip


def wait_results(cluster: Cluster, count: int) -> None:
    seen = 0

    def enough(event: dict[str, Any]) -> bool:
        nonlocal seen
        seen += event.get("ev") == "result_accepted"
        return seen >= count

    cluster.master_events.wait_for(enough, BOUND_S, f"{count} results")


def test_a_master_killed_twice_mid_run_resumes_and_every_job_has_one_result(
    tmp_path: Path,
) -> None:
    jobs = 200
    with Cluster(tmp_path / "run", journal_args(tmp_path, jobs)) as cluster:
        for _ in range(2):
            cluster.add_worker(extra_args=["--reconnect-s", "30"])
        wait_results(cluster, 20)
        cluster.restart_master()
        wait_results(cluster, 80)  # counts across both logs' incarnations
        cluster.restart_master()
        assert cluster.wait_master(BOUND_S) == 0
        codes = [worker.wait(BOUND_S) for worker in cluster.workers()]
    assert codes == [0, 0]  # they rejoined each time and finished
    lines = result_lines(cluster)
    assert Counter(line["job"] for line in lines) == Counter(range(jobs))
    assert all(line["value"] == 9 for line in lines)
    history = History.load_run(cluster.run_dir)
    verdict = judge(history, ["exactly_once", "correct_values"], SQUARES)
    assert verdict.status == "pass", verdict.report(history)
    ready = history.select("master_ready")
    assert [event.get("resumed") for event in ready] == [False, True, True]


def test_jobs_leased_when_the_master_died_count_no_attempt(tmp_path: Path) -> None:
    """With one attempt allowed, a lease the crash took would make its job dead."""
    args = journal_args(tmp_path, 6, "--max-attempts", "1", "--lease-timeout-s", "30")
    args[args.index("[3, 0.02]")] = "[3, 0.5]"
    with Cluster(tmp_path / "run", args) as cluster:
        worker = cluster.add_worker(extra_args=["--prefetch", "1"])
        cluster.master_events.wait_for(lambda e: e.get("ev") == "leased", BOUND_S, "a lease")
        cluster.signal(worker.name, signal.SIGSTOP)  # holds its lease while the master dies
        cluster.restart_master()
        worker.popen.kill()
        worker.popen.wait()
        cluster.add_worker("worker-2")
        assert cluster.wait_master(BOUND_S) == 0
    lines = result_lines(cluster)
    assert sorted(line["job"] for line in lines) == list(range(6))
    assert all(line["ok"] for line in lines), lines


def test_a_finished_journal_runs_nothing_again(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", journal_args(tmp_path, 5)) as cluster:
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
        before = cluster.results_path.read_text()
        cluster.start_master()
        assert cluster.wait_master(BOUND_S) == 0
    assert cluster.results_path.read_text() == before
    assert len(before.splitlines()) == 5


def _master(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISTQ_AUTHKEY": secrets.token_hex(16)}
    return subprocess.run(
        [sys.executable, "-m", "distq", "master", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=BOUND_S,
    )


def test_a_journal_of_another_job_set_is_one_line_exit_2_and_untouched(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", journal_args(tmp_path, 3)) as cluster:
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
    journal = tmp_path / "journal.sqlite"
    before = journal.read_bytes()
    done = _master(tmp_path, *journal_args(tmp_path, 4))
    assert done.returncode == EXIT_USAGE
    assert done.stderr.count("\n") == 1
    assert "different job set" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert journal.read_bytes() == before


def test_a_corrupt_journal_is_one_line_exit_2_and_untouched(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    journal.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    before = journal.read_bytes()
    done = _master(tmp_path, *journal_args(tmp_path, 3))
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.count("\n") == 1
    assert "--journal" in done.stderr
    assert "Traceback" not in done.stderr
    assert journal.read_bytes() == before


def test_a_resumed_master_that_finishes_waits_for_the_last_ones_workers_to_rejoin(
    tmp_path: Path,
) -> None:
    """worker-1 is stopped (SIGSTOP) while its job runs and the master dies; the restarted
    master gives the job to worker-2 and finishes. worker-1, continued only once worker-2
    has left, must still find a master to rejoin and be told the work is done (exit 0),
    not keep knocking at a closed port and exit 5."""
    args = ["--task", "sleep", "--count", "1", "--args", "[0.3]"]
    args += ["--journal", str(tmp_path / "journal.sqlite")]
    with Cluster(tmp_path / "run", args) as cluster:
        away = cluster.add_worker("worker-1", extra_args=["--reconnect-s", "5"])
        cluster.master_events.wait_for(lambda e: e.get("ev") == "leased", BOUND_S, "a lease")
        cluster.signal(away.name, signal.SIGSTOP)
        cluster.restart_master()
        assert cluster.add_worker("worker-2").wait(BOUND_S) == 0  # did the job, told to stop
        cluster.signal(away.name, signal.SIGCONT)
        assert cluster.wait_master(BOUND_S) == 0
        assert away.wait(BOUND_S) == 0
    rejoined = [e for e in master_events(cluster) if e["ev"] == "worker_rejoined"]
    assert [e["worker"] for e in rejoined] == ["worker-1"]


def master_events(cluster: Cluster) -> list[dict[str, Any]]:
    return list(read_events(cluster.events_path("master")))


def test_acknowledged_submissions_and_their_close_survive_the_master(tmp_path: Path) -> None:
    from distq.client import Submitter

    args = ["--open", "--journal", str(tmp_path / "journal.sqlite")]
    with Cluster(tmp_path / "run", args) as cluster:
        assert cluster.address is not None
        with Submitter.connect(cluster.address, cluster.authkey) as submitter:
            ids = submitter.submit_many([("square", [n], None) for n in range(5)])
        cluster.restart_master()  # no worker yet: the jobs exist only in the journal
        with Submitter.connect(cluster.address, cluster.authkey) as submitter:
            late = submitter.submit("echo", ["late"])
            submitter.close_submissions()
        cluster.restart_master()  # closed stays closed: it stops once the six are done
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
    assert ids == [0, 1, 2, 3, 4]
    assert late == 5
    values = {line["job"]: line["value"] for line in result_lines(cluster)}
    assert values == {0: 0, 1: 1, 2: 4, 3: 9, 4: 16, 5: "late"}


def test_a_journal_in_use_by_a_running_master_is_refused(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", journal_args(tmp_path, 3)) as cluster:
        done = _master(tmp_path, *journal_args(tmp_path, 3))
        assert cluster.master is not None
        assert cluster.master.alive()
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.count("\n") == 1
    assert "in use by another running master" in done.stderr


def _limited_file_size(limit: int) -> Callable[[], None]:
    def setup() -> None:  # in the child, before exec; an ignored disposition survives exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return setup


def _run_master_and_worker(
    tmp_path: Path, jobs: int, tag: str, preexec: Callable[[], None] | None = None
) -> tuple[int, str, int, str]:
    """A master on ``tmp_path/journal.sqlite`` and one worker leasing one job at a time
    (a commit per result). Returns (master code, master stderr, worker code, its stderr)."""
    env = {**os.environ, "DISTQ_AUTHKEY": "journal-fail-" + "k" * 32}
    master = subprocess.Popen(
        [
            sys.executable, "-m", "distq", "master", "--task", "square", "--count", str(jobs),
            "--args", "[3, 0]", "--journal", "journal.sqlite", "--results", "results.jsonl",
            "--events", f"master-{tag}.jsonl",
        ],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=preexec,
    )  # fmt: skip
    worker = None
    try:
        assert master.stdout is not None
        ready = master.stdout.readline()
        assert ready.startswith("READY "), ready
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "distq", "worker", "--connect", ready.split()[1],
                "--prefetch", "1",
            ],
            env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _, master_err = master.communicate(timeout=BOUND_S)
        _, worker_err = worker.communicate(timeout=BOUND_S)
        return master.returncode, master_err, worker.returncode, worker_err
    finally:
        for proc in (master, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_journal_that_cannot_grow_stops_the_master_with_exit_8_and_loses_no_result(
    tmp_path: Path,
) -> None:
    """SQLite's writes fail past a file-size limit (EFBIG): the master stops at once, the
    accepted results are in the results file or on stderr, the worker sees the master
    lost; a master resumed on that journal finishes the run, each job exactly once."""
    jobs = 600  # the journal's log grows a page per commit and outgrows the limit first
    code, err, worker_code, worker_err = _run_master_and_worker(
        tmp_path, jobs, "limited", _limited_file_size(200_000)
    )
    assert code == EXIT_OUTPUT_FAILED, err
    assert "Traceback" not in err, err + worker_err
    assert "Traceback" not in worker_err, err + worker_err
    messages = [line for line in err.splitlines() if not line.startswith("{")]
    assert len(messages) == 1, err
    assert "cannot write --journal journal.sqlite" in messages[0], err
    assert worker_code == EXIT_MASTER_LOST, worker_err
    accepted = {
        event["job"]
        for event in read_events(tmp_path / "master-limited.jsonl")
        if event.get("ev") == "result_accepted"
    }
    assert accepted  # the limit was hit mid-run, not before the first result
    written = [
        json.loads(line)["job"] for line in (tmp_path / "results.jsonl").read_text().splitlines()
    ]
    handed = [json.loads(line)["job"] for line in err.splitlines() if line.startswith("{")]
    assert len(written) < jobs
    assert accepted <= set(written) | set(handed)
    code, err, worker_code, _ = _run_master_and_worker(tmp_path, jobs, "resumed")
    assert (code, worker_code) == (0, 0), err
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert Counter(json.loads(line)["job"] for line in lines) == Counter(range(jobs))
