"""The semantic checkers on hand-built histories: a correct queue passes, each broken
behaviour fails with the job and the history lines behind it, and missing evidence is
unknown, never a pass."""

from __future__ import annotations

import pytest

from harness.checks import (
    CheckContext,
    Violation,
    attempts_bounded,
    batch_shape,
    first_result_wins,
    judge,
    no_spurious_expiry,
    one_terminal,
    recovery_latency,
    time_limits,
)
from harness.history import History
from tests.support import HistoryBuilder


def checks_of(violations: list[Violation]) -> list[tuple[str, tuple[int, ...]]]:
    return [(v.severity, v.jobs) for v in violations]


# -- attempts_bounded --------------------------------------------------------------------


def poison(run: HistoryBuilder, attempts: int, *, dead: bool = True) -> HistoryBuilder:
    run.submit(0)
    for attempt in range(1, attempts + 1):
        run.lease(0, "worker-1", attempt)
        run.failed(0, attempt)
        if attempt < attempts or not dead:
            run.master("requeued", job=0, attempts=attempt, reason="JobFailed")
    if dead:
        run.master("dead", job=0, attempts=attempts, error="dead")
    return run


def test_a_poison_job_dead_after_exactly_max_attempts_passes() -> None:
    assert (
        attempts_bounded(
            poison(HistoryBuilder(step_s=0.001), 3).history(), CheckContext(max_attempts=3)
        )
        == []
    )


def test_a_job_retried_once_too_often_fails_at_the_extra_lease_and_at_its_death() -> None:
    run = poison(HistoryBuilder(step_s=0.001), 4)
    violations = attempts_bounded(run.history(), CheckContext(max_attempts=3))
    assert [v.message for v in violations] == [
        "job 0 leased for attempt 4 > max_attempts 3",
        "job 0 declared dead after 4 counted attempt(s), max_attempts is 3",
    ]
    assert violations[0].lines == (10,)  # the fourth lease


def test_a_job_dead_one_attempt_early_fails() -> None:
    violations = attempts_bounded(
        poison(HistoryBuilder(step_s=0.001), 2).history(), CheckContext(max_attempts=3)
    )
    assert [v.message for v in violations] == [
        "job 0 declared dead after 2 counted attempt(s), max_attempts is 3"
    ]


def test_a_counted_bye_fails_citing_the_hand_back() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    lost = run.lost("worker-1", [0], "worker left", counted=True)
    failed = run.failed(0, 1, "worker left (worker-1)")
    run.master("dead", job=0, attempts=1, error="dead")
    run.master("worker_left", worker="worker-1", handed_back=[0])
    violations = attempts_bounded(run.history(), CheckContext(max_attempts=1))
    assert violations == [
        Violation(
            "attempts_bounded",
            "job 0: a graceful hand-back was counted as a failed attempt",
            (0,),
            (lost, failed),
        )
    ]


def test_an_uncounted_hand_back_leases_the_same_attempt_again() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    run.lost("worker-1", [0], "worker rejoined", counted=False)
    run.master("requeued", job=0, attempts=0, reason="worker rejoined (worker-1)")
    run.master("worker_rejoined", worker="worker-1", handed_back=[0])
    run.lease(0, "worker-2", 1)
    run.accept(0, "worker-2")
    assert attempts_bounded(run.history(), CheckContext(max_attempts=1)) == []


def test_a_hand_back_that_still_advances_the_attempt_number_fails() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    run.lost("worker-1", [0], "worker left", counted=False)
    run.master("worker_left", worker="worker-1", handed_back=[0])
    second = run.lease(0, "worker-2", 2)
    violations = attempts_bounded(run.history(), CheckContext(max_attempts=3))
    assert [(v.jobs, v.lines) for v in violations] == [((0,), (second,))]
    assert "after 0 counted" in violations[0].message


def test_a_closed_connection_then_a_rejoin_is_a_counted_loss() -> None:
    # The master saw the connection close first: it cannot know a rejoin is coming.
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    run.lost("worker-1", [0], "connection closed")
    run.failed(0, 1, "connection closed (worker-1)")
    run.master("requeued", job=0, attempts=1, reason="connection closed")
    run.master("worker_rejoined", worker="worker-1", handed_back=[])
    run.lease(0, "worker-1", 2)
    run.accept(0, "worker-1", attempt=2)
    assert attempts_bounded(run.history(), CheckContext(max_attempts=3)) == []


def test_a_hand_back_is_told_by_the_masters_next_word_on_the_worker() -> None:
    # Whatever the loss's reason, and whatever unrelated events come in between.
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    run.lost("worker-1", [0], "gone")
    run.failed(0, 1)
    run.master("auth_rejected", peer="127.0.0.1:9", kind="bad_key")
    run.master("requeued", job=0, attempts=1, reason="gone")
    run.master("worker_left", worker="worker-1", handed_back=[0])
    assert [v.jobs for v in attempts_bounded(run.history(), CheckContext(max_attempts=3))] == [(0,)]


def test_a_sigterm_then_a_counted_close_fails_but_a_kill_after_it_does_not() -> None:
    def run_with(kill: bool) -> History:
        run = HistoryBuilder(step_s=0.001)
        run.submit(0)
        run.lease(0, "worker-1")
        run.fault("terminate", "worker-1")
        if kill:
            run.fault("kill", "worker-1")
        run.lost("worker-1", [0], "connection closed")
        run.failed(0, 1)
        run.master("requeued", job=0, attempts=1, reason="connection closed")
        return run.history()

    assert len(attempts_bounded(run_with(kill=False), CheckContext(max_attempts=3))) == 1
    assert attempts_bounded(run_with(kill=True), CheckContext(max_attempts=3)) == []


def test_a_resubmitted_job_counts_its_attempts_afresh() -> None:
    run = poison(HistoryBuilder(step_s=0.001), 2, dead=False)
    run.submit(0)  # a restarted master
    run.lease(0, "worker-1", 1)
    run.accept(0, "worker-1")
    assert attempts_bounded(run.history(), CheckContext(max_attempts=2)) == []


def test_attempts_bounded_is_unknown_without_its_evidence() -> None:
    history = poison(HistoryBuilder(step_s=0.001), 3).history()
    assert checks_of(attempts_bounded(history)) == [("unknown", ())]
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    assert checks_of(attempts_bounded(run.history(), CheckContext(max_attempts=3))) == [
        ("unknown", ())
    ]
    run.master("leased", job=0, worker="worker-1")
    assert (
        "no attempt numbers"
        in attempts_bounded(run.history(), CheckContext(max_attempts=3))[0].message
    )


# -- one_terminal ------------------------------------------------------------------------


def test_dead_then_accepted_is_two_terminals() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    dead = run.master("dead", job=0, attempts=1, error="lease expired")
    accepted = run.accept(0, "worker-1")
    assert one_terminal(run.history()) == [
        Violation(
            "one_terminal",
            "job 0 has two terminal events: dead then result_accepted",
            (0,),
            (dead, accepted),
        )
    ]


def test_one_terminal_per_job_passes_and_a_late_duplicate_is_fine() -> None:
    run = HistoryBuilder(step_s=0.001)
    for job in range(3):
        run.submit(job)
        run.lease(job, "worker-1")
        run.accept(job, "worker-1")
    run.master("duplicate_dropped", job=1, attempt=1, worker="worker-2", ok=True)
    assert one_terminal(run.history()) == []


def test_one_terminal_is_unknown_without_the_master_log() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.add("worker-1", "started", job=0, attempt=1)
    assert checks_of(one_terminal(run.history())) == [("unknown", ())]


# -- batch_shape -------------------------------------------------------------------------


def batches(sizes: list[int]) -> HistoryBuilder:
    run, job = HistoryBuilder(step_s=0.001), 0
    for batch, size in enumerate(sizes):
        for _ in range(size):
            run.submit(job, batch=batch)
            job += 1
    return run


def test_full_batches_and_a_short_last_one_pass() -> None:
    assert batch_shape(batches([7, 7, 5]).history(), CheckContext(batch_size=7)) == []
    assert batch_shape(batches([7, 7]).history(), CheckContext(batch_size=7)) == []


@pytest.mark.parametrize(
    ("sizes", "bad"), [([8, 8, 1], [0, 1]), ([7, 6, 7], [1]), ([7, 9], [1]), ([7, 0, 7], [1])]
)
def test_a_batch_of_the_wrong_size_fails(sizes: list[int], bad: list[int]) -> None:
    violations = batch_shape(batches(sizes).history(), CheckContext(batch_size=7))
    assert [v.message.split(" has")[0] for v in violations] == [f"batch {b}" for b in bad]


def test_jobs_outside_any_batch_fail_when_batches_are_stated() -> None:
    run = batches([2])
    run.submit(9)
    assert batch_shape(run.history(), CheckContext(batch_size=2))[0].jobs == (9,)


def test_more_jobs_leased_while_a_batch_is_open_than_it_holds_fails() -> None:
    run = batches([2, 2])
    run.master("batch_opened", batch=0)
    for job in (0, 1, 2):
        run.lease(job, "worker-1")
    violations = batch_shape(run.history(), CheckContext(batch_size=2))
    assert [v.jobs for v in violations] == [(0, 1, 2)]


def test_batch_shape_is_unknown_without_a_batch_size_or_jobs() -> None:
    assert checks_of(batch_shape(batches([2]).history())) == [("unknown", ())]
    assert checks_of(
        batch_shape(HistoryBuilder(step_s=0.001).history(), CheckContext(batch_size=2))
    ) == [("unknown", ())]
    unbatched = HistoryBuilder(step_s=0.001)
    unbatched.submit(0)  # a log whose submissions name no batch at all
    assert checks_of(batch_shape(unbatched.history(), CheckContext(batch_size=2))) == [
        ("unknown", ())
    ]


# -- recovery_latency --------------------------------------------------------------------


def killed_holder(back_after_s: float, action: str = "kill") -> HistoryBuilder:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    run.at(1.0).fault(action, "worker-1")
    run.at(1.0 + back_after_s).lost("worker-1", [0], "connection closed")
    return run


def test_a_fast_close_path_passes_and_reports_its_latency() -> None:
    found = recovery_latency(killed_holder(0.05).history())
    assert [(v.severity, v.check) for v in found] == [("note", "recovery_latency")]
    assert "job 0 of worker-1 after kill (close path): 0.050 s" in found[0].message


def test_leases_held_until_they_expire_fail_the_close_path() -> None:
    found = recovery_latency(killed_holder(10.0).history(), CheckContext(lease_timeout_s=10.0))
    assert [v.severity for v in found] == ["fail", "note"]
    assert "back after 10.000 s, bound 1 s" in found[0].message
    assert (
        recovery_latency(
            killed_holder(2.0, "terminate").history(), CheckContext(recovery_bound_s=3.0)
        )[0].severity
        == "note"
    )


def test_a_lease_never_recovered_fails() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    run.at(1.0).fault("kill", "worker-1")
    run.at(5.0).master("master_stopped")
    assert "back after inf s" in recovery_latency(run.history())[0].message


def paused_holder(
    expired_after_s: float | None, resume_after_s: float = 3.0, *, ready: bool = True
) -> HistoryBuilder:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    if ready:  # the master states its lease and heartbeat
        run.master("master_ready", lease_timeout_s=0.5, heartbeat_interval_s=0.125)
    run.lease(0, "worker-1")
    run.at(1.0).fault("pause", "worker-1")
    if expired_after_s is not None:
        run.at(1.0 + expired_after_s).master(
            "lease_expired", job=0, attempt=1, lease=1, worker="worker-1"
        )
    run.at(1.0 + resume_after_s).fault("resume", "worker-1", scheduled=True)
    run.at(1.0 + resume_after_s + 0.1).accept(0, "worker-1")
    return run


def test_the_expiry_path_is_bounded_by_the_lease_and_one_heartbeat() -> None:
    ok = recovery_latency(paused_holder(0.6).history())
    assert [v.severity for v in ok] == ["note"]
    assert "(expiry path): 0.600 s" in ok[0].message
    late = recovery_latency(paused_holder(2.0).history())
    assert [v.severity for v in late] == ["fail", "note"]
    assert "bound 0.925 s" in late[0].message  # 0.5 + 0.125 + the scheduling allowance
    # The scenario's word goes before the master's.
    stated = recovery_latency(paused_holder(2.0).history(), CheckContext(lease_timeout_s=2.0))
    assert [v.severity for v in stated] == ["note"]


def test_a_short_pause_that_kept_its_lease_measures_nothing() -> None:
    found = recovery_latency(paused_holder(None, 0.2).history())
    assert checks_of(found) == [("unknown", ())]


def test_recovery_latency_is_unknown_when_no_fault_took_a_holder() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.at(1.0).fault("kill", "worker-1")  # it held nothing
    assert checks_of(recovery_latency(run.history())) == [("unknown", ())]
    unstated = paused_holder(0.6, ready=False).history()
    assert checks_of(recovery_latency(unstated, CheckContext(lease_timeout_s=0.5))) == [
        ("unknown", ())
    ]


def test_the_verdict_carries_the_measured_latencies_as_notes() -> None:
    history = killed_holder(0.05).history()
    verdict = judge(history, ["recovery_latency"])
    assert verdict.status == "pass"
    assert [note.check for note in verdict.notes] == ["recovery_latency"]
    assert "note recovery_latency: measured: job 0" in verdict.report(history)


# -- no_spurious_expiry ------------------------------------------------------------------


def expiry(*faults: tuple[str, str, float]) -> HistoryBuilder:
    run = HistoryBuilder(step_s=0.001)
    run.add("harness", "run_started")
    run.submit(0)
    run.lease(0, "worker-1")
    for action, target, t in faults:
        run.at(t).fault(action, target)
    run.at(3.0).master("lease_expired", job=0, attempt=1, lease=1, worker="worker-1")
    return run


def test_a_healthy_holder_losing_its_lease_fails() -> None:
    found = no_spurious_expiry(expiry().history(), CheckContext(lease_timeout_s=0.5))
    assert [(v.severity, v.jobs) for v in found] == [("fail", (0,))]
    assert "worker-1 was healthy" in found[0].message


@pytest.mark.parametrize(
    "fault",
    [("pause", "worker-1", 2.0), ("kill", "worker-1", 2.9), ("partition", "worker-1", 2.6)],
)
def test_an_expiry_explained_by_a_fault_passes(fault: tuple[str, str, float]) -> None:
    assert no_spurious_expiry(expiry(fault).history(), CheckContext(lease_timeout_s=0.5)) == []


def test_a_pause_long_over_before_the_expiry_does_not_explain_it() -> None:
    run = expiry(("pause", "worker-1", 0.5), ("resume", "worker-1", 0.6))
    assert len(no_spurious_expiry(run.history(), CheckContext(lease_timeout_s=0.5))) == 1


def test_a_toxic_on_the_holders_proxy_explains_an_expiry() -> None:
    run = expiry()
    run.at(0.1).add("harness", "toxic_added", proxy="worker-1", toxic="slow", kind="latency")
    assert no_spurious_expiry(run.history(), CheckContext(lease_timeout_s=0.5)) == []


def test_no_spurious_expiry_is_unknown_without_leases_or_the_harness_record() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.add("harness", "run_started")
    assert checks_of(no_spurious_expiry(run.history())) == [("unknown", ())]
    bare = HistoryBuilder(step_s=0.001)
    bare.lease(0, "worker-1")
    assert checks_of(no_spurious_expiry(bare.history())) == [("unknown", ())]


# -- first_result_wins -------------------------------------------------------------------


def test_a_result_dropped_before_any_terminal_fails() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    run.add("worker-1", "completed", job=0, attempt=1, ok=True)
    dropped = run.master("duplicate_dropped", job=0, attempt=1, worker="worker-1", ok=True)
    run.lease(0, "worker-1", 2)
    run.accept(0, "worker-1", attempt=2)
    found = first_result_wins(run.history())
    assert [(v.jobs, v.lines) for v in found] == [((0,), (dropped,))]


def test_a_duplicate_after_the_accepted_result_is_fine() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    run.add("worker-1", "completed", job=0, attempt=1, ok=True)
    run.accept(0, "worker-1")
    run.add("worker-2", "completed", job=0, attempt=2, ok=True)
    run.master("duplicate_dropped", job=0, attempt=2, worker="worker-2", ok=True)
    assert first_result_wins(run.history()) == []


def late_terminal(*faults: tuple[str, str, float]) -> HistoryBuilder:
    """worker-1 finishes job 0 at t=1; the job's terminal comes from worker-2 at t=4."""
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    for action, target, t in faults:
        run.at(t).fault(action, target)
    run.at(1.0).add("worker-1", "completed", job=0, attempt=1, ok=True)
    run.at(4.0).add("worker-2", "completed", job=0, attempt=2, ok=True)
    run.accept(0, "worker-2", attempt=2)
    return run


def test_a_first_result_that_lost_to_a_later_one_fails() -> None:
    found = first_result_wins(late_terminal().history())
    assert [(v.severity, v.jobs) for v in found] == [("fail", (0,))]
    assert "worker-1's ok result of attempt 1" in found[0].message


@pytest.mark.parametrize(
    "faults",
    [
        [("pause", "worker-1", 0.5)],  # never resumed: it could not report
        [("kill", "worker-1", 1.2)],  # killed before its report left
        [("partition", "worker-1", 0.2)],
    ],
)
def test_a_first_result_that_may_never_have_left_is_excused(
    faults: list[tuple[str, str, float]],
) -> None:
    assert first_result_wins(late_terminal(*faults).history()) == []


def test_a_pause_pushes_back_when_the_result_could_arrive() -> None:
    resumed_late = late_terminal(("pause", "worker-1", 0.5), ("resume", "worker-1", 3.5))
    assert first_result_wins(resumed_late.history()) == []
    resumed_early = late_terminal(("pause", "worker-1", 0.5), ("resume", "worker-1", 1.5))
    assert len(first_result_wins(resumed_early.history())) == 1


def test_an_outcome_held_back_by_the_next_job_of_the_lease_is_not_late() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.submit(1)
    run.lease(0, "worker-1")
    run.lease(1, "worker-1")
    run.at(1.0).add("worker-1", "completed", job=0, attempt=1, ok=True)
    run.add("worker-1", "started", job=1, attempt=1)
    run.at(3.5).add("worker-1", "completed", job=1, attempt=1, ok=True)
    run.at(4.0).accept(0, "worker-2", attempt=2)
    run.accept(1, "worker-1")
    assert first_result_wins(run.history()) == []


def test_first_result_wins_is_unknown_without_worker_logs() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.lease(0, "worker-1")
    run.accept(0, "worker-1")
    assert checks_of(first_result_wins(run.history())) == [("unknown", ())]


# -- time_limits -------------------------------------------------------------------------


def limited_run(end: str | None, after_s: float, *faults: tuple[str, str, float]) -> HistoryBuilder:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0, limit=0.3)
    run.lease(0, "worker-1")
    for action, target, t in faults:
        run.at(t).fault(action, target)
    run.at(1.0).add("worker-1", "started", job=0, attempt=1, worker="worker-1")
    if end == "killed":
        run.at(1.0 + after_s).add(
            "worker-1", "runner_killed", job=0, attempt=1, reason="too long", time_limit_s=0.3
        )
    elif end == "completed":
        run.at(1.0 + after_s).add("worker-1", "completed", job=0, attempt=1, ok=True)
    run.at(5.0).master("master_stopped")
    return run


def test_a_job_killed_at_its_own_limit_passes() -> None:
    assert time_limits(limited_run("killed", 0.31).history()) == []
    assert time_limits(limited_run("completed", 0.1).history()) == []


def test_a_job_killed_before_its_own_limit_fails() -> None:
    found = time_limits(limited_run("killed", 0.1).history())
    assert [v.message for v in found] == [
        "job 0 killed after 0.100 s of its own, its limit is 0.3 s"
    ]


@pytest.mark.parametrize(("end", "after_s"), [("completed", 1.5), ("killed", 1.5), (None, 0)])
def test_a_job_running_past_its_limit_fails(end: str | None, after_s: float) -> None:
    found = time_limits(limited_run(end, after_s).history())
    assert [(v.severity, v.jobs) for v in found] == [("fail", (0,))]


def test_the_slack_is_the_scenarios() -> None:
    history = limited_run("completed", 1.5).history()
    assert time_limits(history, CheckContext(time_limit_slack_s=2.0)) == []


def test_a_stopped_worker_cannot_be_held_to_a_limit() -> None:
    history = limited_run("completed", 1.5, ("pause", "worker-1", 1.1)).history()
    assert checks_of(time_limits(history)) == [("unknown", ())]


def test_time_limits_is_unknown_without_a_limited_job() -> None:
    run = HistoryBuilder(step_s=0.001)
    run.submit(0)
    run.add("worker-1", "started", job=0, attempt=1)
    assert checks_of(time_limits(run.history())) == [("unknown", ())]
