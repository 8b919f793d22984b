"""A stateful test on real processes: Hypothesis starts, kills, pauses and resumes workers,
submits jobs to a running master through the pipelined Submitter (flushing or not) and
lets time pass; after every step no job has two accepted results, and at the end the
submitter collects exactly one result for every job it submitted, each correct.

One rule submits a slow job and pauses its holder until the lease has expired and another
worker has done the job, so a late result (what a queue without first-result-wins gets
wrong) is in most examples rather than left to chance; a test drives that rule against a
queue that accepts every result and sees it caught."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
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
from harness import systems
from harness.checks import CheckContext, judge
from harness.history import History
from harness.runtime.cluster import Cluster

pytestmark = pytest.mark.processes

BOUND_S = 60.0
MAX_WORKERS = 3


class LiveCluster(RuleBasedStateMachine):
    """One open master; workers and jobs come and go as the rules say."""

    run_root: Path  # set by the test before the machine runs
    command: tuple[str, ...] | None = None  # the system under test (default: distq)
    env: dict[str, str] = {}  # added to the processes' environment
    late_job_s = 0.5  # how long the job of the late_result rule runs

    def __init__(self) -> None:
        super().__init__()
        self.run_dir = self.run_root / f"machine-{time.monotonic_ns()}"
        self.cluster = Cluster(
            self.run_dir,
            ["--open", "--lease-timeout-s", "1"],
            system=systems.build({"command": list(self.command)} if self.command else {}),
            env={**os.environ, **self.env},
        )
        self.cluster.__enter__()
        assert self.cluster.address is not None
        self.submitter = Submitter.connect(self.cluster.address, self.cluster.authkey)
        self.live: list[str] = []
        self.paused: set[str] = set()
        self.submitted: dict[int, Any] = {}
        self.late_results = 0  # leases that expired while their holder was paused

    # -- rules ------------------------------------------------------------------------------

    @initialize()
    def two_workers_with_work_in_flight(self) -> None:
        for _ in range(2):
            self.start_worker()
        self.submit_jobs(4, 0.5, then_flush=True)

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
        held = self.leases_held()
        holders = sorted(set(held) & (set(self.live) - self.paused))
        if holders:
            self.cluster.signal(holders[0], signal.SIGSTOP)
            self.paused.add(holders[0])

    @precondition(lambda self: len(set(self.live) - self.paused) >= 2)
    @rule()
    def late_result(self) -> None:
        """Submit a slow job, pause the worker that leases it until its lease has expired
        and another worker has completed the job, then resume it and wait for its late
        result to reach the master (if the job was done before the pause, nothing is late).
        """
        job_id = self.submitter.submit("square", [7, self.late_job_s])
        self.submitted[job_id] = 49
        self.submitter.flush()
        self.wait_until(
            lambda events: any(e["ev"] == "leased" and e["job"] == job_id for e in events),
            f"job {job_id} leased",
        )
        leased = next(
            e
            for e in self.cluster.master_events.events
            if e["ev"] == "leased" and e["job"] == job_id
        )
        name = leased["worker"]
        self.cluster.signal(name, signal.SIGSTOP)
        try:
            self.wait_until(
                lambda events: _resolved(events, job_id),
                f"job {job_id} done by another worker while {name} was paused",
            )
        finally:
            self.cluster.signal(name, signal.SIGCONT)
        if any(
            e["ev"] == "lease_expired" and e["job"] == job_id and e["lease"] == leased["lease"]
            for e in self.cluster.master_events.events
        ):
            self.late_results += 1
            self.wait_until(
                lambda events: any(
                    e["ev"] in ("result_accepted", "duplicate_dropped")
                    and e["worker"] == name
                    and e["job"] == job_id
                    for e in events
                ),
                f"the late result of job {job_id} from {name}",
                unless=lambda: not self.cluster.procs[name].alive(),
            )

    def wait_until(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool],
        what: str,
        unless: Callable[[], bool] = lambda: False,
    ) -> None:
        """Poll the master's log until ``predicate`` holds over all its events (or
        ``unless`` says there is no point); fails after a generous bound."""
        events = self.cluster.master_events
        deadline = time.monotonic() + 2 * BOUND_S
        while not predicate(events.events) and not unless():
            assert time.monotonic() < deadline, f"waited {2 * BOUND_S:g} s for {what}"
            time.sleep(0.02)
            events.poll()

    def leases_held(self) -> dict[str, set[tuple[int, int]]]:
        """Worker name -> the (job, lease) pairs it holds, as the master's log has it."""
        holder: dict[int, tuple[str, int]] = {}
        for event in self.cluster.master_events.events:
            if event["ev"] == "leased":
                holder[event["job"]] = (event["worker"], event["lease"])
            elif event["ev"] in (
                "result_accepted",
                "dead",
                "attempt_failed",
                "requeued",
                "lease_expired",
            ):
                holder.pop(event["job"], None)
        held: dict[str, set[tuple[int, int]]] = {}
        for job, (worker, lease) in holder.items():
            held.setdefault(worker, set()).add((job, lease))
        return held

    @precondition(lambda self: self.paused)
    @rule(data=st.data())
    def resume_worker(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.paused)))
        self.cluster.signal(name, signal.SIGCONT)
        self.paused.discard(name)

    @rule(
        count=st.integers(1, 6),
        delay_s=st.sampled_from([0.0, 0.05, 0.5]),
        then_flush=st.booleans(),
    )
    def submit_jobs(self, count: int, delay_s: float, then_flush: bool) -> None:
        for n in range(count):
            job_id = self.submitter.submit("square", [n, delay_s])
            self.submitted[job_id] = n * n
        if then_flush:
            self.submitter.flush()

    @rule(seconds=st.sampled_from([0.1, 0.5, 2.0]))
    def let_time_pass(self, seconds: float) -> None:
        time.sleep(seconds)  # the passage of time is the action here, not a synchronisation

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def no_job_ever_has_two_accepted_results(self) -> None:
        self.cluster.master_events.poll()
        accepted: set[int] = set()
        for event in self.cluster.master_events.events:
            if event["ev"] == "result_accepted":
                assert event["job"] not in accepted, f"job {event['job']} was accepted twice"
                accepted.add(event["job"])

    # -- the end ------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            for name in list(self.paused):
                self.cluster.signal(name, signal.SIGCONT)
            if not any(self.cluster.procs[name].alive() for name in self.live):
                self.cluster.add_worker()
            collected = list(self.submitter.as_completed(timeout_s=2 * BOUND_S))
            assert sorted(r.job_id for r in collected) == sorted(self.submitted)
            for result in collected:  # a job dead after its attempts is a correct outcome
                assert result.attempt >= 1
                assert result.worker
                assert not result.ok or result.value == self.submitted[result.job_id]
            self.submitter.close_submissions()
            self.submitter.close()
            assert self.cluster.wait_master(BOUND_S) == 0
        finally:
            self.cluster.__exit__(None, None, None)
        history = History.load_run(self.run_dir)
        assert set(history.submitted()) == set(self.submitted)
        verdict = judge(
            history,
            ["exactly_once", "correct_values"],
            CheckContext(expected=self.cluster.system.expected),
        )
        assert verdict.status == "pass", verdict.report(history)


def test_a_live_cluster_under_random_operations(tmp_path: Path) -> None:
    LiveCluster.run_root = tmp_path
    # As many examples as the active profile says (ci: a few), each a dozen steps.
    run_state_machine_as_test(
        LiveCluster, settings=settings(settings.default, stateful_step_count=12, deadline=None)
    )


def _resolved(events: list[dict[str, Any]], job: int) -> bool:
    return any(e["ev"] in ("result_accepted", "dead") and e["job"] == job for e in events)


class AcceptsEveryResult(LiveCluster):
    """The machine against a queue without first-result-wins (tests/broken_distq.py)."""

    command = ("python", "-m", "tests.broken_distq")
    env = {"DISTQ_BROKEN": "no-dedup"}
    late_job_s = 3.0  # held for sure when the pause comes, even on a loaded machine


def test_the_late_result_rule_catches_a_queue_that_accepts_every_result(tmp_path: Path) -> None:
    AcceptsEveryResult.run_root = tmp_path
    machine = AcceptsEveryResult()
    try:
        machine.start_worker()
        machine.start_worker()
        machine.late_result()
        assert machine.late_results == 1
    except BaseException:
        machine.cluster.__exit__(None, None, None)
        raise
    with pytest.raises(AssertionError, match="job 0 was accepted twice"):
        machine.no_job_ever_has_two_accepted_results()
    with pytest.raises(AssertionError, match="exactly_once"):
        machine.teardown()
