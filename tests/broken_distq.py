"""Deliberately broken variants of distq, for proving that the harness catches bugs.

Run as ``python -m tests.broken_distq master|worker ...`` with ``DISTQ_BROKEN`` naming
the variant; otherwise it is exactly ``python -m distq``. A program on ``distq.client``
runs broken as ``python -m tests.broken_distq script PROGRAM.py ARGS...``. Test-only:
never shipped.

- ``no-dedup``: the board accepts every result, so a late result is delivered twice.
- ``wrong-value``: workers report ``n*n + 1`` for job 7.
- ``never-requeue``: a job whose attempt fails is forgotten instead of retried.
- ``batch-early``: the next batch opens while one job of the current batch is unfinished.
- ``drop-orphans``: when a submitter's connection closes, its acknowledged jobs that no
  worker took yet are forgotten (neither run nor ended).
- ``shared-ids``: every submitter session is given the same block of ids, so a second
  producer's jobs collide with the first's and are refused.
- ``silent-refusal``: a malformed submission is acknowledged as taken and dropped, its
  refusal never reported to the submitter.
- ``window-refuses``: jobs past a submitter's window are refused instead of waiting for room.
- ``no-default-limit``: a submitted job without a time limit gets none, whatever
  ``--time-limit-s`` says.
- ``journal-forgets-submitted``: the journal keeps the jobs the master started with but
  not those submitted later, so a restart loses the ones still unfinished.
- ``prefetch-ignored``: workers lease up to 8 jobs at a time, whatever ``--prefetch`` says.
- ``keep-torn-lines``: a master resuming on its journal neither cuts a torn last line of
  the results file nor ends one in the event log; it writes on after it.
- ``bool-as-int``: workers report ``true``/``false`` inside a value as ``1``/``0``.
- ``busy-gives-up``: a worker told "busy" by a crowded master exits 7 at once instead of
  trying again.
- ``thirty-two-workers``: the master refuses a 33rd connected worker (a fixed-size table).
- ``lost-keeps-leases``: the jobs of a worker whose connection closed (or that rejoined) go
  back to the queue without the master ending their leases, so they are leased again while
  the first leases stand.
- ``any-master``: a rejoining worker takes whatever master answers at the address as the
  one it left, and reports its old jobs' results to a master that numbers jobs afresh.
- ``forget-unwritten``: a master that cannot write its results (a full disk) stops with
  exit code 8 but drops the accepted results it could not write instead of printing them.
- ``trust-checkpoint``: a master resuming on its journal looks for missing results and
  events only after its last checkpoint, trusting that its outputs still hold everything
  before it (an output cut shorter loses what was cut for good).
- ``drop-abandoned``: a ``Submitter.as_completed`` the caller stops iterating early drops
  the results it had fetched and not yet handed out, instead of keeping them for the next.
- ``expire-silent-sessions``: the master takes a submitter silent for over a second for a
  dead one: it ends its session and forgets its jobs that no worker took yet.
"""

from __future__ import annotations

import dataclasses
import os
import runpy
import sys
import time
from collections.abc import Generator, Iterator
from typing import Any, cast

from distq import journal, master, protocol, worker
from distq.board import JobBoard, JobState, Outcome
from distq.client import Submitter
from distq.errors import MasterBusy
from distq.jobs import Job, Result
from distq.journal import Journal
from distq.protocol import MasterBusyError
from distq.service import BoardService
from distq.submissions import Refusal, WireSubmission

VARIANT = os.environ.get("DISTQ_BROKEN", "")


def _no_dedup(self: JobBoard, result: Result) -> Outcome:
    entry = self._entries.get(result.job_id)
    if entry is not None and entry.result is not None:
        entry.result = None  # forget the first result: the next one is "first" again
        entry.state = JobState.LEASED
        self._unfinished += 1
        if entry.job.batch is not None:
            self._batch_unfinished[entry.job.batch] += 1
    return _original_finish(self, result)


def _never_requeue(self: JobBoard, entry: Any, reason: str) -> None:
    self._release_holder(entry)
    entry.state = JobState.LEASED  # neither pending nor terminal: lost
    self._emit("requeued", job=entry.job.job_id, attempts=entry.attempts, reason=reason)


def _batch_early(self: JobBoard, entry: Any) -> None:
    self._unfinished -= 1
    batch = entry.job.batch
    if batch is None:
        return
    self._batch_unfinished[batch] -= 1
    if batch == self._open_batch and self._batch_unfinished[batch] <= 1:
        self._emit("batch_closed", batch=batch)
        self._open_next_batch()


_original_finish = JobBoard._finish
_original_add = worker._Session.add


def _wrong_value_add(self: Any, result: Result) -> None:
    if (result.job_id == 7 or VARIANT == "all-wrong") and result.ok:
        result = Result(result.job_id, True, result.value + 1, None, result.worker, result.attempt)
    _original_add(self, result)


_original_closed = BoardService.connection_closed
_original_accept = BoardService._accept_jobs


def _drop_orphans(self: BoardService, conn: object) -> None:
    _original_closed(self, conn)
    with self._cond:
        for job_id, session in list(self.sessions._owner.items()):
            entry = self.board._entries.get(job_id)
            if session.ended and entry is not None and entry.state is JobState.PENDING:
                entry.state = JobState.LEASED  # neither pending nor terminal: lost


_next_of_session: dict[str, int] = {}


def _shared_ids(self: BoardService, session: str, count: int) -> int:
    with self._cond:
        self._session(session)
        first = _next_of_session.get(session, 0)  # each session counts from 0 on its own
        _next_of_session[session] = first + max(1, count)
        return first


def _window_refuses(
    self: BoardService, session: Any, jobs: list[WireSubmission]
) -> tuple[int, list[Refusal]]:
    room = self.sessions.room(session)
    _taken, refused = _original_accept(self, session, jobs[:room])
    return len(jobs), refused + [(job[0], "the window is full") for job in jobs[room:]]


def _silent_refusal(
    self: BoardService, session: Any, jobs: list[WireSubmission]
) -> tuple[int, list[Refusal]]:
    taken, _refused = _original_accept(self, session, jobs)
    return taken, []


def _no_default_limit(
    self: BoardService, session: Any, jobs: list[WireSubmission]
) -> tuple[int, list[Refusal]]:
    self.config = dataclasses.replace(self.config, time_limit_s=None)
    return _original_accept(self, session, jobs)


def _as_ints(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, list | tuple):
        return [_as_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_ints(item) for key, item in value.items()}
    return value


def _bool_as_int_add(self: Any, result: Result) -> None:
    if result.ok:
        value = _as_ints(result.value)
        result = Result(result.job_id, True, value, None, result.worker, result.attempt)
    _original_add(self, result)


_original_insert = Journal._insert_jobs
_original_lease = worker._Session.lease
_original_lines_from = journal._complete_lines_from


def _never_torn(path: Any, offset: int) -> tuple[list[bytes], int, bool]:
    lines, start, _torn = _original_lines_from(path, offset)
    return lines, start, False


def _lease_eight(self: Any, want: int, wait_s: float | None = None) -> Any:
    return _original_lease(self, 8, wait_s)


def _insert_created_only(self: Journal, jobs: list[Job], seq: int) -> None:
    if seq == 1:  # the journal's creation: the jobs the master was started with
        _original_insert(self, jobs, seq)


def _gives_up_when_busy(
    address: tuple[str, int],
    family: str | None = None,
    authkey: bytes | None = None,
    source_address: tuple[str, int] | None = None,
) -> Any:
    try:
        return protocol._authenticated_client(address, authkey, source_address)
    except MasterBusyError:
        raise MasterBusy("the master is busy: giving up") from None


_original_hello = BoardService.hello


def _thirty_two_workers(
    self: BoardService, worker: str, pid: int, host: str, rejoin: bool = False
) -> dict[str, Any]:
    with self._cond:
        full = len(self._conn_of_worker) >= 32 and worker not in self._conn_of_worker
    if full:
        raise ValueError("the master's worker table is full (32)")
    return _original_hello(self, worker, pid, host, rejoin)


_original_worker_lost = JobBoard.worker_lost


def _lost_keeps_leases(
    self: JobBoard, worker: str, reason: str = "worker lost", *, count_attempt: bool = True
) -> list[int]:
    for job_id in sorted(self._held.pop(worker, ())):
        entry = self._entries[job_id]  # back in the queue, its lease never ended
        entry.holder = None
        entry.state = JobState.PENDING
        self._leasable += 1
        self._pending.appendleft(job_id)
    return []


def _any_master(self: Any, settings: dict[str, Any]) -> None:
    if self.master_id is None:
        self.master_id = settings.get("master_id")


_original_output_failure = master._raise_output_failure
_original_resume_outputs = journal.resume_outputs


def _forget_unwritten(sink: Any, log: Any, results_name: str, events_path: str | None) -> None:
    sink.unwritten.clear()
    _original_output_failure(sink, log, results_name, events_path)


def _trust_checkpoint(journal_: Journal, *args: Any, **kwargs: Any) -> tuple[int, bool]:
    # Offsets of 0: every output looks at least as long as its checkpoint.
    journal_.meta = {**journal_.meta, "results_offset": 0, "events_offset": 0}
    return _original_resume_outputs(journal_, *args, **kwargs)


_original_as_completed = Submitter.as_completed


def _as_completed_drops_rest(self: Submitter, timeout_s: float | None = None) -> Iterator[Result]:
    results = cast("Generator[Result, None, None]", _original_as_completed(self, timeout_s))
    try:
        yield from results
    finally:
        results.close()  # it keeps what it had not handed out...
        self._received.clear()  # ...and that is dropped


_original_session = BoardService._session
_original_tick = BoardService.tick
_last_call: dict[str, float] = {}
SILENT_S = 1.0


def _session_noting_calls(self: BoardService, name: str) -> Any:
    _last_call[name] = time.monotonic()
    return _original_session(self, name)


def _tick_expiring_sessions(self: BoardService) -> bool:
    with self._cond:
        for name, last in list(_last_call.items()):
            if time.monotonic() - last < SILENT_S:
                continue
            del _last_call[name]
            session = self.sessions._sessions.get(name)
            self.sessions.end(name)
            for job_id, owner in list(self.sessions._owner.items()):
                entry = self.board._entries.get(job_id)
                if owner is session and entry is not None and entry.state is JobState.PENDING:
                    entry.state = JobState.LEASED  # neither pending nor terminal: lost
    return _original_tick(self)


#: Each variant: the owner, the attribute it replaces there, and the broken replacement.
VARIANTS: dict[str, tuple[Any, str, Any]] = {
    "no-dedup": (JobBoard, "_finish", _no_dedup),
    "never-requeue": (JobBoard, "_requeue", _never_requeue),
    "batch-early": (JobBoard, "_terminal", _batch_early),
    "drop-orphans": (BoardService, "connection_closed", _drop_orphans),
    "shared-ids": (BoardService, "reserve_ids", _shared_ids),
    "window-refuses": (BoardService, "_accept_jobs", _window_refuses),
    "silent-refusal": (BoardService, "_accept_jobs", _silent_refusal),
    "no-default-limit": (BoardService, "_accept_jobs", _no_default_limit),
    "journal-forgets-submitted": (Journal, "_insert_jobs", _insert_created_only),
    "prefetch-ignored": (worker._Session, "lease", _lease_eight),
    "keep-torn-lines": (journal, "_complete_lines_from", _never_torn),
    "bool-as-int": (worker._Session, "add", _bool_as_int_add),
    "wrong-value": (worker._Session, "add", _wrong_value_add),
    "all-wrong": (worker._Session, "add", _wrong_value_add),
    "busy-gives-up": (protocol, "authenticated_client", _gives_up_when_busy),
    "thirty-two-workers": (BoardService, "hello", _thirty_two_workers),
    "lost-keeps-leases": (JobBoard, "worker_lost", _lost_keeps_leases),
    "any-master": (worker._Session, "_check_same_master", _any_master),
    "forget-unwritten": (master, "_raise_output_failure", _forget_unwritten),
    "trust-checkpoint": (master, "resume_outputs", _trust_checkpoint),
    "drop-abandoned": (Submitter, "as_completed", _as_completed_drops_rest),
    "expire-silent-sessions": (BoardService, "tick", _tick_expiring_sessions),
}


def install(variant: str) -> None:
    if not variant:
        return
    if variant not in VARIANTS:
        raise SystemExit(f"unknown DISTQ_BROKEN variant {variant!r}")
    owner, attribute, broken = VARIANTS[variant]
    setattr(owner, attribute, broken)
    if variant == "expire-silent-sessions":  # it needs to know when each session last called
        BoardService._session = _session_noting_calls  # type: ignore[method-assign]


if __name__ == "__main__":
    install(VARIANT)
    if sys.argv[1:2] == ["script"]:  # a program on distq.client, run as its own __main__
        sys.argv = sys.argv[2:]
        runpy.run_path(sys.argv[0], run_name="__main__")
        sys.exit(0)
    from distq.cli import main

    sys.exit(main())
