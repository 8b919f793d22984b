"""Unit tests of the pure state machine ``distq.board.JobBoard``, one transition at a time.

Time comes from a fake clock that only moves when a test moves it; nothing here sleeps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from distq.board import JobBoard, JobState, Outcome
from distq.jobs import Job, Result

T0 = 100.0
TIMEOUT_S = 5.0


class FakeClock:
    """A clock that stands still until told to move."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeBoard = Callable[..., JobBoard]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_board(clock: FakeClock) -> MakeBoard:
    def make(**kwargs: Any) -> JobBoard:
        kwargs.setdefault("lease_timeout_s", TIMEOUT_S)
        return JobBoard(clock=clock, **kwargs)

    return make


@pytest.fixture
def board(make_board: MakeBoard) -> JobBoard:
    return make_board()


def submit_n(board: JobBoard, n: int) -> list[int]:
    return [board.submit("square", (i,)).job_id for i in range(n)]


def ids(jobs: list[Job]) -> list[int]:
    return [job.job_id for job in jobs]


def names(events: list[dict[str, Any]]) -> list[str]:
    return [event["ev"] for event in events]


def only(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [event for event in events if event["ev"] == name]


def fields(event: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: event[key] for key in keys}


def leased_once(board: JobBoard, worker: str = "A") -> Job:
    """Submit one job and lease it to ``worker``."""
    board.submit("square", (3,))
    (job,) = board.lease(worker)
    return job


# -- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "names_the_argument"),
    [
        ({"lease_timeout_s": 0}, "lease_timeout_s"),
        ({"lease_timeout_s": -1.5}, "lease_timeout_s"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -2}, "max_attempts"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -10}, "batch_size"),
        ({"batch_size": math.nan}, "batch_size"),
    ],
)
def test_invalid_constructor_arguments_are_rejected_naming_the_argument(
    clock: FakeClock, kwargs: dict[str, Any], names_the_argument: str
) -> None:
    with pytest.raises(ValueError, match=names_the_argument):
        JobBoard(clock=clock, **kwargs)


def test_nan_lease_timeout_is_rejected(clock: FakeClock) -> None:
    # A NaN deadline is never overdue: a hung worker would keep its jobs forever.
    with pytest.raises(ValueError, match="lease_timeout_s"):
        JobBoard(clock=clock, lease_timeout_s=math.nan)


def test_default_max_attempts_is_three(clock: FakeClock) -> None:
    board = JobBoard(clock=clock)
    board.submit("fail")
    outcomes = []
    for _ in range(3):
        (job,) = board.lease("A")
        outcomes.append(board.fail("A", job.job_id, job.attempt, "boom"))
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.DEAD]


def test_an_empty_board_is_finished(board: JobBoard) -> None:
    assert board.finished
    assert board.unfinished == 0
    assert board.leasable == 0
    assert not board.has_leasable()
    assert len(board) == 0
    assert board.lease("A", 5) == []


# -- submit ----------------------------------------------------------------------------------


def test_submit_assigns_consecutive_ids_and_makes_jobs_leasable(board: JobBoard) -> None:
    jobs = [board.submit("square", (i,), time_limit_s=2.5) for i in range(3)]
    assert ids(jobs) == [0, 1, 2]
    assert jobs[1] == Job(1, "square", (1,), 0, 2.5, None)
    assert len(board) == 3
    assert board.unfinished == 3
    assert not board.finished
    assert board.leasable == 3
    assert board.has_leasable()
    assert all(board.state(i) is JobState.PENDING for i in range(3))
    assert all(board.result(i) is None and board.holder(i) is None for i in range(3))


def test_explicit_ids_are_kept_and_auto_ids_continue_after_the_highest(board: JobBoard) -> None:
    assert board.submit("square", job_id=10).job_id == 10
    assert board.submit("square").job_id == 11
    assert board.submit("square", job_id=5).job_id == 5
    assert board.submit("square").job_id == 12
    assert ids(board.lease("A", 10)) == [10, 11, 5, 12]


@pytest.mark.parametrize("explicit_first", [True, False])
def test_a_duplicate_job_id_is_rejected_and_changes_nothing(
    board: JobBoard, explicit_first: bool
) -> None:
    if explicit_first:
        board.submit("square", (1,), job_id=0)
    else:
        board.submit("square", (1,))
    board.drain_events()
    with pytest.raises(ValueError, match="job id 0"):
        board.submit("echo", ("other",), job_id=0)
    assert len(board) == 1
    assert board.unfinished == 1
    assert board.leasable == 1
    assert board.drain_events() == []
    (job,) = board.lease("A", 5)
    assert (job.task, job.args) == ("square", (1,))


# -- lease -----------------------------------------------------------------------------------


def test_lease_hands_out_at_most_max_n_in_submission_order(board: JobBoard) -> None:
    submit_n(board, 5)
    assert ids(board.lease("A", 2)) == [0, 1]
    assert board.leasable == 3
    assert ids(board.lease("B")) == [2]
    assert ids(board.lease("A", 10)) == [3, 4]
    assert board.leasable == 0
    assert not board.has_leasable()
    assert board.lease("C", 10) == []
    assert board.held_by("A") == {0, 1, 3, 4}
    assert board.held_by("B") == {2}
    assert board.held_by("C") == frozenset()
    assert [board.holder(i) for i in range(5)] == ["A", "A", "B", "A", "A"]
    assert all(board.state(i) is JobState.LEASED for i in range(5))
    assert board.unfinished == 5


def test_a_leased_job_carries_its_task_args_time_limit_and_first_attempt(board: JobBoard) -> None:
    board.submit("sleep", (0.5, "x"), time_limit_s=3.0)
    (job,) = board.lease("A")
    assert job == Job(0, "sleep", (0.5, "x"), 1, 3.0, None)
    assert board.attempts(0) == 1


def test_each_lease_gets_a_fresh_increasing_lease_id(board: JobBoard, clock: FakeClock) -> None:
    submit_n(board, 2)
    board.lease("A", 2)
    clock.advance(TIMEOUT_S)
    board.expire()
    board.lease("B", 2)
    leases = [event["lease"] for event in only(board.drain_events(), "leased")]
    assert len(leases) == 4
    assert len(set(leases)) == 4
    assert leases == sorted(leases)


def test_the_attempt_number_grows_with_each_new_lease_of_a_job(
    board: JobBoard, clock: FakeClock
) -> None:
    board.submit("hang")
    attempts = []
    for worker in ("A", "B", "C"):
        (job,) = board.lease(worker)
        attempts.append(job.attempt)
        clock.advance(TIMEOUT_S + 1)
        board.expire()
    assert attempts == [1, 2, 3]


def test_the_lease_deadline_is_now_plus_lease_timeout(board: JobBoard, clock: FakeClock) -> None:
    submit_n(board, 2)
    board.lease("A")  # deadline T0 + 5
    clock.advance(2.0)
    board.lease("B")  # deadline T0 + 7
    assert board.expire(T0 + TIMEOUT_S - 0.5) == []
    assert board.expire(T0 + TIMEOUT_S + 0.5) == [0]
    assert board.state(1) is JobState.LEASED
    assert board.expire(T0 + 2.0 + TIMEOUT_S - 0.5) == []
    assert board.expire(T0 + 2.0 + TIMEOUT_S + 0.5) == [1]


# -- heartbeat -------------------------------------------------------------------------------


def test_heartbeat_extends_only_the_leases_of_that_worker(
    board: JobBoard, clock: FakeClock
) -> None:
    submit_n(board, 3)
    board.lease("A", 2)
    board.lease("B")
    clock.advance(4.0)
    assert board.heartbeat("A") == 2  # A's deadlines move to T0 + 9
    assert sorted(board.expire(T0 + 6.0)) == [2]
    assert board.held_by("A") == {0, 1}
    assert board.expire(T0 + 8.5) == []
    assert sorted(board.expire(T0 + 9.5)) == [0, 1]


def test_heartbeat_of_a_worker_without_leases_changes_nothing(
    board: JobBoard, clock: FakeClock
) -> None:
    submit_n(board, 1)
    board.lease("A")
    clock.advance(4.0)
    assert board.heartbeat("B") == 0
    assert board.expire(T0 + 5.5) == [0]


def test_heartbeat_does_not_revive_an_expired_lease(board: JobBoard, clock: FakeClock) -> None:
    submit_n(board, 1)
    board.lease("A")
    clock.advance(TIMEOUT_S + 1)
    assert board.expire() == [0]
    assert board.heartbeat("A") == 0
    assert board.state(0) is JobState.PENDING
    assert board.held_by("A") == frozenset()
    assert board.leasable == 1


# -- complete --------------------------------------------------------------------------------


def test_complete_accepts_the_result_and_frees_the_lease(board: JobBoard) -> None:
    submit_n(board, 2)
    board.lease("A", 2)
    assert board.complete("A", 0, 1, 0) == Outcome.ACCEPTED
    assert board.state(0) is JobState.DONE
    assert board.result(0) == Result(0, True, 0, None, "A", 1)
    assert board.holder(0) is None
    assert board.held_by("A") == {1}
    assert board.unfinished == 1
    assert not board.finished
    assert board.complete("A", 1, 1, 1) == Outcome.ACCEPTED
    assert board.finished
    assert board.unfinished == 0
    assert board.duplicates == 0


def test_a_second_result_is_a_counted_duplicate_and_the_first_stays(board: JobBoard) -> None:
    leased_once(board)
    assert board.complete("A", 0, 1, "first") == Outcome.ACCEPTED
    assert board.complete("A", 0, 1, "again") == Outcome.DUPLICATE
    assert board.complete("B", 0, 2, "other") == Outcome.DUPLICATE
    assert board.duplicates == 2
    assert board.result(0) == Result(0, True, "first", None, "A", 1)
    assert board.state(0) is JobState.DONE
    assert board.unfinished == 0


def test_report_routes_a_successful_result_to_complete(board: JobBoard) -> None:
    leased_once(board)
    result = Result(0, True, 9, None, "A", 1)
    assert board.report(result) == Outcome.ACCEPTED
    assert board.result(0) == result
    assert board.report(result) == Outcome.DUPLICATE
    assert board.duplicates == 1


def test_a_result_for_an_unknown_job_is_unknown(board: JobBoard) -> None:
    leased_once(board)
    assert board.complete("A", 42, 1, "x") == Outcome.UNKNOWN
    assert board.duplicates == 0
    assert board.unfinished == 1
    assert board.held_by("A") == {0}


def test_a_result_for_a_never_leased_job_is_unknown_and_the_job_stays_pending(
    board: JobBoard,
) -> None:
    submit_n(board, 1)
    assert board.complete("A", 0, 1, 0) == Outcome.UNKNOWN
    assert board.state(0) is JobState.PENDING
    assert board.result(0) is None
    assert board.leasable == 1
    assert board.unfinished == 1
    assert ids(board.lease("B")) == [0]


def test_a_late_result_for_an_expired_requeued_job_wins(board: JobBoard, clock: FakeClock) -> None:
    submit_n(board, 2)
    board.lease("A")
    clock.advance(TIMEOUT_S + 1)
    assert board.expire() == [0]
    assert board.leasable == 2
    assert board.complete("A", 0, 1, "late") == Outcome.ACCEPTED
    assert board.state(0) is JobState.DONE
    assert board.result(0) == Result(0, True, "late", None, "A", 1)
    assert board.leasable == 1
    assert ids(board.lease("B", 5)) == [1]  # job 0 is not handed out again
    assert board.unfinished == 1


def test_a_late_result_beats_the_worker_that_re_leased_the_job(
    board: JobBoard, clock: FakeClock
) -> None:
    leased_once(board, "A")
    clock.advance(TIMEOUT_S + 1)
    board.expire()
    (again,) = board.lease("B")
    assert again.attempt == 2
    assert board.complete("A", 0, 1, "from A") == Outcome.ACCEPTED
    assert board.held_by("B") == frozenset()
    assert board.holder(0) is None
    assert board.complete("B", 0, 2, "from B") == Outcome.DUPLICATE
    assert board.duplicates == 1
    assert board.result(0) == Result(0, True, "from A", None, "A", 1)
    assert board.finished


def test_a_late_result_for_a_dead_job_is_a_duplicate(make_board: MakeBoard) -> None:
    board = make_board(max_attempts=1)
    leased_once(board)
    assert board.fail("A", 0, 1, "boom") == Outcome.DEAD
    dead_result = board.result(0)
    assert board.complete("B", 0, 1, 9) == Outcome.DUPLICATE
    assert board.duplicates == 1
    assert board.result(0) == dead_result
    assert board.state(0) is JobState.DEAD


# -- fail ------------------------------------------------------------------------------------


def test_a_failure_requeues_the_job_at_the_front_and_counts_the_attempt(board: JobBoard) -> None:
    submit_n(board, 3)
    board.lease("A", 2)
    assert board.fail("A", 1, 1, "boom") == Outcome.RETRY
    assert board.state(1) is JobState.PENDING
    assert board.holder(1) is None
    assert board.held_by("A") == {0}
    assert board.attempts(1) == 1
    assert board.leasable == 2
    assert board.requeues == 1
    (retry,) = board.lease("B")
    assert (retry.job_id, retry.attempt) == (1, 2)


def test_failures_until_max_attempts_make_one_dead_result_listing_every_reason(
    make_board: MakeBoard,
) -> None:
    board = make_board(max_attempts=3)
    board.submit("fail")
    outcomes = []
    for worker, reason in [("A", "boom one"), ("B", "boom two"), ("C", "boom three")]:
        (job,) = board.lease(worker)
        outcomes.append(board.fail(worker, 0, job.attempt, reason))
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.DEAD]
    assert board.state(0) is JobState.DEAD
    assert board.finished
    assert board.leasable == 0
    assert board.lease("D") == []
    result = board.result(0)
    assert result is not None
    assert (result.job_id, result.ok, result.value) == (0, False, None)
    assert result.error is not None
    assert "3 attempts" in result.error
    for attempt, reason in [(1, "boom one"), (2, "boom two"), (3, "boom three")]:
        assert f"attempt {attempt}: {reason}" in result.error
    assert board.duplicates == 0


def test_max_attempts_one_makes_the_first_failure_final(make_board: MakeBoard) -> None:
    board = make_board(max_attempts=1)
    leased_once(board)
    assert board.fail("A", 0, 1, "boom") == Outcome.DEAD
    assert board.finished
    assert board.requeues == 0


def test_report_routes_a_failed_result_to_fail(board: JobBoard) -> None:
    leased_once(board)
    assert board.report(Result(0, False, None, "it broke", "A", 1)) == Outcome.RETRY
    assert board.state(0) is JobState.PENDING


def test_a_failure_from_an_expired_attempt_is_stale_after_re_lease(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(max_attempts=2)
    leased_once(board, "A")
    clock.advance(TIMEOUT_S + 1)
    board.expire()
    board.lease("B")
    board.drain_events()
    assert board.fail("A", 0, 1, "stale reason") == Outcome.STALE
    assert board.state(0) is JobState.LEASED
    assert board.holder(0) == "B"
    assert board.attempts(0) == 2
    assert board.duplicates == 0
    assert names(board.drain_events()) == ["stale_failure"]
    # The stale reason is not held against the job: B's failure is the last attempt.
    assert board.fail("B", 0, 2, "real reason") == Outcome.DEAD
    result = board.result(0)
    assert result is not None
    assert result.error is not None
    assert "stale reason" not in result.error
    assert "attempt 2: real reason" in result.error


def test_a_failure_for_a_pending_job_is_stale(board: JobBoard, clock: FakeClock) -> None:
    leased_once(board, "A")
    clock.advance(TIMEOUT_S + 1)
    board.expire()
    assert board.fail("A", 0, 1, "too late") == Outcome.STALE
    assert board.state(0) is JobState.PENDING
    assert board.attempts(0) == 1
    assert board.leasable == 1
    assert board.requeues == 1


def test_a_failure_for_an_older_attempt_of_the_same_worker_is_stale(
    board: JobBoard, clock: FakeClock
) -> None:
    leased_once(board, "A")
    clock.advance(TIMEOUT_S + 1)
    board.expire()
    board.lease("A")  # attempt 2
    assert board.fail("A", 0, 1, "from attempt 1") == Outcome.STALE
    assert board.held_by("A") == {0}
    assert board.attempts(0) == 2


def test_a_failure_from_a_worker_that_does_not_hold_the_job_is_stale(board: JobBoard) -> None:
    leased_once(board, "A")
    assert board.fail("B", 0, 1, "not mine") == Outcome.STALE
    assert board.holder(0) == "A"
    assert board.state(0) is JobState.LEASED


def test_a_failure_for_an_unknown_or_never_leased_job_is_unknown(board: JobBoard) -> None:
    submit_n(board, 1)
    assert board.fail("A", 7, 1, "x") == Outcome.UNKNOWN
    assert board.fail("A", 0, 1, "x") == Outcome.UNKNOWN
    assert board.state(0) is JobState.PENDING
    assert board.leasable == 1


def test_a_failure_after_the_job_is_done_is_a_counted_duplicate(
    board: JobBoard, clock: FakeClock
) -> None:
    leased_once(board, "A")
    clock.advance(TIMEOUT_S + 1)
    board.expire()
    board.lease("B")
    board.complete("B", 0, 2, "ok")
    assert board.fail("A", 0, 1, "late failure") == Outcome.DUPLICATE
    assert board.duplicates == 1
    assert board.result(0) == Result(0, True, "ok", None, "B", 2)


# -- worker_lost -----------------------------------------------------------------------------


def test_a_lost_worker_gives_back_only_its_leases_with_the_attempt_counted(
    board: JobBoard,
) -> None:
    submit_n(board, 4)
    board.lease("A", 2)
    board.lease("B")
    assert board.worker_lost("A", "connection closed") == [0, 1]
    assert board.held_by("A") == frozenset()
    assert board.held_by("B") == {2}
    assert board.state(0) is JobState.PENDING
    assert board.state(1) is JobState.PENDING
    assert board.attempts(0) == 1
    assert board.leasable == 3
    assert board.requeues == 2
    assert sorted(job.attempt for job in board.lease("C", 2)) == [2, 2]


def test_a_worker_lost_on_every_attempt_makes_the_job_dead_with_the_reasons(
    make_board: MakeBoard,
) -> None:
    board = make_board(max_attempts=2)
    board.submit("crash")
    board.lease("A")
    board.worker_lost("A", "connection closed")
    board.lease("B")
    board.worker_lost("B", "heartbeat stopped")
    assert board.state(0) is JobState.DEAD
    assert board.finished
    result = board.result(0)
    assert result is not None
    assert result.error is not None
    assert "attempt 1: connection closed (A)" in result.error
    assert "attempt 2: heartbeat stopped (B)" in result.error


def test_worker_lost_says_whether_the_attempts_count(board: JobBoard) -> None:
    # The history tells a hand-back (bye, rejoin) from a death: checks count attempts by it.
    leased_once(board, "A")
    board.drain_events()
    board.worker_lost("A", "worker left", count_attempt=False)
    board.lease("B")
    board.worker_lost("B", "connection closed")
    lost = [e for e in board.drain_events() if e["ev"] == "worker_lost"]
    assert [fields(e, "worker", "jobs", "reason", "counted") for e in lost] == [
        {"worker": "A", "jobs": [0], "reason": "worker left", "counted": False},
        {"worker": "B", "jobs": [0], "reason": "connection closed", "counted": True},
    ]


def test_job_submitted_carries_the_jobs_own_time_limit(board: JobBoard) -> None:
    board.submit("sleep", (1,), time_limit_s=0.5)
    board.submit("square", (2,))
    limits = [e["time_limit_s"] for e in board.drain_events() if e["ev"] == "job_submitted"]
    assert limits == [0.5, None]


def test_a_graceful_hand_back_does_not_count_the_attempt(make_board: MakeBoard) -> None:
    board = make_board(max_attempts=1)
    leased_once(board, "A")
    assert board.worker_lost("A", "worker left", count_attempt=False) == [0]
    assert board.state(0) is JobState.PENDING
    assert board.attempts(0) == 0
    assert board.leasable == 1
    assert board.unfinished == 1
    (job,) = board.lease("B")
    assert job.attempt == 1
    assert board.complete("B", 0, 1, 9) == Outcome.ACCEPTED


def test_losing_a_worker_without_leases_changes_nothing(board: JobBoard) -> None:
    submit_n(board, 1)
    board.lease("A")
    board.drain_events()
    assert board.worker_lost("B") == []
    assert board.held_by("A") == {0}
    assert board.leasable == 0
    assert board.requeues == 0
    assert [fields(e, "ev", "worker", "jobs") for e in board.drain_events()] == [
        {"ev": "worker_lost", "worker": "B", "jobs": []}
    ]


def test_a_late_result_from_a_lost_worker_is_accepted(board: JobBoard) -> None:
    leased_once(board, "A")
    board.worker_lost("A")
    assert board.complete("A", 0, 1, 9) == Outcome.ACCEPTED
    assert board.finished
    assert board.leasable == 0


def test_a_late_result_after_a_graceful_hand_back_is_accepted(board: JobBoard) -> None:
    # The job was handed out, so its first result wins even with no attempt counted.
    leased_once(board, "A")
    board.worker_lost("A", "worker left", count_attempt=False)
    assert board.complete("A", 0, 1, 9) == Outcome.ACCEPTED
    assert board.result(0) == Result(0, True, 9, None, "A", 1)
    assert board.leasable == 0
    assert board.finished


def test_a_late_failure_after_a_graceful_hand_back_is_stale(board: JobBoard) -> None:
    leased_once(board, "A")
    board.worker_lost("A", "worker left", count_attempt=False)
    assert board.fail("A", 0, 1, "late") == Outcome.STALE
    assert board.state(0) is JobState.PENDING
    assert board.attempts(0) == 0
    assert board.leasable == 1


# -- expire ----------------------------------------------------------------------------------


def test_expire_ends_only_overdue_leases_and_counts_the_attempt(
    board: JobBoard, clock: FakeClock
) -> None:
    submit_n(board, 3)
    board.lease("A")  # deadline T0 + 5
    clock.advance(3.0)
    board.lease("B", 2)  # deadline T0 + 8
    clock.advance(3.0)
    assert board.expire() == [0]
    assert board.state(0) is JobState.PENDING
    assert board.attempts(0) == 1
    assert board.held_by("A") == frozenset()
    assert board.held_by("B") == {1, 2}
    assert board.leasable == 1
    assert board.expire() == []  # nothing is expired twice
    assert board.requeues == 1
    (job,) = board.lease("C")
    assert (job.job_id, job.attempt) == (0, 2)


def test_expire_uses_the_time_it_is_given(board: JobBoard, clock: FakeClock) -> None:
    submit_n(board, 1)
    board.lease("A")
    assert board.expire(T0 + TIMEOUT_S + 1) == [0]
    assert clock.now == T0


def test_a_job_whose_lease_expires_on_every_attempt_becomes_dead(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(max_attempts=2)
    board.submit("hang")
    for _ in range(2):
        board.lease("A")
        clock.advance(TIMEOUT_S + 1)
        board.expire()
    assert board.state(0) is JobState.DEAD
    assert board.finished
    assert board.lease("A") == []
    result = board.result(0)
    assert result is not None
    assert result.error is not None
    assert result.error.count("lease expired (A)") == 2


# -- batches ---------------------------------------------------------------------------------


def test_batch_k_plus_1_opens_only_when_every_job_of_batch_k_is_terminal(
    make_board: MakeBoard,
) -> None:
    board = make_board(batch_size=3)
    jobs = [board.submit("square", (i,)) for i in range(7)]
    assert [job.batch for job in jobs] == [0, 0, 0, 1, 1, 1, 2]
    assert board.leasable == 3
    assert ids(board.lease("A", 10)) == [0, 1, 2]
    assert board.leasable == 0
    board.complete("A", 0, 1, 0)
    board.complete("A", 1, 1, 1)
    assert board.leasable == 0
    assert board.lease("B", 10) == []
    assert board.fail("A", 2, 1, "boom") == Outcome.RETRY  # a straggler holds the batch
    assert board.leasable == 1
    assert ids(board.lease("B", 10)) == [2]
    assert board.leasable == 0
    board.complete("B", 2, 2, 4)
    assert board.leasable == 3
    batch_one = board.lease("A", 10)
    assert ids(batch_one) == [3, 4, 5]
    assert {job.batch for job in batch_one} == {1}
    for job in batch_one:
        board.complete("A", job.job_id, 1, None)
    assert board.leasable == 1  # the last batch holds the remainder: 7 = 3 + 3 + 1
    (last,) = board.lease("A", 10)
    assert (last.job_id, last.batch) == (6, 2)
    board.complete("A", 6, 1, None)
    assert board.finished
    assert board.leasable == 0


def test_a_dead_job_closes_its_batch(make_board: MakeBoard) -> None:
    board = make_board(batch_size=2, max_attempts=1)
    submit_n(board, 3)
    board.lease("A", 2)
    board.complete("A", 0, 1, 0)
    assert board.leasable == 0
    board.worker_lost("A")
    assert board.state(1) is JobState.DEAD
    assert board.leasable == 1
    assert ids(board.lease("B", 5)) == [2]


def test_a_late_result_for_a_requeued_straggler_closes_its_batch(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(batch_size=1)
    submit_n(board, 2)
    board.lease("A")
    clock.advance(TIMEOUT_S + 1)
    board.expire()
    assert board.leasable == 1
    assert board.complete("A", 0, 1, 0) == Outcome.ACCEPTED
    assert board.leasable == 1
    assert ids(board.lease("B", 5)) == [1]


def test_batch_size_one_hands_out_one_job_at_a_time(make_board: MakeBoard) -> None:
    board = make_board(batch_size=1)
    submit_n(board, 3)
    order = []
    for _ in range(3):
        assert board.leasable == 1
        (job,) = board.lease("A", 10)
        assert board.lease("B", 10) == []
        order.append((job.job_id, job.batch))
        board.complete("A", job.job_id, 1, None)
    assert order == [(0, 0), (1, 1), (2, 2)]
    assert board.finished


def test_a_job_submitted_to_the_open_batch_is_leasable_at_once(make_board: MakeBoard) -> None:
    board = make_board(batch_size=3)
    submit_n(board, 1)
    board.lease("A")
    assert board.submit("square", (1,)).batch == 0
    assert board.leasable == 1
    assert ids(board.lease("B")) == [1]


def test_a_job_submitted_beyond_the_open_batch_waits(make_board: MakeBoard) -> None:
    board = make_board(batch_size=2)
    submit_n(board, 2)
    board.lease("A", 2)
    job = board.submit("square", (2,))
    assert job.batch == 1
    assert board.leasable == 0
    assert board.lease("B") == []


def test_jobs_submitted_after_every_batch_closed_open_a_new_batch(
    make_board: MakeBoard,
) -> None:
    board = make_board(batch_size=3)
    submit_n(board, 2)  # batch 0 closes with room to spare
    for job in board.lease("A", 5):
        board.complete("A", job.job_id, 1, None)
    assert board.finished
    board.drain_events()
    late = [board.submit("square", (i,)) for i in range(4)]
    assert [job.batch for job in late] == [1, 1, 1, 2]
    assert board.leasable == 3
    assert [
        fields(e, "ev", "batch") for e in board.drain_events() if e["ev"].startswith("batch")
    ] == [{"ev": "batch_opened", "batch": 1}]
    assert ids(board.lease("A", 5)) == [2, 3, 4]


def test_batch_events_come_in_order(make_board: MakeBoard) -> None:
    board = make_board(batch_size=2)
    submit_n(board, 3)
    for _ in range(2):
        for job in board.lease("A", 5):
            board.complete("A", job.job_id, 1, None)
    batch_events = [
        fields(e, "ev", "batch") for e in board.drain_events() if e["ev"].startswith("batch")
    ]
    assert batch_events == [
        {"ev": "batch_opened", "batch": 0},
        {"ev": "batch_closed", "batch": 0},
        {"ev": "batch_opened", "batch": 1},
        {"ev": "batch_closed", "batch": 1},
    ]


# -- finished / unfinished -------------------------------------------------------------------


def test_finished_counts_done_and_dead_jobs_alike(make_board: MakeBoard) -> None:
    board = make_board(max_attempts=1)
    submit_n(board, 3)
    board.lease("A", 3)
    assert board.unfinished == 3
    board.complete("A", 0, 1, 0)
    assert board.unfinished == 2
    board.fail("A", 1, 1, "boom")
    assert board.unfinished == 1
    assert not board.finished
    board.worker_lost("A")
    assert board.unfinished == 0
    assert board.finished
    assert [board.state(i) for i in range(3)] == [JobState.DONE, JobState.DEAD, JobState.DEAD]
    board.submit("square", (3,))
    assert not board.finished
    assert board.unfinished == 1


# -- events ----------------------------------------------------------------------------------


def test_drain_events_returns_each_event_once_stamped_with_the_clock(
    board: JobBoard, clock: FakeClock
) -> None:
    board.submit("square", (3,))
    clock.advance(1.5)
    board.lease("A")
    events = board.drain_events()
    assert [(e["ev"], e["t"]) for e in events] == [("job_submitted", T0), ("leased", T0 + 1.5)]
    assert board.drain_events() == []


def test_events_of_submit_lease_and_accept(board: JobBoard) -> None:
    board.submit("square", (3,))
    board.lease("W")
    board.complete("W", 0, 1, 9)
    board.complete("V", 0, 1, 9)
    submitted, leased, accepted, dropped = board.drain_events()
    assert fields(submitted, "ev", "job", "task", "args", "batch") == {
        "ev": "job_submitted",
        "job": 0,
        "task": "square",
        "args": [3],
        "batch": None,
    }
    assert fields(leased, "ev", "job", "attempt", "worker", "batch") == {
        "ev": "leased",
        "job": 0,
        "attempt": 1,
        "worker": "W",
        "batch": None,
    }
    assert isinstance(leased["lease"], int)
    assert fields(accepted, "ev", "job", "attempt", "worker", "ok", "value") == {
        "ev": "result_accepted",
        "job": 0,
        "attempt": 1,
        "worker": "W",
        "ok": True,
        "value": 9,
    }
    assert fields(dropped, "ev", "job", "worker") == {
        "ev": "duplicate_dropped",
        "job": 0,
        "worker": "V",
    }


def test_events_of_a_failure_a_retry_and_death(make_board: MakeBoard) -> None:
    board = make_board(max_attempts=2)
    leased_once(board, "A")
    board.drain_events()
    board.fail("A", 0, 1, "boom")
    assert [fields(e, "ev", "job") for e in board.drain_events()] == [
        {"ev": "attempt_failed", "job": 0},
        {"ev": "requeued", "job": 0},
    ]
    board.lease("B")
    board.drain_events()
    board.fail("B", 0, 2, "boom again")
    failed, dead = board.drain_events()
    assert fields(failed, "ev", "job", "attempt", "reason") == {
        "ev": "attempt_failed",
        "job": 0,
        "attempt": 2,
        "reason": "boom again",
    }
    assert fields(dead, "ev", "job", "attempts") == {"ev": "dead", "job": 0, "attempts": 2}
    result = board.result(0)
    assert result is not None
    assert dead["error"] == result.error


def test_events_of_an_expired_lease(board: JobBoard, clock: FakeClock) -> None:
    leased_once(board, "A")
    (leased,) = only(board.drain_events(), "leased")
    clock.advance(TIMEOUT_S + 1)
    board.expire()
    expired, failed, requeued = board.drain_events()
    assert fields(expired, "ev", "job", "attempt", "worker") == {
        "ev": "lease_expired",
        "job": 0,
        "attempt": 1,
        "worker": "A",
    }
    assert expired["lease"] == leased["lease"]
    assert (failed["ev"], failed["job"], failed["attempt"]) == ("attempt_failed", 0, 1)
    assert (requeued["ev"], requeued["job"]) == ("requeued", 0)


def test_events_of_a_lost_worker(board: JobBoard) -> None:
    submit_n(board, 2)
    board.lease("A", 2)
    board.drain_events()
    board.worker_lost("A", "connection closed")
    events = board.drain_events()
    assert fields(events[0], "ev", "worker", "jobs", "reason") == {
        "ev": "worker_lost",
        "worker": "A",
        "jobs": [0, 1],
        "reason": "connection closed",
    }
    assert sorted((e["ev"], e["job"]) for e in events[1:]) == [
        ("attempt_failed", 0),
        ("attempt_failed", 1),
        ("requeued", 0),
        ("requeued", 1),
    ]


def test_a_graceful_hand_back_emits_no_attempt_failed(board: JobBoard) -> None:
    leased_once(board, "A")
    board.drain_events()
    board.worker_lost("A", "worker left", count_attempt=False)
    assert names(board.drain_events()) == ["worker_lost", "requeued"]


def test_events_of_stale_and_unexpected_reports(board: JobBoard, clock: FakeClock) -> None:
    board.submit("square", (1,))
    board.submit("square", (2,))
    board.lease("A")
    clock.advance(TIMEOUT_S + 1)
    board.expire()
    board.drain_events()
    board.fail("A", 0, 1, "late")
    board.complete("A", 1, 1, 4)  # job 1 was never leased
    board.fail("A", 9, 1, "who?")
    stale, unexpected_result, unexpected_failure = board.drain_events()
    assert fields(stale, "ev", "job", "attempt", "worker", "reason") == {
        "ev": "stale_failure",
        "job": 0,
        "attempt": 1,
        "worker": "A",
        "reason": "late",
    }
    assert fields(unexpected_result, "ev", "job", "worker") == {
        "ev": "unexpected_report",
        "job": 1,
        "worker": "A",
    }
    assert fields(unexpected_failure, "ev", "job") == {"ev": "unexpected_report", "job": 9}


def test_batch_mode_events_carry_the_batch(make_board: MakeBoard) -> None:
    board = make_board(batch_size=2)
    submit_n(board, 3)
    events = board.drain_events()
    assert [(e["ev"], e.get("job"), e["batch"]) for e in events] == [
        ("job_submitted", 0, 0),
        ("batch_opened", None, 0),
        ("job_submitted", 1, 0),
        ("job_submitted", 2, 1),
    ]
    board.lease("A", 2)
    assert [(e["job"], e["batch"]) for e in board.drain_events()] == [(0, 0), (1, 0)]


# -- terminal results and a board that records no events ------------------------------------


def test_drain_results_hands_over_each_terminal_result_once_in_order(
    make_board: MakeBoard,
) -> None:
    board = make_board(max_attempts=1)
    submit_n(board, 3)
    board.lease("A", 3)
    assert board.drain_results() == []
    board.complete("A", 2, 1, 4)
    board.fail("A", 0, 1, "boom")
    board.complete("B", 2, 1, "duplicate")
    board.complete("A", 1, 1, 1)
    drained = board.drain_results()
    assert [(r.job_id, r.ok) for r in drained] == [(2, True), (0, False), (1, True)]
    assert drained == [board.result(2), board.result(0), board.result(1)]
    assert board.drain_results() == []


def test_a_board_that_records_no_events_behaves_the_same(clock: FakeClock) -> None:
    board = JobBoard(
        clock=clock, lease_timeout_s=TIMEOUT_S, max_attempts=2, batch_size=2, record_events=False
    )
    submit_n(board, 3)
    assert board.leasable == 2
    board.lease("A", 2)
    assert board.complete("A", 0, 1, 0) == Outcome.ACCEPTED
    assert board.complete("B", 0, 1, 0) == Outcome.DUPLICATE
    assert board.fail("A", 1, 1, "boom") == Outcome.RETRY
    board.lease("B")
    clock.advance(TIMEOUT_S + 1)
    assert board.expire() == [1]
    assert board.state(1) is JobState.DEAD
    assert ids(board.lease("C", 5)) == [2]  # batch 1 opened
    assert board.worker_lost("C") == [2]
    assert board.complete("C", 2, 1, 4) == Outcome.ACCEPTED
    assert board.finished
    assert board.duplicates == 1
    assert [r.job_id for r in board.drain_results()] == [0, 1, 2]
    assert board.drain_events() == []
