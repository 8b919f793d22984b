"""Checkers on hand-built histories of broken and healthy queues, and on one real run."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.checks import (
    CHECKS,
    CheckContext,
    Expect,
    ExpectedFailed,
    Reach,
    Verdict,
    Violation,
    auth,
    batch_barrier,
    clean_exits,
    correct_values,
    exactly_once,
    fault_coverage,
    judge,
    liveness,
    reached,
)
from harness.history import History
from harness.systems.distq import DistqSystem, builtin_expected
from tests.support import HistoryBuilder

DISTQ_EXITS = DistqSystem.exit_codes


def healthy(jobs: int = 4) -> HistoryBuilder:
    """A correct run: square of each job id on two workers, a clean stop, within bound."""
    run = HistoryBuilder()
    for job in range(jobs):
        run.submit(job)
    run.master("master_ready", address="127.0.0.1:1", jobs=jobs)
    for job in range(jobs):
        worker = f"worker-{job % 2 + 1}"
        run.lease(job, worker)
        run.accept(job, worker, job * job)
    run.master("master_stopped", results=jobs, unfinished=0)
    run.harness("run_finished", elapsed_s=0.5, bound_s=10, timed_out=False)
    return run


def test_a_healthy_run_passes_every_check() -> None:
    run = healthy()
    run.master("duplicate_dropped", job=1, attempt=1, worker="worker-2", ok=True)
    verdict = judge(
        run.history(),
        ["exactly_once", "correct_values", "liveness"],
        CheckContext(expected=builtin_expected),
    )
    evidence = (("exactly_once", 4, "jobs"), ("correct_values", 4, "values compared"))
    assert verdict == Verdict("pass", (), (), verdict.checks, evidence=verdict.evidence)
    assert verdict.evidence[:2] == evidence
    assert verdict.exit_code == 0
    assert verdict.report(run.history()).startswith(
        "verdict: pass (0 violation(s), 0 unknown; checks: exactly_once: 4 jobs, "
        "correct_values: 4 values compared"
    )


def test_a_check_that_judged_nothing_is_unknown_never_a_pass() -> None:
    """A run without batches proves nothing about the batch barrier."""
    verdict = judge(healthy().history(), ["exactly_once", "batch_barrier"])
    assert verdict.status == "unknown"
    [nothing] = verdict.unknowns
    assert (nothing.check, nothing.message) == (
        "batch_barrier",
        "judged nothing: the run had no batches to check",
    )


def test_an_expected_function_that_raises_compares_nothing_and_is_unknown() -> None:
    def broken(task: str, args: tuple[Any, ...]) -> Any:
        return ExpectedFailed(f"ZeroDivisionError: division by zero (on {args[0]})")

    verdict = judge(healthy().history(), ["correct_values"], CheckContext(expected=broken))
    assert verdict.status == "unknown"
    messages = [v.message for v in verdict.unknowns]
    assert messages[0] == (
        "the expected-value function raised on 4 item(s), so their values were not compared; "
        "first: job 0: square(0): ZeroDivisionError: division by zero (on 0)"
    )
    assert verdict.evidence == (("correct_values", 0, "values compared"),)


# -- exactly_once ------------------------------------------------------------------------


def test_a_lost_job_fails_citing_its_submission_and_leases() -> None:
    run = HistoryBuilder()
    run.submit(0)
    submitted = run.submit(1)
    leased = run.lease(1, "worker-1")
    lost = run.master("worker_lost", worker="worker-1", jobs=[1], reason="connection closed")
    run.accept(0, "worker-2", 0)

    violations = exactly_once(run.history())

    cause = "its holder worker-1 went away holding it (its connection closed at t=0.04)"
    message = f"job 1 lost: no terminal result: {cause}"
    assert violations == [
        Violation("exactly_once", message, (1,), (submitted, leased, lost), cause="holder_lost")
    ]


def test_a_job_delivered_twice_fails_even_as_result_and_dead() -> None:
    run = HistoryBuilder()
    run.submit(0)
    first = run.accept(0, "worker-1", 0)
    second = run.master("dead", job=0, attempts=3, error="dead after 3 attempts")

    [violation] = exactly_once(run.history())

    assert violation.jobs == (0,)
    assert "2 terminal results" in violation.message
    assert {first, second} <= set(violation.lines)
    verdict = judge(run.history(), ["exactly_once"])
    assert verdict.status == "fail"
    assert verdict.exit_code == 1
    report = verdict.report(run.history())
    assert "fail exactly_once: job 0 has 2 terminal results" in report
    assert f"#{second} t=" in report


def test_a_result_for_a_job_never_submitted_is_unexpected() -> None:
    run = HistoryBuilder()
    run.submit(0)
    run.accept(0, "worker-1", 0)
    stray = run.accept(9, "worker-1", 81)

    assert exactly_once(run.history()) == [
        Violation(
            "exactly_once", "job 9 was never submitted but has a terminal result", (9,), (stray,)
        )
    ]


def test_the_results_output_must_hold_each_job_once() -> None:
    run = healthy(3)
    for job in (0, 0, 2, 5):
        run.add("results", "result_output", job=job, ok=True, value=job * job)
    messages = sorted(v.message for v in exactly_once(run.history()))
    assert messages == [
        "job 0 is 2 times in the results output",
        "job 1 is missing from the results output",
        "results output has a line for job 5, which was never submitted",
    ]


def test_a_missing_master_log_is_not_a_pass() -> None:
    run = HistoryBuilder()
    run.add("worker-1", "connected")
    [violation] = exactly_once(run.history())
    assert "no events from the master" in violation.message


# -- correct_values ----------------------------------------------------------------------


def test_a_wrong_value_fails_with_the_job_and_both_lines() -> None:
    run = healthy(2)
    submitted = run.submit(7, args=[7, 0.01])
    run.lease(7, "worker-1")
    accepted = run.accept(7, "worker-1", 48)

    assert correct_values(run.history(), CheckContext(expected=builtin_expected)) == [
        Violation(
            "correct_values",
            "job 7: square(7, 0.01) = 49, but accepted value 48",
            (7,),
            (submitted, accepted),
        )
    ]


def test_the_results_output_values_are_checked_too() -> None:
    run = healthy(2)
    output = run.add("results", "result_output", job=1, ok=True, value=2)
    [violation] = correct_values(run.history(), CheckContext(expected=builtin_expected))
    assert violation.jobs == (1,)
    assert output in violation.lines
    assert "results output value 2" in violation.message


def test_a_task_that_cannot_succeed_must_not_have_an_ok_result() -> None:
    run = HistoryBuilder()
    run.submit(0, task="fail", args=[])
    run.submit(1, task="crash", args=[])
    run.submit(2, task="square", args=["x"])  # TypeError in the task: it cannot succeed
    run.submit(3, task="hang", args=[])
    for job in range(3):
        run.accept(job, "worker-1", None)
    run.master("dead", job=3, attempts=3, error="time limit")
    assert [
        v.jobs for v in correct_values(run.history(), CheckContext(expected=builtin_expected))
    ] == [
        (0,),
        (1,),
        (2,),
    ]


def test_a_dead_job_of_a_task_that_could_not_fail_is_left_alone() -> None:
    run = HistoryBuilder()
    run.submit(0)
    run.master("dead", job=0, attempts=3, error="worker lost")
    assert correct_values(run.history(), CheckContext(expected=builtin_expected)) == []


def test_builtin_values_echo_and_sleep() -> None:
    assert builtin_expected("echo", ("a",)) == "a"
    assert builtin_expected("echo", (1, 2)) == [1, 2]
    assert builtin_expected("sleep", (0.5,)) == 0.5
    assert builtin_expected("sleep", (0.5, "done")) == "done"
    assert builtin_expected("sleep", (-1,)) is Expect.FAILURE
    assert builtin_expected("tests.tasks:anything", (1,)) is Expect.UNKNOWN

    run = HistoryBuilder()
    run.submit(0, task="echo", args=[[1, 2]])
    run.accept(0, "worker-1", [1, 2])  # a tuple or list reads back as a JSON list
    run.submit(1, task="echo", args=[1, 2])
    run.accept(1, "worker-1", [1, 2])
    run.submit(2, task="sleep", args=[0.1, {"k": 1}])
    run.accept(2, "worker-1", {"k": 1})
    assert correct_values(run.history(), CheckContext(expected=builtin_expected)) == []


def test_custom_tasks_are_skipped_unless_an_expected_function_knows_them() -> None:
    run = HistoryBuilder()
    run.submit(0, task="tests.tasks:double", args=[4])
    run.accept(0, "worker-1", 9)
    history = run.history()
    assert correct_values(history, CheckContext(expected=builtin_expected)) == []

    def expected(task: str, args: tuple[Any, ...]) -> Any:
        return args[0] * 2 if task == "tests.tasks:double" else Expect.UNKNOWN

    [violation] = correct_values(history, CheckContext(expected=expected))
    assert violation.message == "job 0: tests.tasks:double(4) = 8, but accepted value 9"
    verdict = judge(history, ["correct_values"], CheckContext(expected=expected))
    assert verdict.status == "fail"


# -- batch_barrier -----------------------------------------------------------------------


def batched_run() -> tuple[HistoryBuilder, dict[str, int]]:
    """Two batches of two; the barrier holds unless a test breaks it."""
    run = HistoryBuilder()
    lines: dict[str, int] = {}
    for job in range(4):
        run.submit(job, batch=job // 2)
    lines["opened0"] = run.master("batch_opened", batch=0)
    for job in (0, 1):
        run.lease(job, "worker-1", batch=0)
        run.accept(job, "worker-1", job * job)
    lines["closed0"] = run.master("batch_closed", batch=0)
    lines["opened1"] = run.master("batch_opened", batch=1)
    for job in (2, 3):
        run.lease(job, "worker-1", batch=1)
        run.accept(job, "worker-1", job * job)
    lines["closed1"] = run.master("batch_closed", batch=1)
    return run, lines


def test_batches_that_respect_the_barrier_pass() -> None:
    run, _ = batched_run()
    assert batch_barrier(run.history()) == []


def test_a_job_of_the_next_batch_leased_before_the_batch_closed_fails() -> None:
    run = HistoryBuilder()
    for job in range(4):
        run.submit(job, batch=job // 2)
    run.master("batch_opened", batch=0)
    run.lease(0, "worker-1", batch=0)
    run.lease(1, "worker-1", batch=0)
    run.accept(0, "worker-1", 0)
    early = run.lease(2, "worker-2", batch=1)  # P6: batch 1 released while job 1 is out
    run.accept(1, "worker-1", 1)
    closed = run.master("batch_closed", batch=0)
    opened = run.master("batch_opened", batch=1)
    run.lease(3, "worker-2", batch=1)
    run.accept(2, "worker-2", 4)
    run.accept(3, "worker-2", 9)
    run.master("batch_closed", batch=1)

    violations = batch_barrier(run.history())

    assert violations == [
        Violation(
            "batch_barrier",
            "jobs 2 of batch 1 leased before batch 0 closed",
            (2,),
            (early, closed),
        ),
        Violation(
            "batch_barrier",
            "jobs 2 of batch 1 leased before the batch opened",
            (2,),
            (early, opened),
        ),
    ]


def test_a_batch_closed_with_a_job_still_out_fails() -> None:
    run = HistoryBuilder()
    run.submit(0, batch=0)
    submitted = run.submit(1, batch=0)
    run.master("batch_opened", batch=0)
    run.lease(0, "worker-1", batch=0)
    run.lease(1, "worker-1", batch=0)
    run.accept(0, "worker-1", 0)
    closed = run.master("batch_closed", batch=0)
    assert batch_barrier(run.history()) == [
        Violation(
            "batch_barrier", "batch 0 closed while jobs 1 had no result", (1,), (closed, submitted)
        )
    ]


def test_a_batch_opened_before_the_previous_one_closed_fails() -> None:
    run, lines = batched_run()
    history_events = run.events
    # Swap "batch 0 closed" and "batch 1 opened" (times too, so the order is the swapped one).
    closed, opened = history_events[lines["closed0"]], history_events[lines["opened1"]]
    closed["t"], opened["t"] = opened["t"], closed["t"]
    [violation] = batch_barrier(History(history_events))
    assert violation.message == "batch 1 opened before batch 0 closed"


# -- auth --------------------------------------------------------------------------------


def test_a_rejected_wrong_key_worker_passes() -> None:
    run = healthy(2)
    run.harness("fault", fault=0, action="wrong_key_worker", trigger={"after_s": 0.1})
    run.master("auth_rejected", peer="127.0.0.1:5555", reason="digest received was wrong")
    assert auth(run.history(), CheckContext(wrong_key_workers=("intruder-1",))) == []


def test_a_served_wrong_key_worker_fails() -> None:
    run = healthy(2)
    run.harness("fault", fault=0, action="wrong_key_worker", target="intruder-1")
    run.master("auth_rejected", peer="127.0.0.1:5555", reason="digest received was wrong")
    joined = run.master("worker_joined", worker="intruder-1", pid=1, host="h")
    run.submit(9)
    leased = run.lease(9, "intruder-1")

    [violation] = auth(run.history())

    joined_t = run.events[joined]["t"]
    assert violation.message == (
        f"wrong-key worker 'intruder-1' was served: worker_joined at t={joined_t:g}"
    )
    assert violation.jobs == (9,)
    assert violation.lines == (joined, leased)


def test_a_wrong_key_attempt_without_a_rejection_fails() -> None:
    run = healthy(2)
    fault = run.harness("fault", fault=0, action="bad_handshakes", count=2)
    rejected = run.master("auth_rejected", peer="127.0.0.1:5555", reason="digest")
    [violation] = auth(run.history(), CheckContext(wrong_key_workers=("intruder-1",)))
    assert violation.message == "3 wrong-key attempt(s) but only 1 auth_rejected"
    assert violation.lines == (fault, rejected)


def test_an_empty_key_worker_only_has_to_stay_unserved() -> None:
    run = healthy(2)
    run.harness("fault", fault=0, action="empty_key_worker", target="empty-1")
    assert auth(run.history()) == []


def test_auth_with_no_wrong_key_attempt_is_unknown() -> None:
    verdict = judge(healthy(1).history(), ["auth"])
    assert verdict.status == "unknown"
    assert verdict.exit_code == 3
    assert verdict.unknowns[0].check == "auth"


# -- liveness ----------------------------------------------------------------------------


def test_a_timed_out_run_fails_listing_the_unfinished_jobs() -> None:
    run = HistoryBuilder()
    run.submit(0)
    run.submit(1)
    run.lease(0, "worker-1")
    run.accept(0, "worker-1", 0)
    stuck = run.lease(1, "worker-2")
    finished = run.harness("run_finished", elapsed_s=20.1, bound_s=20, timed_out=True)

    assert liveness(run.history()) == [
        Violation(
            "liveness",
            "run did not finish within 20 s (elapsed 20.1 s); 1 job(s) unfinished",
            (1,),
            (finished, stuck),
        )
    ]


def test_a_master_that_never_stopped_fails() -> None:
    run = healthy(2)
    del run.events[-2]  # master_stopped
    [violation] = liveness(run.history())
    assert violation.message == (
        "the master never wrote master_stopped and was not killed on purpose"
    )


def test_a_run_over_its_bound_fails_even_without_the_timed_out_flag() -> None:
    run = healthy(1)
    run.harness("run_finished", elapsed_s=11.0, bound_s=10.0, timed_out=False)
    [violation] = liveness(run.history())
    assert "did not finish within 10.0 s" in violation.message


def test_a_master_killed_on_purpose_need_not_write_master_stopped() -> None:
    run = HistoryBuilder()
    run.submit(0)
    run.harness("fault", fault=0, action="kill_master", trigger={"after_s": 0.1})
    run.harness("run_finished", elapsed_s=1.0, bound_s=10, timed_out=False)
    assert liveness(run.history()) == []
    assert len(liveness(run.history(), CheckContext(master_killed=False))) == 1
    run.harness("fault", fault=1, action="restart_master")
    assert len(liveness(run.history())) == 1  # the restarted master must stop by itself


def test_liveness_without_the_harness_bound_is_unknown() -> None:
    run = healthy(1)
    run.events.pop()  # drop run_finished
    verdict = judge(run.history(), ["liveness"])
    assert verdict.status == "unknown"


# -- fault_coverage ----------------------------------------------------------------------


def test_killing_a_worker_that_holds_a_job_covers_the_fault() -> None:
    run = HistoryBuilder()
    run.submit(0)
    run.lease(0, "worker-1")
    run.harness("fault", fault=0, action="kill", target="worker-1", expect="holder")
    run.effect(0, "kill", "worker-1")
    run.master("worker_lost", worker="worker-1", jobs=[0], reason="connection closed")
    assert fault_coverage(run.history()) == []


def test_killing_an_idle_worker_when_a_holder_was_expected_is_unknown() -> None:
    run = HistoryBuilder()
    run.submit(0)
    leased = run.lease(0, "worker-1")
    accepted = run.accept(0, "worker-1", 0)
    fault = run.harness("fault", fault=3, action="kill", target="worker-1", expect="holder")
    run.effect(3, "kill", "worker-1")
    run.master("master_stopped")
    run.harness("run_finished", elapsed_s=1.0, bound_s=10, timed_out=False)

    verdict = judge(
        run.history(),
        ["exactly_once", "correct_values", "fault_coverage"],
        CheckContext(expected=builtin_expected),
    )

    assert verdict.status == "unknown"
    assert verdict.exit_code == 3
    assert verdict.violations == ()
    assert verdict.unknowns == (
        Violation(
            "fault_coverage",
            "fault 3 (kill worker-1) expected worker-1 to hold a lease, it held none",
            (),
            (fault, leased, accepted),
            "unknown",
        ),
    )
    assert "unknown fault_coverage: fault 3 (kill worker-1)" in verdict.report(run.history())


def master_restart_run(*, finished_first: bool) -> HistoryBuilder:
    run = HistoryBuilder()
    run.master("master_ready", address="127.0.0.1:1", pid=1)
    run.submit(0)
    run.lease(0, "worker-1")
    if finished_first:
        run.accept(0, "worker-1", 0)
        run.master("master_stopped")
    run.harness("fault", fault=0, action="restart_master")
    run.effect(0, "restart_master", "master")
    run.master("master_ready", address="127.0.0.1:1", pid=2)
    return run


def test_restarting_a_master_at_work_covers_the_fault() -> None:
    assert fault_coverage(master_restart_run(finished_first=False).history()) == []


def test_restarting_a_master_that_had_finished_is_unknown() -> None:
    [miss] = fault_coverage(master_restart_run(finished_first=True).history())
    assert miss.severity == "unknown"
    assert miss.message == (
        "fault 0 (restart_master -) struck a master that had already finished its work"
    )


def pause_run(*, expired: bool) -> HistoryBuilder:
    run = HistoryBuilder()
    run.submit(0)
    run.lease(0, "worker-1")
    paused = run.harness(
        "fault", fault=0, action="pause", target="worker-1", expect="outlast_lease"
    )
    if expired:
        run.master("lease_expired", job=0, attempt=1, lease=1, worker="worker-1")
    run.effect(0, "pause", "worker-1", stopped_t=run.events[paused]["t"])
    run.harness("fault", fault=0, action="resume", target="worker-1", scheduled=True)
    run.master("lease_expired", job=0, attempt=1, lease=1, worker="worker-1")
    return run


def test_a_pause_that_outlasts_the_lease_covers_the_fault() -> None:
    assert fault_coverage(pause_run(expired=True).history()) == []


def test_a_pause_resumed_before_the_lease_expired_is_unknown() -> None:
    [miss] = fault_coverage(pause_run(expired=False).history())
    assert miss.severity == "unknown"
    assert miss.jobs == (0,)
    assert "expected a lease of worker-1 to expire before resume (it held jobs 0)" in miss.message


def test_a_fault_whose_effect_was_never_measured_proves_nothing() -> None:
    run = healthy(1)
    run.harness("fault", fault=0, action="kill", target="worker-1")
    [miss] = fault_coverage(run.history())
    assert miss.severity == "unknown"
    assert (
        miss.message
        == "fault 0 (kill worker-1): its effect was never measured, so it proves nothing"
    )


def test_a_fault_that_did_not_take_effect_is_unknown_with_the_measurement() -> None:
    run = healthy(1)
    run.harness("fault", fault=0, action="pause", target="worker-1")
    why = "pid 7 (python) gained 0.80 s of CPU while paused"
    run.effect(0, "pause", "worker-1", verified=False, why=why)
    [miss] = fault_coverage(run.history())
    assert miss.severity == "unknown"
    assert miss.message == f"fault 0 (pause worker-1) did not take effect: {why}"


def test_a_paused_worker_that_went_on_writing_events_was_not_paused() -> None:
    """A pause that stopped only the top process: the task process (same src) kept working."""
    run = HistoryBuilder()
    run.submit(0)
    paused = run.harness("fault", fault=0, action="pause", target="worker-1")
    stopped_t = run.events[paused]["t"]
    run.add("worker-1", "completed", job=0, attempt=1, ok=True, value=0)
    run.effect(0, "pause", "worker-1", stopped_t=stopped_t)
    [miss] = fault_coverage(run.history())
    assert miss.severity == "unknown"
    assert "worker-1 wrote 1 event(s) while paused (first: completed)" in miss.message


def test_a_killed_worker_that_went_on_writing_events_was_not_killed_until_it_came_back() -> None:
    run = HistoryBuilder()
    run.submit(0)
    run.harness("fault", fault=0, action="kill", target="worker-1")
    run.effect(0, "kill", "worker-1")
    run.add("worker-1", "completed", job=0, attempt=1, ok=True, value=0)
    [miss] = fault_coverage(run.history())
    assert "worker-1 wrote 1 event(s) after it was killed" in miss.message
    run.events.pop()
    run.harness("fault", fault=1, action="restart", target="worker-1")
    run.effect(1, "restart", "worker-1")
    run.add("worker-1", "worker_joined", worker="worker-1")  # the restarted worker
    assert fault_coverage(run.history()) == []


def test_faults_that_did_not_fire_are_unknown() -> None:
    run = healthy(1)
    run.harness("fault", fault=0, action="kill", target=None, missed="no live worker")
    run.harness("fault", fault=1, action="add_worker")
    run.harness(
        "fault", fault=3, action="kill", target=None, expect="holder", missed="nobody held job 0"
    )
    messages = [v.message for v in fault_coverage(run.history(), CheckContext(faults_planned=4))]
    assert messages == [
        "planned faults 2 never triggered",
        "fault 0 (kill -) did not fire: no live worker",
        "fault 3 (kill holder) did not fire: nobody held job 0",
    ]


def test_a_failure_outranks_an_unknown() -> None:
    run = HistoryBuilder()
    run.submit(0)
    run.harness("fault", fault=0, action="kill", target="worker-1", expect="holder")
    run.effect(0, "kill", "worker-1")
    verdict = judge(run.history(), ["exactly_once", "fault_coverage"])
    assert verdict.status == "fail"
    assert len(verdict.violations) == 1
    assert len(verdict.unknowns) == 1


# -- the verdict -------------------------------------------------------------------------


def test_an_unknown_check_name_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown check 'exactly_one'; valid checks: exactly_once"
    ):
        judge(healthy(1).history(), ["exactly_one"])
    assert set(CHECKS) == {
        "exactly_once",
        "at_least_once",
        "correct_values",
        "batch_barrier",
        "auth",
        "liveness",
        "fault_coverage",
        "clean_exits",
        "attempts_bounded",
        "one_terminal",
        "batch_shape",
        "recovery_latency",
        "no_spurious_expiry",
        "first_result_wins",
        "time_limits",
        "reached",
        "acknowledged",
        "prefetch_bounded",
        "admitted",
        "no_overlap",
        "no_stale_results",
        "outputs_kept",
    }


# -- a real run --------------------------------------------------------------------------


def _ready_address(master: subprocess.Popen[str], timeout_s: float) -> str:
    assert master.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        readable, _, _ = select.select([master.stdout], [], [], deadline - time.monotonic())
        if not readable:
            break
        line = master.stdout.readline()
        if not line:
            break
        if line.startswith("READY "):
            return line.split()[1]
    raise AssertionError(f"no READY line from the master within {timeout_s} s")


@pytest.mark.processes
def test_a_real_master_and_worker_pass_exactly_once_and_correct_values(tmp_path: Path) -> None:
    env = {**os.environ, "DISTQ_AUTHKEY": "test-key-0123456789", "DISTQ_T0": repr(time.monotonic())}
    distq = [sys.executable, "-m", "distq"]
    master_argv = [*distq, "master", "--task", "square", "--count", "20", "--batch-size", "8"]
    master_argv += ["--events", str(tmp_path / "master.events.jsonl")]
    master_argv += ["--results", str(tmp_path / "results.jsonl")]
    master = subprocess.Popen(
        master_argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        address = _ready_address(master, timeout_s=60)
        worker_argv = [*distq, "worker", "--connect", address, "--name", "worker-1"]
        worker_argv += ["--events", str(tmp_path / "worker-1.events.jsonl")]
        worker = subprocess.Popen(
            worker_argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert master.wait(timeout=60) == 0
        assert worker.wait(timeout=60) == 0
    finally:
        for proc in (worker, master):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        if master.stdout is not None:
            master.stdout.close()

    history = History.load_run(tmp_path)
    assert len(history.submitted()) == 20
    assert len(history.select("result_output")) == 20
    assert {e.src for e in history} == {"master", "worker-1", "results"}
    verdict = judge(
        history,
        ["exactly_once", "correct_values", "batch_barrier"],
        CheckContext(expected=builtin_expected),
    )
    assert verdict.status == "pass", verdict.report(history)
    assert all(lease.end == "completed" for lease in history.leases())


# -- network toxics --------------------------------------------------------------------------


def test_a_phased_toxic_that_never_fired_makes_the_verdict_unknown() -> None:
    run = healthy(2)
    added = run.harness("toxic_added", proxy="worker-1", toxic="cut", kind="reset", after_frames=1)
    run.harness(
        "toxic", proxy="worker-1", toxic="cut", kind="reset", connection=0, decision="applied"
    )
    [miss] = fault_coverage(run.history())
    assert miss.severity == "unknown"
    assert "never fired" in miss.message
    assert run.history()[miss.lines[0]].line == added
    run.harness(
        "toxic_fired", proxy="worker-1", toxic="cut", kind="reset", connection=0, action="reset"
    )
    assert fault_coverage(run.history()) == []


def test_a_toxic_that_acted_on_nothing_is_unknown() -> None:
    run = healthy(2)
    added = run.harness("toxic_added", proxy="worker-1", toxic="lag", kind="latency")
    run.harness(
        "toxic", proxy="worker-1", toxic="lag", kind="latency", connection=0, decision="applied"
    )
    [miss] = fault_coverage(run.history())
    assert (miss.severity, miss.lines) == ("unknown", (added,))
    assert "its effect was never recorded" in miss.message
    effect = {"proxy": "worker-1", "toxic": "lag", "kind": "latency", "connection": 0}
    run.harness("toxic_effect", **effect, bytes=0, delayed_ms=0, closes=0)
    [miss] = fault_coverage(run.history())
    assert "carried no bytes through it" in miss.message
    run.harness("toxic_effect", **{**effect, "connection": 1}, bytes=120, delayed_ms=80, closes=0)
    assert fault_coverage(run.history()) == []


def test_a_slow_close_proves_itself_by_a_close_it_held() -> None:
    run = healthy(2)
    run.harness("toxic_added", proxy="worker-1", toxic="linger", kind="slow_close")
    fields = {"proxy": "worker-1", "toxic": "linger", "kind": "slow_close", "connection": 0}
    run.harness("toxic", **fields, decision="applied")
    run.harness("toxic_effect", **fields, bytes=300, delayed_ms=0, closes=0)
    [miss] = fault_coverage(run.history())
    assert "carried no closes through it" in miss.message
    run.harness("toxic_effect", **{**fields, "connection": 1}, bytes=0, delayed_ms=200, closes=1)
    assert fault_coverage(run.history()) == []


def test_a_toxic_every_connection_skipped_is_unknown() -> None:
    run = healthy(2)
    run.harness("toxic_added", proxy="worker-2", toxic="lag", kind="latency", probability=0.5)
    run.harness(
        "toxic", proxy="worker-2", toxic="lag", kind="latency", connection=0, decision="skipped"
    )
    [miss] = fault_coverage(run.history())
    assert miss.severity == "unknown"
    assert "skipped" in miss.message


def test_clean_exits_accepts_master_lost_only_for_a_worker_whose_connection_was_cut() -> None:
    run = healthy(2)
    codes = {"master": 0, "worker-1": 5, "worker-2": 0}
    [violation] = clean_exits(run.history(), CheckContext(exit_codes=codes, documented=DISTQ_EXITS))
    assert violation.message == "worker-1 exited with 5, expected 0"
    run.harness(
        "toxic_fired", proxy="worker-1", toxic="cut", kind="reset", connection=0, action="reset"
    )
    assert clean_exits(run.history(), CheckContext(exit_codes=codes, documented=DISTQ_EXITS)) == []
    assert (
        clean_exits(
            run.history(), CheckContext(exit_codes={**codes, "worker-2": 5}, documented=DISTQ_EXITS)
        )
        != []
    )


def _late_worker_run(*, joined: bool, exits_after_stop: bool) -> HistoryBuilder:
    """worker-1 does the one job; worker-3 gives up (exit 5) before or after the stop."""
    run = HistoryBuilder()
    run.submit(0)
    run.master("master_ready", address="127.0.0.1:1", jobs=1)
    if joined:
        run.master("worker_joined", worker="worker-3", pid=3, host="h")
    run.lease(0, "worker-1")
    run.accept(0, "worker-1", 0)
    if not exits_after_stop:
        run.add("worker-3", "worker_exit", code=5, reason="lost the master")
    run.master("master_stopped", results=1, unfinished=0)
    if exits_after_stop:
        run.add("worker-3", "worker_exit", code=5, reason="lost the master")
    return run


@pytest.mark.parametrize("code", [4, 5])
def test_clean_exits_accepts_a_worker_that_arrived_after_the_work_ran_out(code: int) -> None:
    run = _late_worker_run(joined=False, exits_after_stop=True)
    codes = {"master": 0, "worker-1": 0, "worker-3": code}
    assert clean_exits(run.history(), CheckContext(exit_codes=codes, documented=DISTQ_EXITS)) == []
    [violation] = clean_exits(
        run.history(), CheckContext(exit_codes={**codes, "worker-3": 3}, documented=DISTQ_EXITS)
    )
    assert violation.message == "worker-3 exited with 3, expected 0 or 4 or 5"


@pytest.mark.parametrize(
    ("joined", "exits_after_stop"), [(True, True), (False, False), (True, False)]
)
def test_clean_exits_refuses_master_lost_from_a_worker_that_joined_or_left_early(
    joined: bool, exits_after_stop: bool
) -> None:
    run = _late_worker_run(joined=joined, exits_after_stop=exits_after_stop)
    codes = {"master": 0, "worker-1": 0, "worker-3": 5}
    [violation] = clean_exits(run.history(), CheckContext(exit_codes=codes, documented=DISTQ_EXITS))
    assert violation.message == "worker-3 exited with 5, expected 0"


def test_clean_exits_flags_a_traceback_in_any_log() -> None:
    run = healthy(1)
    logs = {"worker-1": "Traceback (most recent call last):\n  ...\nEOFError"}
    [violation] = clean_exits(
        run.history(),
        CheckContext(exit_codes={"master": 0, "worker-1": 0}, logs=logs, documented=DISTQ_EXITS),
    )
    assert violation.message == "worker-1's log holds a traceback"


# -- reached -----------------------------------------------------------------------------


def test_a_window_the_run_never_reached_is_unknown() -> None:
    run = pause_run(expired=True)
    expiry = Reach("lease_expired", worker="worker-1", during="pause")
    assert reached(run.history(), CheckContext(reached=(expiry,))) == []
    late = Reach("duplicate_dropped")
    [missed] = reached(run.history(), CheckContext(reached=(expiry, late)))
    assert missed.severity == "unknown"
    assert missed.message == "never reached: duplicate_dropped; the run did not show what it is for"


def test_reached_counts_only_events_inside_the_window() -> None:
    """pause_run(expired=False): the lease expires only after the resume."""
    run = pause_run(expired=False)
    [missed] = reached(
        run.history(), CheckContext(reached=(Reach("lease_expired", during="pause"),))
    )
    assert missed.message.startswith("never reached: lease_expired during a pause")
    assert reached(run.history(), CheckContext(reached=(Reach("lease_expired"),))) == []


def test_a_partition_that_let_bytes_through_proves_nothing() -> None:
    run = healthy(1)
    run.harness("fault", fault=0, action="partition", target="worker-1")
    run.effect(0, "partition", "worker-1", verified=False, why="40 byte(s) crossed the cut")
    [miss] = fault_coverage(run.history())
    assert (
        miss.message
        == "fault 0 (partition worker-1) did not take effect: 40 byte(s) crossed the cut"
    )
