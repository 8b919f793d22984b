"""A Hypothesis state machine that drives ``JobBoard`` against a small model.

Three workers lease, complete, fail, vanish and report late while a fake clock moves and
leases expire. After every step the board must agree with the model, and the drained
events must read as a correct history; at the end every job has exactly one terminal
result. One machine streams, the other dispatches in small batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from distq.board import JobBoard, JobState, Outcome
from distq.jobs import Result

WORKERS = ("w0", "w1", "w2")
# Deadlines fall on odd quarter seconds and the clock moves in half seconds, so no test
# depends on whether a lease is overdue at exactly its deadline.
LEASE_TIMEOUT_S = 2.75
CLOCK_STEPS_S = st.sampled_from([0.5, 1.5, 3.0, 6.0])

workers = st.sampled_from(WORKERS)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ModelJob:
    batch: int | None
    state: JobState = JobState.PENDING
    attempts: int = 0
    holder: str | None = None
    deadline: float = 0.0
    reasons: list[str] = field(default_factory=list)  # why each counted attempt failed
    expected: Result | None = None  # the accepted result, when the model knows it exactly
    recorded: Result | None = None  # the board's terminal result, first seen


@dataclass(frozen=True)
class Lease:
    worker: str
    job_id: int
    attempt: int


class BoardMachine(RuleBasedStateMachine):
    """Streaming dispatch; ``BatchBoardMachine`` below adds batches."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.board: JobBoard | None = None
        self.max_attempts = 0
        self.batch_size: int | None = None
        self.jobs: dict[int, ModelJob] = {}
        self.batches: list[list[int]] = []
        # Every lease ever handed out: its worker may report on it at any later time.
        self.reportable: list[Lease] = []
        self.ever_leased: set[int] = set()
        self.duplicates = 0
        self.reports = 0
        self.open_batches: set[int] = set()
        self.closed_batches: set[int] = set()
        self.lease_ids: set[int] = set()
        self.terminal_events: set[int] = set()
        self.drained_results: set[int] = set()

    @initialize(max_attempts=st.integers(1, 3))
    def make_board(self, max_attempts: int) -> None:
        self.start(max_attempts, None)

    def start(self, max_attempts: int, batch_size: int | None) -> None:
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.board = JobBoard(
            clock=self.clock,
            lease_timeout_s=LEASE_TIMEOUT_S,
            max_attempts=max_attempts,
            batch_size=batch_size,
        )

    # -- the model -------------------------------------------------------------------------

    @property
    def b(self) -> JobBoard:
        assert self.board is not None
        return self.board

    def open_batch(self) -> int | None:
        """The first batch with a job that is not terminal; None when all are terminal."""
        for index, members in enumerate(self.batches):
            if any(not self.terminal(self.jobs[j]) for j in members):
                return index
        return None

    @staticmethod
    def terminal(job: ModelJob) -> bool:
        return job.state in (JobState.DONE, JobState.DEAD)

    def leasable(self) -> set[int]:
        open_batch = self.open_batch()
        return {
            job_id
            for job_id, job in self.jobs.items()
            if job.state is JobState.PENDING and (job.batch is None or job.batch == open_batch)
        }

    def leased(self) -> list[int]:
        return sorted(j for j, job in self.jobs.items() if job.state is JobState.LEASED)

    def is_current(self, lease: Lease) -> bool:
        job = self.jobs[lease.job_id]
        return (
            job.state is JobState.LEASED
            and job.holder == lease.worker
            and job.attempts == lease.attempt
        )

    def late_leases(self) -> list[Lease]:
        return [lease for lease in self.reportable if not self.is_current(lease)]

    def end_attempt(self, job: ModelJob, reason: str) -> Outcome:
        job.reasons.append(reason)
        job.holder = None
        if job.attempts >= self.max_attempts:
            job.state = JobState.DEAD
            return Outcome.DEAD
        job.state = JobState.PENDING
        return Outcome.RETRY

    def next_value(self, lease: Lease) -> tuple[int, str, int, int]:
        self.reports += 1
        return (lease.job_id, lease.worker, lease.attempt, self.reports)

    def expect_complete(self, lease: Lease) -> None:
        """Report success for ``lease``; the first result for a job wins."""
        job = self.jobs[lease.job_id]
        value = self.next_value(lease)
        outcome = self.b.complete(lease.worker, lease.job_id, lease.attempt, value)
        if self.terminal(job):
            assert outcome is Outcome.DUPLICATE
            self.duplicates += 1
            return
        assert outcome is Outcome.ACCEPTED
        job.state = JobState.DONE
        job.holder = None
        job.expected = Result(lease.job_id, True, value, None, lease.worker, lease.attempt)

    # -- rules -----------------------------------------------------------------------------

    @rule(count=st.integers(1, 3))
    def submit(self, count: int) -> None:
        for _ in range(count):
            job_id = len(self.jobs)
            batch: int | None = None
            if self.batch_size is not None:
                last = self.batches[-1] if self.batches else None
                if (
                    last is None
                    or len(last) >= self.batch_size
                    or all(self.terminal(self.jobs[j]) for j in last)
                ):
                    self.batches.append([])
                batch = len(self.batches) - 1
                self.batches[batch].append(job_id)
            job = self.b.submit("square", (job_id,))
            assert (job.job_id, job.batch) == (job_id, batch)
            self.jobs[job_id] = ModelJob(batch)

    @rule(worker=workers, max_n=st.integers(1, 4))
    def lease(self, worker: str, max_n: int) -> None:
        leasable = self.leasable()
        open_batch = self.open_batch()
        granted = self.b.lease(worker, max_n)
        granted_ids = [job.job_id for job in granted]
        assert len(set(granted_ids)) == len(granted_ids)
        assert set(granted_ids) <= leasable
        assert len(granted) == min(max_n, len(leasable))
        for job in granted:
            model = self.jobs[job.job_id]
            if self.batch_size is not None:
                assert job.batch == open_batch
            assert job.attempt == model.attempts + 1
            assert job.args == (job.job_id,)
            model.state = JobState.LEASED
            model.attempts = job.attempt
            model.holder = worker
            model.deadline = self.clock.now + LEASE_TIMEOUT_S
            self.reportable.append(Lease(worker, job.job_id, job.attempt))
            self.ever_leased.add(job.job_id)

    @precondition(lambda self: self.leased())
    @rule(data=st.data())
    def complete_current(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.leased()), label="job")
        job = self.jobs[job_id]
        assert job.holder is not None
        self.expect_complete(Lease(job.holder, job_id, job.attempts))

    @precondition(lambda self: self.late_leases())
    @rule(data=st.data(), ok=st.booleans())
    def report_late(self, data: st.DataObject, ok: bool) -> None:
        """A report from a worker whose lease expired, was lost or was superseded."""
        late = self.late_leases()
        # Most late leases belong to finished jobs; give the unfinished ones a fair chance.
        unfinished = [lease for lease in late if not self.terminal(self.jobs[lease.job_id])]
        prefer_unfinished = data.draw(st.booleans(), label="prefer an unfinished job")
        if unfinished and prefer_unfinished:
            late = unfinished
        lease = data.draw(st.sampled_from(late), label="lease")
        if ok:
            self.expect_complete(lease)
            return
        job = self.jobs[lease.job_id]
        outcome = self.b.fail(lease.worker, lease.job_id, lease.attempt, "stale")
        if self.terminal(job):
            assert outcome is Outcome.DUPLICATE
            self.duplicates += 1
        else:
            assert outcome is Outcome.STALE

    @rule(data=st.data(), worker=workers, ok=st.booleans())
    def stray_report(self, data: st.DataObject, worker: str, ok: bool) -> None:
        """A report for a finished job (a duplicate) or for one never handed out (unknown)."""
        finished = sorted(j for j, job in self.jobs.items() if self.terminal(job))
        never_leased = sorted(set(self.jobs) - self.ever_leased)
        job_id = data.draw(
            st.sampled_from([*finished, *never_leased, len(self.jobs) + 7]), label="job"
        )
        attempt = data.draw(st.integers(1, self.max_attempts), label="attempt")
        before = self.b.leasable
        if ok:
            outcome = self.b.complete(worker, job_id, attempt, "stray")
        else:
            outcome = self.b.fail(worker, job_id, attempt, "stray")
        if job_id in finished:
            assert outcome is Outcome.DUPLICATE
            self.duplicates += 1
        else:
            assert outcome is Outcome.UNKNOWN
            assert self.b.leasable == before

    @precondition(lambda self: self.leased())
    @rule(data=st.data())
    def fail_current(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.leased()), label="job")
        job = self.jobs[job_id]
        assert job.holder is not None
        self.reports += 1
        reason = f"boom-{self.reports}"
        outcome = self.b.fail(job.holder, job_id, job.attempts, reason)
        assert outcome is self.end_attempt(job, reason)

    @precondition(lambda self: self.leased())
    @rule(data=st.data())
    def fail_by_a_stranger(self, data: st.DataObject) -> None:
        """A failure for the current attempt from a worker that does not hold the job."""
        job_id = data.draw(st.sampled_from(self.leased()), label="job")
        job = self.jobs[job_id]
        stranger = data.draw(st.sampled_from([w for w in WORKERS if w != job.holder]))
        assert self.b.fail(stranger, job_id, job.attempts, "not mine") is Outcome.STALE

    @rule(worker=workers, count_attempt=st.booleans())
    def worker_lost(self, worker: str, count_attempt: bool) -> None:
        held = sorted(j for j, job in self.jobs.items() if job.holder == worker)
        self.reports += 1
        reason = f"lost-{self.reports}"
        assert self.b.worker_lost(worker, reason, count_attempt=count_attempt) == held
        for job_id in held:
            job = self.jobs[job_id]
            if count_attempt:
                self.end_attempt(job, reason)
            else:
                job.attempts -= 1
                job.holder = None
                job.state = JobState.PENDING

    @rule(worker=workers)
    def heartbeat(self, worker: str) -> None:
        held = [job for job in self.jobs.values() if job.holder == worker]
        assert self.b.heartbeat(worker) == len(held)
        for job in held:
            job.deadline = self.clock.now + LEASE_TIMEOUT_S

    @rule(seconds=CLOCK_STEPS_S)
    def advance_clock(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(pass_now=st.booleans())
    def expire(self, pass_now: bool) -> None:
        overdue = [
            j
            for j, job in self.jobs.items()
            if job.state is JobState.LEASED and job.deadline < self.clock.now
        ]
        expired = self.b.expire(self.clock.now) if pass_now else self.b.expire()
        assert sorted(expired) == overdue
        for job_id in overdue:
            self.end_attempt(self.jobs[job_id], "lease expired")

    @precondition(lambda self: self.leased())
    @rule(data=st.data(), seconds=st.sampled_from([1.5, 3.0]))
    def a_worker_hangs(self, data: st.DataObject, seconds: float) -> None:
        """The master's tick after a while: one holder stopped heartbeating, the rest did not."""
        holders = sorted({self.jobs[j].holder or "" for j in self.leased()})
        hung = data.draw(st.sampled_from(holders), label="hung")
        on_time = [worker for worker in WORKERS if worker != hung]
        kept = {worker: self.b.held_by(worker) for worker in on_time}
        self.advance_clock(seconds)
        for worker in on_time:
            self.heartbeat(worker)
        self.expire(pass_now=False)
        for worker in on_time:
            assert self.b.held_by(worker) == kept[worker], "a heartbeating worker lost a lease"

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def board_agrees_with_the_model(self) -> None:
        if self.board is None:
            return
        board = self.board
        assert len(board) == len(self.jobs)
        for job_id, job in self.jobs.items():
            assert board.state(job_id) is job.state, job_id
            assert board.attempts(job_id) == job.attempts, job_id
            assert board.holder(job_id) == job.holder, job_id
            if job.state is JobState.LEASED:
                assert job_id in board.held_by(job.holder or "")
        for worker in WORKERS:
            assert board.held_by(worker) == {
                j for j, job in self.jobs.items() if job.holder == worker
            }
        unfinished = sum(not self.terminal(job) for job in self.jobs.values())
        assert board.unfinished == unfinished
        assert board.finished == (unfinished == 0)
        assert board.leasable == len(self.leasable())
        assert board.has_leasable() == bool(self.leasable())
        assert board.duplicates == self.duplicates

    @invariant()
    def a_terminal_result_is_set_once_and_never_replaced(self) -> None:
        if self.board is None:
            return
        for job_id, job in self.jobs.items():
            result = self.b.result(job_id)
            if not self.terminal(job):
                assert result is None, job_id
                continue
            assert result is not None, job_id
            if job.recorded is None:
                job.recorded = result
                if job.expected is not None:
                    assert result == job.expected
                else:
                    self.check_dead_result(job_id, job, result)
            assert result == job.recorded, f"job {job_id}: result replaced"

    def check_dead_result(self, job_id: int, job: ModelJob, result: Result) -> None:
        assert job.state is JobState.DEAD
        assert (result.job_id, result.ok, result.value) == (job_id, False, None)
        assert result.error is not None
        assert len(job.reasons) == job.attempts == self.max_attempts
        for attempt, reason in enumerate(job.reasons, start=1):
            assert f"attempt {attempt}: {reason}" in result.error, (attempt, result.error)

    @invariant()
    def the_history_reads_correctly(self) -> None:
        """Replay the drained events the way the history checkers will read them."""
        if self.board is None:
            return
        for event in self.b.drain_events():
            ev = event["ev"]
            assert event["t"] == self.clock.now
            if ev == "batch_opened":
                assert event["batch"] not in self.open_batches | self.closed_batches
                self.open_batches.add(event["batch"])
            elif ev == "batch_closed":
                self.open_batches.remove(event["batch"])
                self.closed_batches.add(event["batch"])
            elif ev in ("result_accepted", "dead"):
                assert event["job"] not in self.terminal_events, f"job {event['job']} ended twice"
                self.terminal_events.add(event["job"])
            elif ev == "leased":
                assert event["lease"] not in self.lease_ids, "a lease id was reused"
                self.lease_ids.add(event["lease"])
                if self.batch_size is not None:
                    # the batch barrier: only the open batch, every earlier batch closed
                    assert self.open_batches == {event["batch"]}
                    assert set(range(event["batch"])) <= self.closed_batches

    @invariant()
    def each_terminal_result_is_handed_over_once(self) -> None:
        if self.board is None:
            return
        for result in self.b.drain_results():
            assert result.job_id not in self.drained_results, f"job {result.job_id} twice"
            self.drained_results.add(result.job_id)
            assert result == self.b.result(result.job_id)
        assert self.drained_results == {j for j, job in self.jobs.items() if self.terminal(job)}

    # -- the end ---------------------------------------------------------------------------

    def teardown(self) -> None:
        """Drive every job to its end: each one gets exactly one terminal result."""
        if self.board is None:
            return
        board = self.board
        for _ in range(4 * (len(self.jobs) + 1) * self.max_attempts):
            if board.finished:
                break
            for job_id in self.leased():
                holder = self.jobs[job_id].holder
                assert holder is not None
                self.expect_complete(Lease(holder, job_id, self.jobs[job_id].attempts))
            for worker in WORKERS:
                for granted in board.lease(worker, 4):
                    model = self.jobs[granted.job_id]
                    model.state = JobState.LEASED
                    model.holder = worker
                    model.attempts = granted.attempt
            self.board_agrees_with_the_model()
            self.the_history_reads_correctly()
        assert board.finished, f"{board.unfinished} jobs never finished"
        assert board.leasable == 0
        self.a_terminal_result_is_set_once_and_never_replaced()
        self.the_history_reads_correctly()
        self.each_terminal_result_is_handed_over_once()
        assert self.terminal_events == set(self.jobs)
        assert self.drained_results == set(self.jobs)
        for job_id, job in self.jobs.items():
            result = board.result(job_id)
            assert result is not None
            assert result.job_id == job_id
            assert board.state(job_id) is job.state
            if job.state is JobState.DONE:
                assert result.ok
                assert result.value[0] == job_id
            else:
                assert not result.ok
        if self.batch_size is not None and self.batches:
            assert self.closed_batches == set(range(len(self.batches)))


class BatchBoardMachine(BoardMachine):
    """The same rules with batches of 1 to 4 jobs."""

    @initialize(max_attempts=st.integers(1, 3), batch_size=st.integers(1, 4))
    def make_board(self, max_attempts: int, batch_size: int) -> None:
        self.start(max_attempts, batch_size)


SETTINGS = settings(max_examples=200, stateful_step_count=40, deadline=None)

TestStreamingBoard = BoardMachine.TestCase
TestStreamingBoard.settings = SETTINGS
TestBatchBoard = BatchBoardMachine.TestCase
TestBatchBoard.settings = SETTINGS
