"""JobBoard: the pure state machine at the centre of distq.

pending -> leased -> done | dead. A lease records job, worker, attempt and deadline in the
same step as the hand-out; the first result for a job wins and every later one is recorded
as a dropped duplicate. No sockets, no threads, no wall clock: time comes from the injected
``clock`` and every transition is appended to an outbox of events the shell drains (unless
the shell records no history: ``record_events=False`` builds no events at all). Terminal
results are handed over separately, in the order they happened (``drain_results``). With
``track_changes``, the ids of jobs whose state changed are kept for a journal
(``drain_changes``, ``record``), and ``restore`` rebuilds a board from its records.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distq.jobs import Job, Result, WireJob

__all__ = ["Change", "JobBoard", "JobRecord", "JobState", "Outcome"]

Event = dict[str, Any]


class JobState(enum.Enum):
    PENDING = "pending"  # waiting for a lease (possibly in a batch not yet open)
    LEASED = "leased"
    DONE = "done"
    DEAD = "dead"


class Outcome(enum.Enum):
    """What the board did with a reported result or failure."""

    ACCEPTED = "accepted"  # became the job's terminal result
    DUPLICATE = "duplicate"  # the job already had its terminal result; dropped
    RETRY = "retry"  # a failed attempt; the job is pending again
    DEAD = "dead"  # a failed attempt that exhausted max_attempts
    STALE = "stale"  # a failure for an attempt that had already ended; ignored
    UNKNOWN = "unknown"  # no such job


# Looking up an enum member on its class costs ~0.35 us on CPython 3.11, as much as the
# rest of a lease; the transitions use these module-level names instead.
_PENDING, _LEASED, _DONE, _DEAD = JobState.PENDING, JobState.LEASED, JobState.DONE, JobState.DEAD
_ACCEPTED, _DUPLICATE, _RETRY = Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.RETRY
_DEAD_OUTCOME, _STALE, _UNKNOWN = Outcome.DEAD, Outcome.STALE, Outcome.UNKNOWN


@dataclass(slots=True)
class _Entry:
    job: Job
    state: JobState = _PENDING
    attempts: int = 0  # leases counted against the job so far
    handed_out: bool = False  # ever leased: only then can a worker have a result
    holder: str | None = None
    lease_id: int = 0
    deadline: float = 0.0
    reasons: list[str] = field(default_factory=list)
    result: Result | None = None


#: One job's changed state, as ``drain_changes`` hands it to a journal: job id, state
#: value, attempts, handed out, holder, lease id, reasons, and the terminal result as
#: (ok, value, error, worker, attempt) or None.
Change = tuple[
    int,
    str,
    int,
    bool,
    str | None,
    int,
    tuple[str, ...],
    tuple[bool, Any, str | None, str, int] | None,
]


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job's whole state, as a journal keeps it and ``restore`` takes it back."""

    job: Job
    state: JobState
    attempts: int
    handed_out: bool
    holder: str | None
    lease_id: int
    reasons: tuple[str, ...]
    result: Result | None

    @classmethod
    def from_change(cls, job: Job, change: Change) -> JobRecord:
        _, state, attempts, handed_out, holder, lease_id, reasons, result = change
        return cls(
            job,
            JobState(state),
            attempts,
            handed_out,
            holder,
            lease_id,
            reasons,
            None if result is None else Result(job.job_id, *result),
        )


class JobBoard:
    """Leases, deadlines, attempts, batches and dedup for one set of jobs."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        lease_timeout_s: float = 10.0,
        max_attempts: int = 3,
        batch_size: int | None = None,
        record_events: bool = True,
        track_changes: bool = False,
    ) -> None:
        if not lease_timeout_s > 0:  # also refuses NaN, which would never expire
            raise ValueError(f"lease_timeout_s must be > 0, got {lease_timeout_s}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if batch_size is not None and not batch_size >= 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._clock = clock
        self.lease_timeout_s = lease_timeout_s
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self._entries: dict[int, _Entry] = {}
        self._pending: deque[int] = deque()  # may hold ids no longer pending: skipped lazily
        self._held: dict[str, set[int]] = {}  # worker -> job ids it leases
        self._batches: list[list[int]] = []
        self._batch_unfinished: list[int] = []
        self._open_batch = 0  # index of the batch whose jobs may be leased
        self._leasable = 0  # jobs that are pending and may be leased now
        self._next_job_id = 0
        self._next_lease_id = 0
        self._unfinished = 0
        self._record = record_events
        self._outbox: list[Event] = []
        self._new_results: list[Result] = []
        self._changed: set[int] | None = set() if track_changes else None
        self._submitted: list[Job] = []  # with track_changes: jobs new since the last drain
        self.duplicates = 0
        self.requeues = 0

    # -- reading -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True when every submitted job has its terminal result."""
        return self._unfinished == 0

    @property
    def unfinished(self) -> int:
        return self._unfinished

    def __len__(self) -> int:
        return len(self._entries)

    def state(self, job_id: int) -> JobState:
        return self._entries[job_id].state

    def attempts(self, job_id: int) -> int:
        return self._entries[job_id].attempts

    def holder(self, job_id: int) -> str | None:
        return self._entries[job_id].holder

    def result(self, job_id: int) -> Result | None:
        return self._entries[job_id].result

    def held_by(self, worker: str) -> frozenset[int]:
        return frozenset(self._held.get(worker, ()))

    def holders(self) -> list[str]:
        """The workers holding at least one lease."""
        return sorted(worker for worker, held in self._held.items() if held)

    def has_leasable(self) -> bool:
        return self._leasable > 0

    @property
    def leasable(self) -> int:
        """How many jobs a lease could hand out right now."""
        return self._leasable

    def drain_events(self) -> list[Event]:
        """Return and forget the events recorded since the last drain."""
        events, self._outbox = self._outbox, []
        return events

    def drain_results(self) -> list[Result]:
        """Return and forget the terminal results (accepted or dead) since the last drain."""
        results, self._new_results = self._new_results, []
        return results

    def drain_submitted(self) -> list[Job]:
        """With ``track_changes``: the jobs submitted since the last drain, in order."""
        jobs, self._submitted = self._submitted, []
        return jobs

    def drain_changes(self) -> list[Change]:
        """With ``track_changes``: each job whose record changed since the last drain, as
        a plain ``Change`` tuple (they pickle many times faster than records)."""
        if not self._changed:
            return []
        changed, self._changed = self._changed, set()
        entries = self._entries
        out: list[Change] = []
        for job_id in changed:
            entry = entries[job_id]
            result = entry.result
            out.append(
                (
                    job_id,
                    entry.state.value,
                    entry.attempts,
                    entry.handed_out,
                    entry.holder,
                    entry.lease_id,
                    tuple(entry.reasons) if entry.reasons else (),
                    None
                    if result is None
                    else (result.ok, result.value, result.error, result.worker, result.attempt),
                )
            )
        return out

    def job_ids(self) -> list[int]:
        """Every job's id, in submission order."""
        return list(self._entries)

    def record(self, job_id: int) -> JobRecord:
        """The job's whole state (what a journal writes)."""
        entry = self._entries[job_id]
        return JobRecord(
            entry.job,
            entry.state,
            entry.attempts,
            entry.handed_out,
            entry.holder,
            entry.lease_id,
            tuple(entry.reasons),
            entry.result,
        )

    def restore(self, records: list[JobRecord], *, last_lease_id: int) -> None:
        """Load the records a journal kept into this empty board, emitting no event.

        Leased jobs stay leased by their holders (deadlines from now): the shell decides
        what becomes of them, e.g. ``worker_lost(..., count_attempt=False)``.
        """
        if self._entries:
            raise ValueError("restore needs an empty board")
        deadline = self._clock() + self.lease_timeout_s
        for rec in sorted(records, key=lambda r: r.job.job_id):
            job = rec.job
            entry = _Entry(job, rec.state, rec.attempts, rec.handed_out, rec.holder)
            entry.lease_id, entry.reasons, entry.result = (
                rec.lease_id,
                list(rec.reasons),
                rec.result,
            )
            entry.deadline = deadline
            self._entries[job.job_id] = entry
            self._next_job_id = max(self._next_job_id, job.job_id + 1)
            terminal = rec.state is _DONE or rec.state is _DEAD
            if job.batch is not None:
                while len(self._batches) <= job.batch:
                    self._batches.append([])
                    self._batch_unfinished.append(0)
                self._batches[job.batch].append(job.job_id)
                self._batch_unfinished[job.batch] += 0 if terminal else 1
            if not terminal:
                self._unfinished += 1
            if rec.state is _LEASED and rec.holder is not None:
                self._held.setdefault(rec.holder, set()).add(job.job_id)
        self._next_lease_id = last_lease_id
        self._open_batch = next(
            (b for b, left in enumerate(self._batch_unfinished) if left), len(self._batches)
        )
        for job_id, entry in self._entries.items():
            batch = entry.job.batch
            if entry.state is _PENDING and (batch is None or batch == self._open_batch):
                self._pending.append(job_id)
                self._leasable += 1

    def closed_batches(self) -> int:
        """How many batches are closed (batch k is closed for every k below this)."""
        return self._open_batch

    def batch_members(self, batch: int) -> list[int]:
        return list(self._batches[batch]) if batch < len(self._batches) else []

    # -- transitions -------------------------------------------------------------------------

    def submit(
        self,
        task: str,
        args: tuple[Any, ...] = (),
        *,
        job_id: int | None = None,
        time_limit_s: float | None = None,
    ) -> Job:
        if job_id is None:
            job_id = self._next_job_id
        if job_id in self._entries:
            raise ValueError(f"job id {job_id} was already submitted")
        self._next_job_id = max(self._next_job_id, job_id + 1)
        batch: int | None = None
        if self.batch_size is not None:
            last = len(self._batches) - 1
            if last < self._open_batch or len(self._batches[last]) >= self.batch_size:
                self._batches.append([])
                self._batch_unfinished.append(0)
            batch = len(self._batches) - 1
            self._batches[batch].append(job_id)
            self._batch_unfinished[batch] += 1
        job = Job(job_id, task, tuple(args), 0, time_limit_s, batch)
        self._entries[job_id] = _Entry(job)
        self._unfinished += 1
        if self._changed is not None:
            self._changed.add(job_id)
            self._submitted.append(job)
        if self._record:
            self._emit(
                "job_submitted",
                job=job_id,
                task=task,
                args=list(job.args),
                batch=batch,
                time_limit_s=time_limit_s,
            )
        if batch is not None and batch == self._open_batch and len(self._batches[batch]) == 1:
            self._emit("batch_opened", batch=batch)
        if batch is None or batch == self._open_batch:
            self._pending.append(job_id)
            self._leasable += 1
        return job

    def reserve_ids(self, count: int) -> int:
        """Set aside ``count`` fresh job ids for a client to assign; returns the first.

        No job is created: the client submits them later with ``job_id`` (pipelined
        submission), and an id that is never submitted leaves a gap.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        first = self._next_job_id
        self._next_job_id += count
        return first

    def lease(self, worker: str, max_n: int = 1) -> list[Job]:
        """Hand out up to ``max_n`` pending jobs to ``worker``, each under a fresh lease."""
        return [Job(*wire) for wire in self.lease_wire(worker, max_n)]

    def lease_wire(self, worker: str, max_n: int = 1) -> list[WireJob]:
        """``lease``, each job as the plain tuple the master sends (``Job(*wire)`` is the Job).

        Building a frozen Job only to take it apart again would cost the master more than
        the rest of the lease.
        """
        now = self._clock()
        granted: list[WireJob] = []
        held = self._held.setdefault(worker, set())
        while self._pending and len(granted) < max_n:
            job_id = self._pending.popleft()
            entry = self._entries[job_id]
            if entry.state is not _PENDING:
                continue
            entry.state = _LEASED
            entry.handed_out = True
            self._leasable -= 1
            entry.attempts += 1
            entry.holder = worker
            self._next_lease_id += 1
            entry.lease_id = self._next_lease_id
            entry.deadline = now + self.lease_timeout_s
            held.add(job_id)
            if self._changed is not None:
                self._changed.add(job_id)
            job = entry.job
            granted.append(
                (job.job_id, job.task, job.args, entry.attempts, job.time_limit_s, job.batch)
            )
            if self._record:
                self._emit(
                    "leased",
                    job=job_id,
                    attempt=entry.attempts,
                    lease=entry.lease_id,
                    worker=worker,
                    batch=job.batch,
                )
        return granted

    def heartbeat(self, worker: str) -> int:
        """Push back the deadline of every lease ``worker`` holds; returns how many."""
        deadline = self._clock() + self.lease_timeout_s
        held = self._held.get(worker, ())
        for job_id in held:
            self._entries[job_id].deadline = deadline
        return len(held)

    def complete(self, worker: str, job_id: int, attempt: int, value: Any) -> Outcome:
        return self._finish(Result(job_id, True, value, None, worker, attempt))

    def fail(self, worker: str, job_id: int, attempt: int, reason: str) -> Outcome:
        """Report a failed attempt (the task raised, crashed or ran out of time)."""
        entry = self._entries.get(job_id)
        if entry is None or not entry.handed_out:
            self._emit("unexpected_report", job=job_id, attempt=attempt, worker=worker)
            return _UNKNOWN
        if entry.result is not None:
            self.duplicates += 1
            self._emit("duplicate_dropped", job=job_id, attempt=attempt, worker=worker, ok=False)
            return _DUPLICATE
        if entry.state is not _LEASED or entry.holder != worker or (entry.attempts != attempt):
            self._emit("stale_failure", job=job_id, attempt=attempt, worker=worker, reason=reason)
            return _STALE
        return self._end_attempt(entry, reason)

    def report(self, result: Result) -> Outcome:
        """Apply one worker report, success or failure."""
        if result.ok:
            return self._finish(result)
        return self.fail(result.worker, result.job_id, result.attempt, result.error or "error")

    def worker_lost(
        self, worker: str, reason: str = "worker lost", *, count_attempt: bool = True
    ) -> list[int]:
        """Take back every lease ``worker`` holds. Returns the job ids taken back.

        ``count_attempt=False`` is for a worker that hands its leases back on purpose
        (a graceful stop): the attempt is not held against the job.
        """
        taken = sorted(self._held.pop(worker, ()))
        # ``counted``: whether the attempts end as failed ones (a hand-back does not).
        self._emit("worker_lost", worker=worker, jobs=taken, reason=reason, counted=count_attempt)
        for job_id in taken:
            entry = self._entries[job_id]
            if count_attempt:
                self._end_attempt(entry, f"{reason} ({worker})")
            else:
                entry.attempts -= 1
                self._requeue(entry, f"{reason} ({worker})")
        return taken

    def expire(self, now: float | None = None) -> list[int]:
        """End every lease whose deadline has passed. Returns the job ids expired."""
        if now is None:
            now = self._clock()
        expired: list[int] = []
        for worker, held in list(self._held.items()):
            for job_id in sorted(held):
                entry = self._entries[job_id]
                if entry.deadline <= now:
                    expired.append(job_id)
                    self._emit(
                        "lease_expired",
                        job=job_id,
                        attempt=entry.attempts,
                        lease=entry.lease_id,
                        worker=worker,
                    )
                    self._end_attempt(entry, f"lease expired ({worker})")
        return expired

    # -- internals ---------------------------------------------------------------------------

    def _finish(self, result: Result) -> Outcome:
        entry = self._entries.get(result.job_id)
        if entry is None or not entry.handed_out:  # nobody can have run it
            self._emit(
                "unexpected_report", job=result.job_id, attempt=result.attempt, worker=result.worker
            )
            return _UNKNOWN
        if entry.result is not None:
            self.duplicates += 1
            self._emit(
                "duplicate_dropped",
                job=result.job_id,
                attempt=result.attempt,
                worker=result.worker,
                ok=True,
            )
            return _DUPLICATE
        if entry.state is _PENDING:
            self._leasable -= 1  # a late result for a requeued job: first result wins
        self._release_holder(entry)
        entry.state = _DONE
        entry.result = result
        self._new_results.append(result)
        if self._changed is not None:
            self._changed.add(result.job_id)
        if self._record:
            self._emit(
                "result_accepted",
                job=result.job_id,
                attempt=result.attempt,
                worker=result.worker,
                ok=True,
                value=result.value,
            )
        self._terminal(entry)
        return _ACCEPTED

    def _end_attempt(self, entry: _Entry, reason: str) -> Outcome:
        """A leased attempt ended without a result: retry or declare the job dead."""
        self._release_holder(entry)
        if self._changed is not None:
            self._changed.add(entry.job.job_id)
        attempt = entry.attempts
        entry.reasons.append(f"attempt {attempt}: {reason}")
        self._emit("attempt_failed", job=entry.job.job_id, attempt=attempt, reason=reason)
        if entry.attempts >= self.max_attempts:
            entry.state = _DEAD
            entry.holder = None
            error = f"dead after {entry.attempts} attempts: " + "; ".join(entry.reasons)
            entry.result = Result(entry.job.job_id, False, None, error, "master", attempt)
            self._new_results.append(entry.result)
            self._emit("dead", job=entry.job.job_id, attempts=entry.attempts, error=error)
            self._terminal(entry)
            return _DEAD_OUTCOME
        self._requeue(entry, reason)
        return _RETRY

    def _requeue(self, entry: _Entry, reason: str) -> None:
        self._release_holder(entry)
        if self._changed is not None:
            self._changed.add(entry.job.job_id)
        entry.state = _PENDING
        self._leasable += 1
        self.requeues += 1
        # Retries go to the front: a straggler holds back its batch and its results.
        self._pending.appendleft(entry.job.job_id)
        self._emit("requeued", job=entry.job.job_id, attempts=entry.attempts, reason=reason)

    def _release_holder(self, entry: _Entry) -> None:
        if entry.holder is not None:
            held = self._held.get(entry.holder)
            if held is not None:
                held.discard(entry.job.job_id)
            entry.holder = None

    def _terminal(self, entry: _Entry) -> None:
        self._unfinished -= 1
        batch = entry.job.batch
        if batch is None:
            return
        self._batch_unfinished[batch] -= 1
        if batch == self._open_batch and self._batch_unfinished[batch] == 0:
            self._emit("batch_closed", batch=batch)
            self._open_next_batch()

    def _open_next_batch(self) -> None:
        self._open_batch += 1
        if self._open_batch < len(self._batches):
            members = self._batches[self._open_batch]
            self._emit("batch_opened", batch=self._open_batch)
            self._pending.extend(members)
            self._leasable += len(members)
        # Otherwise every batch is closed: the next submitted job opens a new one.

    def _emit(self, ev: str, **fields: Any) -> None:
        if not self._record:
            return
        fields["ev"] = ev
        fields["t"] = self._clock()
        self._outbox.append(fields)
