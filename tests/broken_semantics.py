"""Deliberately broken variants of distq that keep every value right but break a stated
semantic (attempts, terminals, batches, leases, time limits); each is caught by a scenario.

Run as ``python -m tests.broken_semantics master|worker ...`` with ``DISTQ_BROKEN`` naming
the variant; otherwise it is exactly ``python -m distq``. Test-only: never shipped.

- ``attempt-too-many``: a job is retried once more than ``max_attempts`` allows.
- ``attempt-too-few``: a job is dead one attempt before ``max_attempts``.
- ``accept-after-dead``: a late result for a dead job is accepted as a second terminal.
- ``batch-plus-one``: every batch holds ``batch_size + 1`` jobs.
- ``count-bye``: a graceful hand-back (bye, SIGTERM) counts as a failed attempt.
- ``drop-requeued-result``: a result for a job back in the queue is dropped, not accepted.
- ``slow-close``: a closed connection keeps its leases until they expire.
- ``heartbeat-ignored``: heartbeats do not extend a lease: long jobs lose it.
- ``limit-mixed``: no time limit is enforced in a lease that mixes limited and unlimited jobs.
- ``limit-from-lease``: a job's time limit counts from the start of its lease, not its own.
- ``count-rejoin``: a rejoining worker's hand-back counts as failed attempts.
"""

from __future__ import annotations

import builtins
import os
import sys
import time
from typing import Any

from distq import runner
from distq.board import JobBoard, JobState, Outcome
from distq.jobs import Result

VARIANT = os.environ.get("DISTQ_BROKEN", "")

_original_finish = JobBoard._finish
_original_end_attempt = JobBoard._end_attempt
_original_submit = JobBoard.submit
_original_worker_lost = JobBoard.worker_lost
_original_run_in_child = runner.JobRunner._run_in_child
_original_read_progress = runner.JobRunner._read_progress


def _shifted_end_attempt(shift: int) -> Any:
    """``_end_attempt`` as if max_attempts were ``shift`` larger (an off-by-one)."""

    def end_attempt(self: JobBoard, entry: Any, reason: str) -> Outcome:
        self.max_attempts += shift
        try:
            return _original_end_attempt(self, entry, reason)
        finally:
            self.max_attempts -= shift

    return end_attempt


def _accept_after_dead(self: JobBoard, result: Result) -> Outcome:
    entry = self._entries.get(result.job_id)
    if entry is None or entry.state is not JobState.DEAD:
        return _original_finish(self, result)
    # The dedup looks only at accepted results: a dead job takes a result too.
    entry.state = JobState.DONE
    entry.result = result
    self._new_results.append(result)
    self._emit(
        "result_accepted",
        job=result.job_id,
        attempt=result.attempt,
        worker=result.worker,
        ok=True,
        value=result.value,
    )
    return Outcome.ACCEPTED


def _submit_plus_one(self: JobBoard, *args: Any, **kwargs: Any) -> Any:
    size = self.batch_size
    if size is not None:
        self.batch_size = size + 1  # "is the batch full?" off by one
    try:
        return _original_submit(self, *args, **kwargs)
    finally:
        self.batch_size = size


def _drop_requeued_result(self: JobBoard, result: Result) -> Outcome:
    entry = self._entries.get(result.job_id)
    if entry is not None and entry.state is JobState.PENDING and entry.handed_out:
        # "Not leased any more, so it is a late duplicate": the job runs again.
        self.duplicates += 1
        self._emit(
            "duplicate_dropped",
            job=result.job_id,
            attempt=result.attempt,
            worker=result.worker,
            ok=True,
        )
        return Outcome.DUPLICATE
    return _original_finish(self, result)


def _worker_lost_counting(*reasons: str) -> Any:
    def worker_lost(
        self: JobBoard, worker: str, reason: str = "worker lost", *, count_attempt: bool = True
    ) -> list[int]:
        if reason in reasons:
            count_attempt = True
        return _original_worker_lost(self, worker, reason, count_attempt=count_attempt)

    return worker_lost


def _worker_lost_keeping_leases(
    self: JobBoard, worker: str, reason: str = "worker lost", *, count_attempt: bool = True
) -> list[int]:
    if reason == "connection closed":
        self._emit("worker_lost", worker=worker, jobs=[], reason=reason, counted=count_attempt)
        return []  # the leases stay until they expire
    return _original_worker_lost(self, worker, reason, count_attempt=count_attempt)


def _heartbeat_ignored(self: JobBoard, worker: str) -> int:
    return len(self._held.get(worker, ()))


def _run_from_lease_start(self: Any, *args: Any, **kwargs: Any) -> Any:
    self._lease_started_at = time.monotonic()
    return _original_run_in_child(self, *args, **kwargs)


def _progress_from_lease_start(self: Any) -> tuple[int, float]:
    seq, started = _original_read_progress(self)
    return seq, getattr(self, "_lease_started_at", started)


def install(variant: str) -> None:
    if variant == "attempt-too-many":
        JobBoard._end_attempt = _shifted_end_attempt(1)  # type: ignore[method-assign]
    elif variant == "attempt-too-few":
        JobBoard._end_attempt = _shifted_end_attempt(-1)  # type: ignore[method-assign]
    elif variant == "accept-after-dead":
        JobBoard._finish = _accept_after_dead  # type: ignore[method-assign]
    elif variant == "batch-plus-one":
        JobBoard.submit = _submit_plus_one  # type: ignore[method-assign]
    elif variant == "count-bye":
        JobBoard.worker_lost = _worker_lost_counting("worker left")  # type: ignore[method-assign]
    elif variant == "drop-requeued-result":
        JobBoard._finish = _drop_requeued_result  # type: ignore[method-assign]
    elif variant == "slow-close":
        JobBoard.worker_lost = _worker_lost_keeping_leases  # type: ignore[method-assign]
    elif variant == "heartbeat-ignored":
        JobBoard.heartbeat = _heartbeat_ignored  # type: ignore[method-assign]
    elif variant == "limit-mixed":
        # `limited = any(...)` written as `all(...)`: one unlimited job disables the limit.
        runner.any = builtins.all  # type: ignore[attr-defined]
    elif variant == "limit-from-lease":
        runner.JobRunner._run_in_child = _run_from_lease_start  # type: ignore[method-assign]
        runner.JobRunner._read_progress = _progress_from_lease_start  # type: ignore[method-assign]
    elif variant == "count-rejoin":
        JobBoard.worker_lost = _worker_lost_counting("worker rejoined")  # type: ignore[method-assign]
    elif variant:
        raise SystemExit(f"unknown DISTQ_BROKEN variant {variant!r}")


if __name__ == "__main__":
    install(VARIANT)
    from distq.cli import main

    sys.exit(main())
