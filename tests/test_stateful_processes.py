"""A stateful test on real processes: Hypothesis starts, kills, pauses and resumes workers,
submits jobs to a running master and lets time pass; after every step no job has two
accepted results, and at the end every submitted job has exactly one correct result."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from distq.client import Submitter
from harness.checks import judge
from harness.cluster import Cluster
from harness.history import History

pytestmark = pytest.mark.processes

BOUND_S = 60.0
MAX_WORKERS = 3


class LiveCluster(RuleBasedStateMachine):
    """One open master; workers and jobs come and go as the rules say."""

    run_root: Path  # set by the test before the machine runs
    command: tuple[str, ...] | None = None  # the system under test (default: distq)

    def __init__(self) -> None:
        super().__init__()
        self.run_dir = self.run_root / f"machine-{time.monotonic_ns()}"
        self.cluster = Cluster(
            self.run_dir, ["--open", "--lease-timeout-s", "1"], command=self.command
        )
        self.cluster.__enter__()
        assert self.cluster.address is not None
        self.submitter = Submitter.connect(self.cluster.address, self.cluster.authkey)
        self.live: list[str] = []
        self.paused: set[str] = set()
        self.submitted: dict[int, Any] = {}
        self.accepted: dict[int, int] = {}

    # -- rules ------------------------------------------------------------------------------

    @initialize()
    def two_workers_with_work_in_flight(self) -> None:
        for _ in range(2):
            self.start_worker()
        self.submit_jobs(4, 0.5)

    @precondition(lambda self: len(self.live) < MAX_WORKERS)
    @rule()
    def start_worker(self) -> None:
        self.live.append(self.cluster.add_worker(extra_args=["--prefetch", "2"]).name)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), how=st.sampled_from([signal.SIGKILL, signal.SIGTERM]))
    def stop_worker(self, data: st.DataObject, how: signal.Signals) -> None:
        name = data.draw(st.sampled_from(self.live))
        if name in self.paused:
            self.cluster.signal(name, signal.SIGCONT)
            self.paused.discard(name)
        self.cluster.signal(name, how)
        self.live.remove(name)

    @precondition(lambda self: len(self.live) > len(self.paused))
    @rule(data=st.data())
    def pause_worker(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(set(self.live) - self.paused)))
        self.cluster.signal(name, signal.SIGSTOP)
        self.paused.add(name)

    @precondition(lambda self: len(self.live) > len(self.paused))
    @rule()
    def pause_a_holder(self) -> None:
        """Pause a worker that holds a lease right now, if there is one."""
        holders = sorted(self.holders() & (set(self.live) - self.paused))
        if holders:
            self.cluster.signal(holders[0], signal.SIGSTOP)
            self.paused.add(holders[0])

    def holders(self) -> set[str]:
        holder: dict[int, str] = {}
        for event in self.cluster.master_events.events:
            if event["ev"] == "leased":
                holder[event["job"]] = event["worker"]
            elif event["ev"] in ("result_accepted", "dead", "attempt_failed", "requeued"):
                holder.pop(event["job"], None)
        return set(holder.values())

    @precondition(lambda self: self.paused)
    @rule(data=st.data())
    def resume_worker(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.paused)))
        self.cluster.signal(name, signal.SIGCONT)
        self.paused.discard(name)

    @rule(count=st.integers(1, 6), delay_s=st.sampled_from([0.0, 0.05, 0.5]))
    def submit_jobs(self, count: int, delay_s: float) -> None:
        for n in range(count):
            job_id = self.submitter.submit("square", [n, delay_s])
            self.submitted[job_id] = n * n

    @rule(seconds=st.sampled_from([0.1, 0.5, 2.0]))
    def let_time_pass(self, seconds: float) -> None:
        time.sleep(seconds)  # the passage of time is the action here, not a synchronisation

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def no_job_ever_has_two_accepted_results(self) -> None:
        for event in self.cluster.master_events.poll():
            if event["ev"] == "result_accepted":
                job = event["job"]
                self.accepted[job] = self.accepted.get(job, 0) + 1
                assert self.accepted[job] == 1, f"job {job} was accepted twice"

    # -- the end ------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            for name in list(self.paused):
                self.cluster.signal(name, signal.SIGCONT)
            if not any(self.cluster.procs[name].alive() for name in self.live):
                self.cluster.add_worker()
            self.submitter.close_submissions()
            self.submitter.close()
            assert self.cluster.wait_master(BOUND_S) == 0
        finally:
            self.cluster.__exit__(None, None, None)
        history = History.load_run(self.run_dir)
        assert set(history.submitted()) == set(self.submitted)
        verdict = judge(history, ["exactly_once", "correct_values"])
        assert verdict.status == "pass", verdict.report(history)


def test_a_live_cluster_under_random_operations(tmp_path: Path) -> None:
    LiveCluster.run_root = tmp_path
    # As many examples as the active profile says (ci: a few), each a dozen steps.
    run_state_machine_as_test(
        LiveCluster, settings=settings(settings.default, stateful_step_count=12, deadline=None)
    )
