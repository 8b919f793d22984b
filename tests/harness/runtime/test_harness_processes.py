"""The harness against real processes: faults are detected, and broken queues fail."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest

from harness import systems
from harness.runtime.faults import Fault, Trigger
from harness.runtime.run import RunSpec, run
from harness.scenario import load_scenario, run_scenario
from tests.support import REPO

REPO_ROOT = REPO

pytestmark = pytest.mark.processes

ALL_CHECKS = ("exactly_once", "correct_values", "fault_coverage", "liveness")
BROKEN = ["python", "-m", "tests.broken_distq"]


def square_jobs(path: Path, count: int, delay_s: float) -> Path:
    path.write_text(
        "".join(json.dumps({"task": "square", "args": [i, delay_s]}) + "\n" for i in range(count))
    )
    return path


def test_kill_of_the_worker_holding_job_n_is_detected_and_passes(tmp_path: Path) -> None:
    jobs = square_jobs(tmp_path / "jobs.jsonl", 30, 0.05)
    spec = RunSpec(
        master_args=("--jobs", str(jobs), "--lease-timeout-s", "30"),
        workers=3,
        faults=(Fault(Trigger("job_started", 5), "kill", "holder"),),
        checks=ALL_CHECKS,
    )
    result = run(spec, tmp_path / "run")
    assert result.verdict.status == "pass", result.report()
    killed = result.history.faults()[0]
    assert killed.get("expect") == "holder"
    lost = result.history.select("worker_lost", worker=killed.get("target"))
    assert lost
    assert 5 in lost[0].get("jobs")
    assert result.exit_codes[killed.get("target")] == -signal.SIGKILL


def test_pause_past_the_lease_passes_with_one_duplicate_dropped(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        json.dumps({"task": "sleep", "args": [0.5, "held"]})
        + "\n"
        + "".join(json.dumps({"task": "square", "args": [i, 0.2]}) + "\n" for i in range(1, 12))
    )
    spec = RunSpec(
        master_args=("--jobs", str(jobs), "--lease-timeout-s", "1"),
        workers=2,
        worker_args=("--prefetch", "1"),
        faults=(
            Fault(
                Trigger("job_started", 0),
                "pause",
                "holder",
                duration_s=3.0,
                expect="outlast_lease",
                # The worker's top process only: its job runner finishes job 0 meanwhile, so
                # the late result goes out the moment the worker resumes (a stopped runner
                # would race the heartbeat that tells the worker its lease is gone).
                scope="main",
            ),
        ),
        checks=ALL_CHECKS,
        lease_timeout_s=1.0,
    )
    result = run(spec, tmp_path / "run")
    assert result.verdict.status == "pass", result.report()
    dropped = result.history.select("duplicate_dropped")
    assert [event.job for event in dropped] == [0]


def test_wrong_key_workers_are_rejected_and_counted(tmp_path: Path) -> None:
    # The real workers start once the intruders are turned away: however slowly an
    # intruder's interpreter starts, the master is still serving when it knocks.
    jobs = square_jobs(tmp_path / "jobs.jsonl", 40, 0.05)
    spec = RunSpec(
        master_args=(
            "--jobs",
            str(jobs),
        ),
        workers=0,
        faults=(
            Fault(Trigger("after_s", 0.0), "wrong_key_worker", count=3),
            Fault(Trigger("auth_rejected", 3), "add_worker", count=2),
            Fault(Trigger("results", 10), "bad_handshakes", count=5),
        ),
        checks=(*ALL_CHECKS, "auth"),
    )
    result = run(spec, tmp_path / "run")
    assert result.verdict.status == "pass", result.report()
    assert sum(e.get("count", 1) for e in result.history.select("auth_rejected")) == 3 + 5
    assert [result.exit_codes[f"intruder-{i}"] for i in (1, 2, 3)] == [3, 3, 3]


def test_handshake_flood_leaves_the_master_serving_with_bounded_threads_and_fds(
    tmp_path: Path,
) -> None:
    from harness.contract import EventWriter
    from harness.runtime.cluster import Cluster
    from harness.runtime.faults import FaultInjector

    jobs = square_jobs(tmp_path / "jobs.jsonl", 20, 0.05)
    with Cluster(tmp_path / "run", ["--jobs", str(jobs), "--handshake-timeout-s", "1"]) as cluster:
        assert cluster.master is not None
        master = psutil.Process(cluster.master.pid)
        threads_before, fds_before = master.num_threads(), master.num_fds()
        peaks = {"threads": threads_before, "fds": fds_before}
        flooding = threading.Event()

        def sample() -> None:  # throughout the flood, not once: the peak is what matters
            while not flooding.is_set():
                with contextlib.suppress(psutil.Error):
                    peaks["threads"] = max(peaks["threads"], master.num_threads())
                    peaks["fds"] = max(peaks["fds"], master.num_fds())
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        log = EventWriter(tmp_path / "run" / "harness.events.jsonl", "harness", cluster.epoch)
        plan = [
            Fault(Trigger("after_s", 0), "idle_sockets", count=50),
            Fault(Trigger("after_s", 0), "bad_handshakes", count=200),
            Fault(Trigger("after_s", 0), "garbage", count=20),
        ]
        injector = FaultInjector(cluster, plan, seed=1, log=log)
        try:
            injector.step()
            # Every idle socket is dropped after the 1 s handshake timeout, not held forever.
            timeouts = 0

            def all_timed_out(event: dict[str, Any]) -> bool:
                nonlocal timeouts
                if event["ev"] == "handshake_timeout":  # past the first few, counted
                    timeouts += int(event.get("count", 1))
                return timeouts == 50

            cluster.master_events.wait_for(all_timed_out, 60, "50 handshake timeouts")
        finally:
            flooding.set()
            sampler.join(10)
        for _ in range(2):
            cluster.add_worker()
        assert cluster.wait_master(60) == 0
        injector.close()
        log.close()
    events = [
        json.loads(line)
        for line in (tmp_path / "run" / "master.events.jsonl").read_text().splitlines()
    ]
    counts = Counter[str]()
    for event in events:
        counts[event["ev"]] += int(event.get("count", 1))
    assert counts["handshake_timeout"] == 50
    assert counts["auth_rejected"] == 220
    assert sum(e["ev"] == "result_accepted" for e in events) == 20
    # The sampler saw the flood: the 50 idle sockets were held until their timeout.
    assert peaks["fds"] >= fds_before + 50, peaks
    # Bounded: at most one thread per pending handshake (the master caps them at 128).
    assert peaks["threads"] <= threads_before + 128 + 8, peaks
    assert peaks["fds"] <= fds_before + 128 + 60, peaks


@pytest.mark.parametrize(
    ("variant", "faults", "check", "job"),
    [
        ("wrong-value", (), "correct_values", 7),
        (
            "no-dedup",
            (
                Fault(
                    Trigger("job_started", 3),
                    "pause",
                    "holder",
                    duration_s=2.5,
                    expect="outlast_lease",
                    # Only the worker's top process: its job runner finishes the job while
                    # it is stopped, so the late result goes out the moment it resumes.
                    scope="main",
                ),
            ),
            "exactly_once",
            3,
        ),
        ("never-requeue", (Fault(Trigger("job_started", 5), "kill", "holder"),), "exactly_once", 5),
        ("batch-early", (), "batch_barrier", None),
    ],
)
def test_a_broken_queue_gets_a_fail_verdict_naming_the_job(
    tmp_path: Path,
    variant: str,
    faults: tuple[Fault, ...],
    check: str,
    job: int | None,
) -> None:
    jobs = square_jobs(tmp_path / "jobs.jsonl", 20, 0.1)
    spec = RunSpec(
        master_args=("--jobs", str(jobs), "--lease-timeout-s", "1", "--batch-size", "5"),
        workers=3,
        worker_args=("--prefetch", "1"),
        faults=faults,
        bound_s=12.0,
        checks=("exactly_once", "correct_values", "batch_barrier", "liveness"),
        system=systems.build({"command": BROKEN, "env": {"DISTQ_BROKEN": variant}}),
    )
    result = run(spec, tmp_path / "run")
    assert result.verdict.status == "fail", result.report()
    named = [v for v in result.verdict.violations if v.check == check]
    assert named, result.report()
    if job is not None:
        assert any(job in v.jobs for v in named), result.report()
        assert any(result.history[line].job == job for v in named for line in v.lines)


def test_the_same_run_passes_against_the_real_queue(tmp_path: Path) -> None:
    jobs = square_jobs(tmp_path / "jobs.jsonl", 20, 0.1)
    spec = RunSpec(
        master_args=("--jobs", str(jobs), "--lease-timeout-s", "1", "--batch-size", "5"),
        workers=3,
        worker_args=("--prefetch", "1"),
        faults=(
            Fault(
                Trigger("job_started", 3), "pause", "holder", duration_s=2.5, expect="outlast_lease"
            ),
            Fault(Trigger("job_started", 5), "kill", "holder"),
        ),
        checks=("exactly_once", "correct_values", "batch_barrier", "liveness", "fault_coverage"),
        lease_timeout_s=1.0,
    )
    result = run(spec, tmp_path / "run")
    assert result.verdict.status == "pass", result.report()


def test_a_fault_that_misses_its_window_is_unknown(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        json.dumps({"task": "square", "args": [2]})
        + "\n"
        + json.dumps({"task": "sleep", "args": [1.5, "x"]})
        + "\n"
    )
    spec = RunSpec(
        master_args=(
            "--jobs",
            str(jobs),
        ),
        workers=2,
        worker_args=("--prefetch", "1"),
        # By the time job 0 is complete, nobody holds it: the kill cannot hit a holder.
        faults=(Fault(Trigger("job_completed", 0), "kill", "holder"),),
        checks=ALL_CHECKS,
    )
    result = run(spec, tmp_path / "run")
    assert result.verdict.status == "unknown", result.report()
    assert result.verdict.exit_code == 3
    assert [v.check for v in result.verdict.unknowns] == ["fault_coverage"]


def test_a_run_over_its_bound_dumps_stacks_and_fails_liveness(tmp_path: Path) -> None:
    spec = RunSpec(
        master_args=("--task", "hang", "--count", "1", "--args", "[]"),
        workers=1,
        bound_s=5.0,  # room for the job to start on a loaded machine
        checks=("exactly_once", "liveness"),
    )
    result = run(spec, tmp_path / "run")
    assert result.timed_out
    assert result.verdict.status == "fail"
    assert {"exactly_once", "liveness"} <= {v.check for v in result.verdict.violations}
    assert {"master", "worker-1"} <= set(result.stacks_dumped)
    assert "Thread 0x" in (tmp_path / "run" / "master.log").read_text()
    assert any(e.ev == "started" for e in result.history.events), "the hang job never started"
    worker_log = (tmp_path / "run" / "worker-1.log").read_text()
    assert "in hang" in worker_log, worker_log  # the job process's stack
    # The worker and its job process were asked one at a time: two whole dumps.
    assert worker_log.count("Current thread 0x") == 2, worker_log


def test_ctrl_c_mid_run_leaves_no_survivors(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from harness.runtime.run import RunSpec, run\n"
        "run(RunSpec(master_args=('--task', 'hang', '--count', '4', '--args', '[]'), workers=2, bound_s=120),"
        " Path(sys.argv[1]))\n"
    )
    run_dir = tmp_path / "run"
    harness = subprocess.Popen([sys.executable, "-c", script, str(run_dir)], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60

        def started() -> bool:
            log = run_dir / "master.events.jsonl"
            return (
                log.exists()
                and log.read_text().count('"ev":"started"')
                + sum(
                    p.read_text().count('"ev":"started"')
                    for p in run_dir.glob("worker-*.events.jsonl")
                )
                >= 2
            )

        while not started():
            assert time.monotonic() < deadline, "the run never got going"
            assert harness.poll() is None, "the harness exited early"
            time.sleep(0.05)
        spawned = [p for p in psutil.Process(harness.pid).children(recursive=True)]
        assert len(spawned) >= 5  # master, 2 workers and their job processes
        harness.send_signal(signal.SIGINT)
        harness.wait(timeout=60)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
    _, alive = psutil.wait_procs(spawned, timeout=10)
    assert alive == []


def test_the_rejoin_scenario_fails_when_workers_cannot_rejoin(tmp_path: Path) -> None:
    """scenarios/network/reset_rejoin.toml proves rejoin: the same plan without it loses jobs."""
    scenario = load_scenario(REPO_ROOT / "scenarios" / "network" / "reset_rejoin.toml")
    without = msgspec.structs.replace(
        scenario,
        system={**scenario.system, "worker_reconnect_s": 0.0},
        expect=msgspec.structs.replace(scenario.expect, within_s=8.0),
    )
    outcome = run_scenario(without, tmp_path / "run")
    assert outcome.status == "fail", outcome.report()
    lost = [v for v in outcome.result.verdict.violations if "lost: no terminal result" in v.message]
    assert lost, outcome.report()
    workers = {n: c for n, c in outcome.result.exit_codes.items() if n.startswith("worker")}
    assert workers == {"worker-1": 5, "worker-2": 5}  # each lost its master at its first reset


def test_the_journal_scenario_fails_when_the_master_keeps_no_journal(tmp_path: Path) -> None:
    """scenarios/master/journal_kill_mid_run.toml proves the journal: the same plan against
    a master without one loses the jobs the killed master still had, and the restarted
    master (another identity) is no place for the workers to rejoin."""
    scenario = load_scenario(REPO_ROOT / "scenarios" / "master" / "journal_kill_mid_run.toml")
    without = msgspec.structs.replace(
        scenario,
        system={**scenario.system, "journal": False},
        expect=msgspec.structs.replace(scenario.expect, within_s=10.0),
    )
    outcome = run_scenario(without, tmp_path / "run")
    assert outcome.status == "fail", outcome.report()
    lost = [v for v in outcome.result.verdict.violations if "lost: no terminal result" in v.message]
    assert lost, outcome.report()
    workers = {n: c for n, c in outcome.result.exit_codes.items() if n.startswith("worker")}
    assert workers == {"worker-1": 5, "worker-2": 5, "worker-3": 5}  # a different master


def test_events_the_cluster_read_first_still_reach_the_triggers(tmp_path: Path) -> None:
    # The cluster and the injector read one follower: waiting for a worker to join polls
    # it too. A trigger must fire on an event the cluster's poll took in before the
    # injector's step, or a fault "never triggers" when its event came at the wrong moment.
    from harness.contract import HARNESS, EventWriter, events_name
    from harness.runtime.cluster import Cluster
    from harness.runtime.faults import FaultInjector

    jobs = square_jobs(tmp_path / "jobs.jsonl", 3, 0.0)
    harness_log = tmp_path / "run" / events_name(HARNESS)
    with Cluster(tmp_path / "run", ["--jobs", str(jobs)]) as cluster:
        log = EventWriter(harness_log, HARNESS, cluster.epoch)
        plan = [Fault(Trigger("job_completed", 0), "kill", "holder")]
        injector = FaultInjector(cluster, plan, seed=1, log=log)
        worker = cluster.add_worker()
        assert cluster.wait_master(60) == 0
        assert not cluster.joined("no-such-worker")  # the cluster's own poll: reads it all
        assert worker.wait(30) == 0
        injector.step()
        log.close()
    assert injector.done, "job 0 completed, but its trigger never saw it"
    [fault] = [json.loads(line) for line in harness_log.read_text().splitlines()]
    assert fault["missed"] == "nobody held job 0"
