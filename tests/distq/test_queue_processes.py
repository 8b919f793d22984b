"""The queue's promises, checked with real processes on loopback and real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from distq.errors import EXIT_AUTH_REJECTED, EXIT_MASTER_LOST
from distq.events import read_events
from harness.follow import EventFollower
from harness.runtime.cluster import Cluster

pytestmark = pytest.mark.processes

BOUND_S = 60.0  # generous: a loaded 2-core machine


def write_jobs(path: Path, jobs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


def results(cluster: Cluster) -> dict[int, dict[str, Any]]:
    """The master's result output, asserting each job appears once."""
    lines = [json.loads(line) for line in cluster.results_path.read_text().splitlines()]
    counts = Counter(line["job"] for line in lines)
    assert [job for job, n in counts.items() if n > 1] == [], "a job has two results"
    return {line["job"]: line for line in lines}


def master_events(cluster: Cluster, ev: str | None = None) -> list[dict[str, Any]]:
    events = list(read_events(cluster.events_path("master")))
    return [e for e in events if ev is None or e["ev"] == ev]


def test_sigkilled_worker_job_is_completed_by_another_worker_once(tmp_path: Path) -> None:
    jobs = write_jobs(
        tmp_path / "jobs.jsonl", [{"task": "square", "args": [i, 0.3]} for i in range(6)]
    )
    with Cluster(tmp_path / "run", ["--jobs", str(jobs), "--lease-timeout-s", "30"]) as cluster:
        victim = cluster.add_worker("worker-1", extra_args=["--prefetch", "1"])
        started = cluster.master_events.wait_for(
            lambda e: e["ev"] == "leased" and e["worker"] == "worker-1", BOUND_S, "a lease"
        )
        cluster.signal(victim.name, signal.SIGKILL)
        cluster.add_worker("worker-2")
        assert cluster.wait_master(BOUND_S) == 0

    held = started["job"]
    lost = master_events(cluster, "worker_lost")
    assert [e["jobs"] for e in lost if e["worker"] == "worker-1"] == [[held]]
    # Noticed through the closed connection, long before the 30 s lease could expire.
    assert master_events(cluster, "lease_expired") == []
    out = results(cluster)
    assert sorted(out) == list(range(6))
    assert out[held]["worker"] == "worker-2"
    assert out[held]["attempt"] == 2
    assert all(out[i]["value"] == i * i for i in range(6))


def test_paused_worker_loses_its_lease_and_its_late_result_is_dropped(tmp_path: Path) -> None:
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [{"task": "sleep", "args": [0.5, "first"]}, {"task": "sleep", "args": [4.0, "keepalive"]}],
    )
    with Cluster(tmp_path / "run", ["--jobs", str(jobs), "--lease-timeout-s", "1"]) as cluster:
        paused = cluster.add_worker("worker-1", extra_args=["--prefetch", "1"])
        EventFollower(cluster.events_path("worker-1")).wait_for(
            lambda e: e["ev"] == "started" and e["job"] == 0, BOUND_S, "job 0 started"
        )
        cluster.signal(paused.name, signal.SIGSTOP)
        cluster.master_events.wait_for(
            lambda e: e["ev"] == "lease_expired" and e["job"] == 0,
            BOUND_S,
            "lease of job 0 expired",
        )
        cluster.add_worker("worker-2", extra_args=["--prefetch", "1"])
        cluster.master_events.wait_for(
            lambda e: e["ev"] == "result_accepted" and e["job"] == 0, BOUND_S, "job 0 done"
        )
        cluster.signal(paused.name, signal.SIGCONT)
        cluster.master_events.wait_for(
            lambda e: e["ev"] == "duplicate_dropped" and e["job"] == 0,
            BOUND_S,
            "late result dropped",
        )
        assert cluster.wait_master(BOUND_S) == 0

    out = results(cluster)
    assert out[0]["worker"] == "worker-2"
    assert out[0]["value"] == "first"
    dropped = master_events(cluster, "duplicate_dropped")
    assert [(e["job"], e["worker"], e["attempt"]) for e in dropped] == [(0, "worker-1", 1)]


def test_job_over_its_time_limit_is_killed_and_retried(tmp_path: Path) -> None:
    marker = tmp_path / "hung-once"
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [{"task": "tests.tasks:hang_once", "args": [str(marker), 42], "time_limit_s": 0.5}],
    )
    with Cluster(tmp_path / "run", ["--jobs", str(jobs)]) as cluster:
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0

    failed = master_events(cluster, "attempt_failed")
    assert [(e["attempt"], e["reason"]) for e in failed] == [(1, "time limit of 0.5 s exceeded")]
    assert results(cluster)[0] == {
        "job": 0,
        "ok": True,
        "value": 42,
        "error": None,
        "worker": "worker-1",
        "attempt": 2,
    }


def test_poison_job_ends_dead_after_max_attempts_and_the_rest_complete(tmp_path: Path) -> None:
    poison_jobs: list[dict[str, Any]] = [{"task": "crash"}, {"task": "hang", "time_limit_s": 0.3}]
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        poison_jobs + [{"task": "square", "args": [i]} for i in range(2, 12)],
    )
    with Cluster(tmp_path / "run", ["--jobs", str(jobs), "--max-attempts", "3"]) as cluster:
        cluster.add_worker()
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0

    out = results(cluster)
    assert sorted(out) == list(range(12))
    for poison, reason in (
        (0, "job process exited with code 13"),
        (1, "time limit of 0.3 s exceeded"),
    ):
        assert out[poison]["ok"] is False
        assert out[poison]["error"].startswith("dead after 3 attempts")
        assert out[poison]["error"].count(reason) == 3
        assert len([e for e in master_events(cluster, "leased") if e["job"] == poison]) == 3
    assert all(out[i]["value"] == i * i for i in range(2, 12))


def test_crashed_job_is_retried_and_succeeds(tmp_path: Path) -> None:
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [{"task": "tests.tasks:crash_once", "args": [str(tmp_path / "crashed"), 7]}],
    )
    with Cluster(tmp_path / "run", ["--jobs", str(jobs)]) as cluster:
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
    assert results(cluster)[0]["value"] == 7
    assert [e["reason"] for e in master_events(cluster, "attempt_failed")] == [
        "job process exited with code 9"
    ]


def test_batches_of_ten_never_overlap(tmp_path: Path) -> None:
    jobs = write_jobs(
        tmp_path / "jobs.jsonl", [{"task": "square", "args": [i, 0.01]} for i in range(35)]
    )
    with Cluster(tmp_path / "run", ["--jobs", str(jobs), "--batch-size", "10"]) as cluster:
        for _ in range(3):
            cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0

    closed_at: dict[int, int] = {}
    events = master_events(cluster)
    for line, event in enumerate(events):
        if event["ev"] == "batch_closed":
            closed_at[event["batch"]] = line
    assert sorted(closed_at) == [0, 1, 2, 3]
    for line, event in enumerate(events):
        if event["ev"] == "leased":
            assert event["batch"] == event["job"] // 10
            if event["batch"] > 0:
                assert closed_at[event["batch"] - 1] < line, f"job {event['job']} leased early"
    assert sorted(results(cluster)) == list(range(35))


def test_wrong_key_worker_is_rejected_and_the_master_keeps_serving(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--task", "square", "--count", "20"]) as cluster:
        intruder = cluster.add_worker("intruder", authkey=b"not-the-key-0123456789")
        assert intruder.wait(BOUND_S) == EXIT_AUTH_REJECTED
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0

    log = intruder.log_path.read_text().strip().splitlines()
    assert log == [f"distq worker: error: the master at {cluster.address} rejected our authkey"]
    rejected = master_events(cluster, "auth_rejected")
    assert len(rejected) == 1
    assert rejected[0]["peer"].startswith("127.0.0.1:")
    assert "intruder" not in {e.get("worker") for e in master_events(cluster)}
    assert sorted(results(cluster)) == list(range(20))


def test_worker_exits_cleanly_when_its_master_disappears(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--task", "hang", "--count", "2", "--args", "[]"]) as cluster:
        worker = cluster.add_worker(wait_joined=True)
        cluster.master_events.wait_for(lambda e: e["ev"] == "leased", BOUND_S, "a lease")
        assert cluster.master is not None
        cluster.signal("master", signal.SIGKILL)
        assert worker.wait(BOUND_S) == EXIT_MASTER_LOST

    log = worker.log_path.read_text()
    assert "Traceback" not in log
    assert (
        log.strip()
        .splitlines()[-1]
        .startswith(f"distq worker: error: lost the master at {cluster.address}")
    )
    exits = [e for e in read_events(cluster.events_path("worker-1")) if e["ev"] == "worker_exit"]
    assert [e["code"] for e in exits] == [EXIT_MASTER_LOST]


def test_a_reconnecting_worker_gives_up_when_its_master_stays_gone(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--task", "hang", "--count", "2", "--args", "[]"]) as cluster:
        worker = cluster.add_worker(wait_joined=True, extra_args=["--reconnect-s", "1"])
        cluster.master_events.wait_for(lambda e: e["ev"] == "leased", BOUND_S, "a lease")
        cluster.signal("master", signal.SIGKILL)
        assert worker.wait(BOUND_S) == EXIT_MASTER_LOST

    last = worker.log_path.read_text().strip().splitlines()[-1]
    assert last.startswith(f"distq worker: error: lost the master at {cluster.address}")
    assert last.endswith("; not back within 1 s")
    events = read_events(cluster.events_path("worker-1"))
    assert [e["ev"] for e in events if e["ev"] in ("reconnected", "worker_exit")] == ["worker_exit"]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_while_rejoining_ends_the_worker_with_the_signals_code(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    with Cluster(tmp_path / "run", ["--task", "hang", "--count", "2", "--args", "[]"]) as cluster:
        worker = cluster.add_worker(wait_joined=True, extra_args=["--reconnect-s", "600"])
        cluster.master_events.wait_for(lambda e: e["ev"] == "leased", BOUND_S, "a lease")
        cluster.signal("master", signal.SIGKILL)
        cluster.master.popen.wait(BOUND_S)  # type: ignore[union-attr]
        cluster.signal(worker.name, signum)
        assert worker.wait(BOUND_S) == code  # not 600 s later, not exit 5

    last = worker.log_path.read_text().strip().splitlines()[-1]
    assert last == (
        f"distq worker worker-1: stopped by signal {int(signum)} while rejoining the master; "
        "it takes back what this worker held"
    )


def test_sigterm_hands_leases_back_without_counting_an_attempt(tmp_path: Path) -> None:
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [{"task": "sleep", "args": [30, "late"]}, {"task": "square", "args": [3]}],
    )
    with Cluster(tmp_path / "run", ["--jobs", str(jobs), "--max-attempts", "1"]) as cluster:
        first = cluster.add_worker(extra_args=["--prefetch", "1"])
        cluster.master_events.wait_for(
            lambda e: e["ev"] == "leased" and e["job"] == 0, BOUND_S, "job 0 leased"
        )
        cluster.signal(first.name, signal.SIGTERM)
        assert first.wait(BOUND_S) == 0
        cluster.master_events.wait_for(
            lambda e: e["ev"] == "requeued" and e["job"] == 0, BOUND_S, "job 0 handed back"
        )
        assert "dead" not in {e["ev"] for e in master_events(cluster)}


def test_idle_worker_exits_when_there_is_no_work(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"task": "sleep", "args": [3, "busy"]}])
    with Cluster(tmp_path / "run", ["--jobs", str(jobs)]) as cluster:
        cluster.add_worker("busy", wait_joined=True)
        cluster.master_events.wait_for(lambda e: e["ev"] == "leased", BOUND_S, "a lease")
        idle = cluster.add_worker("idle", extra_args=["--idle-exit-s", "0.5"])
        assert idle.wait(BOUND_S) == 0
        assert cluster.wait_master(BOUND_S) == 0
    assert results(cluster)[0]["worker"] == "busy"


def test_worker_gives_up_on_a_peer_that_never_answers_the_handshake(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env = dict(os.environ, DISTQ_AUTHKEY="handshake-test-key-0123")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "distq",
                "worker",
                "--connect",
                f"127.0.0.1:{port}",
                "--handshake-timeout-s",
                "0.5",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=BOUND_S,
        )
    assert done.returncode == 6
    assert done.stderr.strip().splitlines() == [
        f"distq worker: error: the peer at 127.0.0.1:{port} accepted the connection but did "
        "not answer the handshake within 0.5 s"
    ]


def test_an_open_master_takes_submissions_until_they_close(tmp_path: Path) -> None:
    from distq.client import Submitter
    from distq.errors import UsageError

    with Cluster(tmp_path / "run", ["--open"]) as cluster:
        assert cluster.address is not None
        cluster.add_worker()
        with Submitter.connect(cluster.address, cluster.authkey) as submitter:
            first = submitter.submit_many([("square", [n], None) for n in range(5)])
            cluster.master_events.wait_for(
                lambda e: e["ev"] == "result_accepted" and e["job"] == 4, BOUND_S, "job 4 done"
            )
            assert cluster.master is not None, "open: it waits for more"
            assert cluster.master.alive(), "open: it waits for more"
            later = submitter.submit("echo", ["late"])
            submitter.close_submissions()
            with pytest.raises(UsageError, match="submissions are closed"):
                submitter.submit("square", [1])
        assert cluster.wait_master(BOUND_S) == 0
    assert first == [0, 1, 2, 3, 4]
    assert later == 5
    out = results(cluster)
    assert [out[n]["value"] for n in range(5)] == [0, 1, 4, 9, 16]
    assert out[5]["value"] == "late"


def test_submit_to_a_closed_master_is_one_line_exit_2(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"task": "sleep", "args": [5, "x"]}])
    with Cluster(tmp_path / "run", ["--jobs", str(jobs)]) as cluster:
        assert cluster.address is not None
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "distq",
                "submit",
                "--connect",
                cluster.address,
                "--task",
                "square",
            ],
            capture_output=True,
            text=True,
            timeout=BOUND_S,
            env=dict(os.environ, DISTQ_AUTHKEY=cluster.authkey.decode()),
        )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "distq submit: error: this master does not accept submissions (start it with --open)"
    ]
