"""Submitting jobs to a running master started with ``--open``, and collecting results.

``submit()`` returns the job's id at once (ids come from blocks the master reserves for
this submitter) and a background flusher sends jobs in batches; ``flush()`` returns once
the master has acknowledged every job submitted so far::

    with Submitter.connect("127.0.0.1:5000", authkey) as submitter:
        ids = [submitter.submit("square", [n]) for n in range(100_000)]
        for result in submitter.as_completed():  # Result: value or error, worker, attempt
            ...
        submitter.close_submissions()  # the master stops once every job is terminal

A submitter killed before its jobs were acknowledged loses those jobs (and only those):
after ``flush()`` returns, the jobs are the master's. One thread submits, one collects.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.context import AuthenticationError
from multiprocessing.managers import RemoteError
from multiprocessing.reduction import ForkingPickler
from types import TracebackType
from typing import Any, TypeVar

from distq.errors import (
    AuthRejected,
    DistqError,
    MasterLost,
    MasterUnreachable,
    SubmissionRefused,
    UsageError,
)
from distq.jobs import Result
from distq.protocol import BoardProxy, DistqManager, format_address, parse_address
from distq.submissions import Refusal, WireOutcome, WireSubmission

__all__ = ["Submitter"]

T = TypeVar("T")

#: How long one call to the master may wait for room in the window or for a result:
#: short enough to notice a failure or a close, far below the client's rpc timeout.
CALL_WAIT_S = 1.0
FETCH_MAX = 4096  # results per fetch
FIRST_ID_BLOCK = 64  # ids reserved at first; each later block doubles, up to MAX_ID_BLOCK
MAX_ID_BLOCK = 65_536


class Submitter:
    """A client that adds jobs to an open master and collects their results."""

    def __init__(
        self,
        board: BoardProxy,
        where: str,
        *,
        collect_results: bool = True,
        window: int | None = None,
        batch_size: int = 1000,
        linger_s: float = 0.002,
        max_buffered: int = 10_000,
    ) -> None:
        if batch_size < 1 or max_buffered < 1 or not linger_s >= 0:
            raise ValueError("batch_size and max_buffered must be >= 1, linger_s >= 0")
        self._board = board
        self.where = where
        self._collect = collect_results
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._max_buffered = max_buffered
        reply = self._rpc(board.open_session, collect_results, window)
        self._session: str = reply["session"]
        self.window: int = reply["window"]  # jobs in flight the master allows this session
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the flusher waits for jobs
        self._space = threading.Condition(self._lock)  # submit() waits for buffer room
        self._acked_cond = threading.Condition(self._lock)  # flush() waits for the master
        self._buffer: deque[WireSubmission] = deque()  # not yet sent
        self._oldest_at = 0.0  # when the oldest buffered job was submitted
        self._submitted = 0  # jobs given an id, in order
        self._acked = 0  # the first _acked of those are the master's (taken or refused)
        self._flush_wanted = 0
        self._flusher_waiting = False
        self._stopping = False  # the flusher sends what it has, then ends
        self._abandoned = False  # the flusher ends at once; unsent jobs are dropped
        self._submissions_closed = False
        self._closed = False
        self._failure: DistqError | None = None
        self._unreported: list[Refusal] = []  # raised by the next flush()
        self._refused: dict[int, str] = {}  # raised by result(job_id)
        self._next_id = 0
        self._id_end = 0  # the reserved block is [_next_id, _id_end)
        self._id_block = FIRST_ID_BLOCK
        self._open: set[int] = set()  # submitted, result not yet handed to the caller
        self._received: dict[int, Result] = {}  # fetched, not yet handed to the caller
        self._parked: list[Any] = []  # connections of interrupted calls, closed at the end
        self._flusher = threading.Thread(target=self._run_flusher, name="distq-flusher")
        self._flusher.daemon = True
        self._flusher.start()

    @classmethod
    def connect(cls, address: str | tuple[str, int], authkey: bytes, **options: Any) -> Submitter:
        """Connect and open a session. ``options``: those of ``Submitter()``."""
        target = parse_address(address) if isinstance(address, str) else address
        where = format_address(target)
        manager = DistqManager(target, authkey)
        try:
            manager.connect()
            board = manager.board()
        except AuthenticationError:
            raise AuthRejected(f"the master at {where} rejected our authkey") from None
        except (OSError, EOFError) as exc:
            raise MasterUnreachable(f"no master at {where} ({exc})") from None
        return cls(board, where, **options)

    # -- submitting -------------------------------------------------------------------------

    def submit(
        self, task: str, args: list[Any] | tuple[Any, ...] = (), time_limit_s: float | None = None
    ) -> int:
        """Queue one job; returns its id at once. Blocks while ``max_buffered`` jobs wait
        to be sent (the master takes no more while this session's window is full)."""
        if type(args) is list:
            args = tuple(args)  # later changes to the caller's list do not leak in
        with self._lock:
            while True:
                self._check_usable()
                if len(self._buffer) < self._max_buffered:
                    break
                self._space.wait(CALL_WAIT_S)
            job_id = self._next_id
            if job_id >= self._id_end:
                job_id = self._reserve(1)
            self._next_id = job_id + 1
            buffer = self._buffer
            buffer.append((job_id, task, args, time_limit_s))
            self._submitted += 1
            if self._collect:
                self._open.add(job_id)
            if len(buffer) == 1:
                self._oldest_at = time.monotonic()
                if self._flusher_waiting:
                    self._work.notify()
            elif len(buffer) == self._batch_size and self._flusher_waiting:
                self._work.notify()
        return job_id

    def submit_many(self, specs: list[tuple[str, list[Any], float | None]]) -> list[int]:
        """Submit ``specs`` (task, args, time_limit_s) in one call per ``batch_size`` jobs,
        from this thread; returns their ids once the master has acknowledged them all."""
        self.flush()  # what submit() queued goes first
        with self._lock:
            self._check_usable()
            ids = [self._take_id() for _ in specs]
            self._submitted += len(ids)
            if self._collect:
                self._open.update(ids)
        jobs = [
            (job_id, task, tuple(args) if type(args) is list else args, limit)
            for job_id, (task, args, limit) in zip(ids, specs, strict=True)
        ]
        refusals: list[Refusal] = []
        try:
            for start in range(0, len(jobs), self._batch_size):
                batch = jobs[start : start + self._batch_size]
                refusals += self._send(batch, report_on_flush=False)
        except DistqError as exc:
            with self._lock:
                self._failure = self._failure or exc
            raise
        except BaseException:  # Ctrl-C: whether the master took the batch is unknown
            with self._lock:
                self._failure = self._failure or DistqError("submit_many() was interrupted")
            raise
        if refusals:
            raise SubmissionRefused(refusals)
        return ids

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the master has acknowledged every job submitted so far. Raises
        ``SubmissionRefused`` naming the jobs it refused since the last flush, MasterLost
        (with how many jobs went unacknowledged), or TimeoutError."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            self._wait_acked(self._submitted, deadline)
            if self._unreported:
                refusals, self._unreported = self._unreported, []
                raise SubmissionRefused(refusals)

    def close_submissions(self) -> None:
        """Flush, then tell the master no more jobs will come (from anyone): it stops
        once every job is terminal. Collect the results you want first."""
        self.flush()
        self._rpc(self._board.close_submissions)
        with self._lock:
            self._submissions_closed = True

    # -- results ----------------------------------------------------------------------------

    def result(self, job_id: int, timeout_s: float | None = None) -> Result:
        """Wait for the terminal result of one job of this submitter (ok or not, with its
        worker and attempt). Raises SubmissionRefused if the master refused the job."""
        self._check_collecting()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if job_id in self._received:
            return self._received.pop(job_id)
        with self._lock:
            if job_id in self._refused:
                raise SubmissionRefused([(job_id, self._refused[job_id])])
            if job_id not in self._open:
                raise UsageError(
                    f"job {job_id} is not awaiting its result here (not submitted by this "
                    "submitter, or its result was already returned)"
                )
            self._wait_acked(self._submitted, deadline)
            if job_id in self._refused:
                raise SubmissionRefused([(job_id, self._refused[job_id])])
        while job_id not in self._received:
            self._fetch(_remaining(deadline, f"job {job_id}: no result within {timeout_s} s"))
        return self._received.pop(job_id)

    def as_completed(self, timeout_s: float | None = None) -> Iterator[Result]:
        """Yield the terminal result of every job submitted here and not yet returned,
        in the order they complete (jobs submitted meanwhile included)."""
        self._check_collecting()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.flush(timeout_s)
        received = self._received
        while True:
            # Taken as a whole: popping a dict's first key one at a time rescans the
            # deleted slots ahead of it, quadratic in the batch.
            pending = list(received.values())
            received.clear()
            handed = 0
            try:
                for result in pending:
                    handed += 1
                    yield result
            finally:
                for result in pending[handed:]:  # the caller stopped early: keep the rest
                    received[result.job_id] = result
            with self._lock:
                if not self._open:
                    if self._unreported:
                        refusals, self._unreported = self._unreported, []
                        raise SubmissionRefused(refusals)
                    return
                waiting = len(self._open)
            self._fetch(_remaining(deadline, f"{waiting} results not in within {timeout_s} s"))

    # -- closing ----------------------------------------------------------------------------

    def close(self, timeout_s: float | None = None) -> None:
        """Flush (raising as ``flush`` does), then end the session and disconnect. When
        the flush raises, jobs not acknowledged by then are dropped, as by ``abandon``."""
        if self._closed:
            return
        try:
            self.flush(timeout_s)  # after a failure: raises only if jobs went unacknowledged
        except BaseException:
            # Timed out or interrupted: what is still unsent could wait for room forever.
            self._shut_down(abandon=True)
            raise
        self._shut_down(abandon=False)

    def abandon(self) -> None:
        """Disconnect at once; jobs not yet acknowledged are dropped."""
        if not self._closed:
            self._shut_down(abandon=True)

    def __enter__(self) -> Submitter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    # -- internals --------------------------------------------------------------------------

    def _shut_down(self, abandon: bool) -> None:
        self._closed = True
        with self._lock:
            self._stopping = True
            self._abandoned = abandon
            self._work.notify_all()
        self._flusher.join(None if not abandon else 2 * CALL_WAIT_S + 5)
        if abandon:
            # No call that could wait on a hung master (end_session, the proxy's decref):
            # the master ends the session once its connections are closed.
            self._board.abandon()
        else:
            if self._failure is None:
                with contextlib.suppress(DistqError):  # the master is gone, and the session
                    self._rpc(self._board.end_session, self._session)
            self._board._close()  # type: ignore[attr-defined]
        for conn in self._parked:
            conn.close()

    def _check_usable(self) -> None:
        """Under the lock: raise if no more jobs can be submitted here."""
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise UsageError("this submitter is closed")
        if self._submissions_closed:
            raise UsageError("submissions are closed (this submitter closed them)")

    def _check_collecting(self) -> None:
        if not self._collect:
            raise UsageError("this submitter was connected with collect_results=False")

    def _take_id(self) -> int:
        job_id = self._next_id
        if job_id >= self._id_end:
            job_id = self._reserve(1)
        self._next_id = job_id + 1
        return job_id

    def _reserve(self, count: int) -> int:
        """Under the lock: a new block of ids from the master (one round trip, rare)."""
        size = max(count, self._id_block)
        self._id_block = min(2 * self._id_block, MAX_ID_BLOCK)
        first = self._rpc(self._board.reserve_ids, self._session, size)
        self._id_end = first + size
        return first

    def _wait_acked(self, target: int, deadline: float | None) -> None:
        """Under the lock: wait until the first ``target`` jobs are acknowledged."""
        self._flush_wanted += 1
        try:
            if self._flusher_waiting:
                self._work.notify()
            while self._acked < target:
                if self._failure is not None:
                    lost = self._submitted - self._acked
                    raise MasterLost(
                        f"{self._failure}; {lost} submitted jobs were not acknowledged"
                    )
                if self._closed and not self._flusher.is_alive():
                    raise UsageError("this submitter is closed")
                wait_s = CALL_WAIT_S if deadline is None else deadline - time.monotonic()
                if wait_s <= 0:
                    raise TimeoutError(
                        f"{target - self._acked} submitted jobs not acknowledged in time"
                    )
                self._acked_cond.wait(min(wait_s, CALL_WAIT_S))
        finally:
            self._flush_wanted -= 1

    def _run_flusher(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._send(batch, report_on_flush=True)
        except Exception as exc:  # a flusher that ended silently would hang flush()
            failure = exc if isinstance(exc, DistqError) else DistqError(_last_line(exc))
            with self._lock:
                self._failure = self._failure or failure
                self._space.notify_all()
                self._acked_cond.notify_all()
        finally:
            conn = getattr(self._board._tls, "connection", None)  # this thread's own
            if conn is not None:
                conn.close()
                del self._board._tls.connection

    def _next_batch(self) -> list[WireSubmission] | None:
        """Wait for a full batch, the linger time, a flush or the end; take the batch."""
        with self._lock:
            buffer = self._buffer
            while True:
                if self._abandoned:
                    return None
                wait_s: float | None = None
                if buffer:
                    if len(buffer) >= self._batch_size or self._flush_wanted or self._stopping:
                        break
                    wait_s = self._oldest_at + self._linger_s - time.monotonic()
                    if wait_s <= 0:
                        break
                elif self._stopping:
                    return None
                self._flusher_waiting = True
                self._work.wait(wait_s)
                self._flusher_waiting = False
            batch = [buffer.popleft() for _ in range(min(len(buffer), self._batch_size))]
            self._space.notify_all()
            return batch

    def _send(self, batch: list[WireSubmission], report_on_flush: bool) -> list[Refusal]:
        """Send ``batch`` until the master has taken all of it (it takes what its window
        has room for); count each reply as acknowledged. Returns the refusals (also
        raised by the next flush() when ``report_on_flush``)."""
        refusals: list[Refusal] = []
        while batch:
            taken, refused = self._submit_jobs(batch)
            batch = batch[taken:]
            with self._lock:
                self._acked += taken
                if refused:
                    refusals += refused
                    if report_on_flush:
                        self._unreported += refused
                    for job_id, reason in refused:
                        self._refused[job_id] = reason
                        self._open.discard(job_id)
                if taken:
                    self._acked_cond.notify_all()
                if self._abandoned:
                    break
        return refusals

    def _submit_jobs(self, batch: list[WireSubmission]) -> tuple[int, list[Refusal]]:
        """One ``submit_jobs`` call. A batch that cannot be pickled here or unpickled by
        the master (an object of a module the master does not import) reached nothing:
        split it until the jobs at fault are alone, and refuse those, naming why."""
        try:
            return self._rpc(self._board.submit_jobs, self._session, batch, CALL_WAIT_S)
        except DistqError:
            raise
        except RemoteError as exc:  # the master could not read the call: nothing ran
            reason = _last_line(exc)
        except Exception as exc:
            try:
                ForkingPickler.dumps(batch)
            except Exception:
                reason = _last_line(exc)  # it cannot be pickled here: nothing was sent
            else:  # submit_jobs itself failed: whether it took the jobs is unknown
                raise DistqError(f"the master failed taking jobs: {_last_line(exc)}") from None
        if len(batch) == 1:
            return 1, [(batch[0][0], f"could not be sent to the master: {reason}")]
        half = len(batch) // 2
        taken, refused = self._submit_jobs(batch[:half])
        if taken < half:  # the window is full: the rest is sent again
            return taken, refused
        more, also_refused = self._submit_jobs(batch[half:])
        return taken + more, refused + also_refused

    def _fetch(self, wait_s: float) -> None:
        outcomes: list[WireOutcome] = self._rpc(
            self._board.fetch_results, self._session, FETCH_MAX, min(wait_s, CALL_WAIT_S)
        )
        if outcomes:
            received = self._received
            with self._lock:
                is_open = self._open
                for outcome in outcomes:
                    if outcome[0] in is_open:  # not one handed out again after a Ctrl-C
                        is_open.remove(outcome[0])
                        received[outcome[0]] = Result(*outcome)

    def _rpc(self, method: Callable[..., T], *args: Any) -> T:
        try:
            return method(*args)
        except ValueError as exc:  # the master refused: not open, unknown session, ...
            raise UsageError(str(exc)) from None
        except (OSError, EOFError) as exc:
            raise MasterLost(f"lost the master at {self.where} ({type(exc).__name__})") from None
        except BaseException:
            # Interrupted mid-call (Ctrl-C): its reply may still come on this thread's
            # connection and would answer the next call (P3). Park it unread; the next
            # call connects afresh, the session keeps living on the parked one.
            conn = getattr(self._board._tls, "connection", None)
            if conn is not None:
                self._parked.append(conn)
                del self._board._tls.connection
            raise


def _last_line(exc: Exception) -> str:
    """``exc`` in one line; a traceback relayed from the master by its last line."""
    text = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def _remaining(deadline: float | None, message: str) -> float:
    """Seconds left before ``deadline`` (CALL_WAIT_S when there is none); TimeoutError
    with ``message`` once it has passed."""
    if deadline is None:
        return CALL_WAIT_S
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(message)
    return remaining
