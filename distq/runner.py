"""Runs jobs in a child process of the worker, so a time limit or a crash is handled from
outside the job (DESIGN P3): the worker kills the child, never signals itself while it
holds a connection to the master.

The child runs the jobs it is sent in order and sends their outcomes back in batches
(when a batch of jobs is done, and otherwise every ``flush_s``), so that tiny jobs do not
pay one pipe round trip each. Which job is running, and since when, it records in shared
memory before starting each job: the parent reads it to enforce time limits and to blame
a crash on exactly the job that was running. Outcomes still buffered in a child that dies
or is killed are lost with it; those jobs simply run again (the same attempt, under the
same lease), so no outcome is reported twice and none is lost.
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import multiprocessing.connection as mpc
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.reduction import ForkingPickler
from typing import Any

from distq.events import EventLog
from distq.jobs import Result, WireJob, WireResult, resolve_task

__all__ = ["JobRunner"]

_START_TIMEOUT_S = 60.0
#: How often the parent looks at which job runs while a job with a time limit may have
#: started; the limit is enforced at most this late.
_LIMIT_POLL_S = 0.01
#: A child that dies this many times in a row without starting a job is not restarted.
_MAX_BARREN_DEATHS = 3
#: (first sequence number, [(job_id, attempt, task, args), ...]): jobs get consecutive numbers.
_Batch = tuple[int, list[tuple[int, int, str, tuple[Any, ...]]]]


def _die_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        mpc.wait([parent.sentinel])
        os._exit(1)


def _send_outcomes(conn: mpc.Connection, outcomes: list[WireResult]) -> bool:
    """Send a batch of outcomes; False when the worker is gone (killed: we die with it)."""
    try:
        payload = ForkingPickler.dumps(outcomes)
    except Exception:
        payload = ForkingPickler.dumps([_picklable(outcome) for outcome in outcomes])
    try:
        conn.send_bytes(payload)
    except OSError:  # BrokenPipeError: an orphan prints no traceback into the worker's log
        return False
    return True


def _picklable(outcome: WireResult) -> WireResult:
    try:
        ForkingPickler.dumps(outcome)
    except Exception as exc:
        job_id, attempt = outcome[0], outcome[1]
        return (job_id, attempt, False, None, f"result not serialisable: {exc}")
    return outcome


def _runner_main(
    conn: mpc.Connection,
    progress: Any,
    worker: str,
    events_path: str | None,
    epoch: float,
    flush_s: float,
) -> None:
    # Ctrl-C goes to the whole process group, and so does a SIGTERM sent to the group (a
    # service manager's stop, kill -TERM -PGID): the worker decides what happens to jobs,
    # and stops this process itself (SIGKILL, or when it dies: _die_with_parent).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    threading.Thread(target=_die_with_parent, daemon=True).start()
    log = EventLog(events_path, worker, epoch)
    logging = log.enabled
    tasks: dict[str, Callable[..., Any]] = {}
    monotonic = time.monotonic
    try:
        conn.send("ready")
    except OSError:
        return
    while True:
        try:
            message: _Batch | None = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        seq, batch = message
        outcomes: list[WireResult] = []
        flushed_at = monotonic()
        for job_id, attempt, task, args in batch:
            now = monotonic()
            if outcomes and now - flushed_at >= flush_s:
                if not _send_outcomes(conn, outcomes):
                    return
                outcomes = []
                flushed_at = now
            # The start time first: the parent reads the number, the time, the number again.
            progress[1] = now
            progress[0] = seq
            seq += 1
            if logging:
                log.write("started", job=job_id, attempt=attempt, worker=worker)
            try:
                function = tasks.get(task)
                if function is None:
                    function = tasks[task] = resolve_task(task)
                outcome: WireResult = (job_id, attempt, True, function(*args), None)
            except BaseException as exc:  # a job's SystemExit is its failure, not ours
                outcome = (job_id, attempt, False, None, f"{type(exc).__name__}: {exc}")
            if logging:
                log.write("completed", job=job_id, attempt=attempt, worker=worker, ok=outcome[2])
            outcomes.append(outcome)
        if not _send_outcomes(conn, outcomes):
            return


class JobRunner:
    """The worker's handle on its job process: start, run a batch, kill, restart."""

    def __init__(
        self, worker: str, events_path: str | None, epoch: float, *, flush_s: float = 0.01
    ) -> None:
        self._worker = worker
        self._events_path = events_path
        self._epoch = epoch
        self._flush_s = flush_s
        self._ctx = multiprocessing.get_context("spawn")
        self._fork_ctx = multiprocessing.get_context("fork")
        # [sequence number of the job running or last run, its start (time.monotonic())]
        self._progress: Any = self._ctx.RawArray("d", 2)
        self._next_seq = 0
        self._proc: Any = None
        self._conn: mpc.Connection | None = None
        self._ready = False
        self._barren_deaths = 0
        self.log = EventLog(events_path, worker, epoch)

    def start(self, *, fork: bool = False) -> None:
        """Launch the job process and return at once (``wait_ready`` waits for it).

        A fresh interpreter (spawn) takes ~0.15 s to be ready. ``fork=True`` forks this
        process instead, in a few milliseconds; that is only safe while this process has
        no other thread and no connection a child would inherit, so it falls back to
        spawn otherwise. The worker forks its first job process, before it connects;
        every restart after a crash or a kill is spawned.
        """
        ctx = self._fork_ctx if fork and threading.active_count() == 1 else self._ctx
        self._progress[0] = -1.0
        parent_end, child_end = ctx.Pipe()
        self._proc = ctx.Process(
            target=_runner_main,
            args=(
                child_end,
                self._progress,
                self._worker,
                self._events_path,
                self._epoch,
                self._flush_s,
            ),
            name=f"distq-runner-{self._worker}",
            daemon=True,
        )
        self._proc.start()
        child_end.close()
        self._conn = parent_end
        self._ready = False

    def wait_ready(self) -> None:
        """Block until the job process can run jobs; raise RuntimeError if it cannot."""
        if self._ready:
            return
        assert self._conn is not None
        try:
            ready = self._conn.poll(_START_TIMEOUT_S) and self._conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise RuntimeError(f"the job process did not start within {_START_TIMEOUT_S:g} s")
        self._ready = True

    def run(
        self,
        jobs: Sequence[WireJob],
        *,
        on_result: Callable[[Result], None],
        on_tick: Callable[[], bool],
        tick_s: float,
        on_sent: Callable[[], None] | None = None,
    ) -> bool:
        """Run ``jobs``; each outcome goes to ``on_result`` once, soon after it happens.

        ``on_tick`` is called at least every ``tick_s`` (heartbeats, flushing reports);
        when it returns True the batch is abandoned and the unfinished jobs are left
        without a result. Returns False when abandoned. ``on_sent`` is called once the
        job process has the jobs, while it runs them.
        """
        queue = list(jobs)
        while queue:
            if self._proc is None or not self._proc.is_alive():
                self._discard()
                self.start()
            self.wait_ready()
            left = self._run_in_child(queue, on_result, on_tick, tick_s, on_sent)
            on_sent = None
            if left is None:
                return False
            queue = left
            if queue:
                on_tick()
        return True

    def _run_in_child(
        self,
        queue: list[WireJob],
        on_result: Callable[[Result], None],
        on_tick: Callable[[], bool],
        tick_s: float,
        on_sent: Callable[[], None] | None,
    ) -> list[WireJob] | None:
        """Send ``queue`` to the child and collect. Returns the jobs to run again in a new
        child (empty when all are done), or None when abandoned."""
        assert self._conn is not None and self._proc is not None
        conn, sentinel = self._conn, self._proc.sentinel
        base = self._next_seq
        self._next_seq += len(queue)
        conn.send((base, [(job[0], job[3], job[1], job[2]) for job in queue]))
        if on_sent is not None:
            on_sent()
        limited = any(job[4] for job in queue)
        done = 0
        while done < len(queue):
            timeout = tick_s
            # Outcomes waiting in the pipe go first: the job over its time might be done.
            if limited and not conn.poll(0):
                timeout = min(timeout, _LIMIT_POLL_S)
                seq, started = self._read_progress()
                index = seq - base
                limit_s = queue[index][4] if done <= index < len(queue) else None
                if limit_s:
                    remaining = started + limit_s - time.monotonic()
                    if remaining <= 0:
                        return self._time_limit(queue, done, base, seq, on_result)
                    timeout = min(timeout, remaining)
            ready = mpc.wait([conn, sentinel], timeout)
            if conn in ready:
                try:
                    outcomes: list[WireResult] = conn.recv()
                except (EOFError, OSError):
                    return self._died(queue, done, base, on_result)
                for outcome in outcomes:
                    on_result(self._result(outcome))
                done += len(outcomes)
            elif ready:
                return self._died(queue, done, base, on_result)
            if on_tick():
                self.kill()
                return None
        self._barren_deaths = 0
        return []

    def _read_progress(self) -> tuple[int, float]:
        """(sequence number, start) of the job running or last run; -1 before any."""
        progress = self._progress
        while True:
            seq = progress[0]
            started: float = progress[1]
            if progress[0] == seq:
                return int(seq), started

    def _drain(self, done: int, on_result: Callable[[Result], None]) -> int:
        """Deliver the outcomes a dead child wrote before it died. Returns the new ``done``."""
        assert self._conn is not None
        while True:
            try:
                if not self._conn.poll(0):
                    return done
                outcomes: list[WireResult] = self._conn.recv()
            except (EOFError, OSError):
                return done
            for outcome in outcomes:
                on_result(self._result(outcome))
            done += len(outcomes)

    def _died(
        self,
        queue: list[WireJob],
        done: int,
        base: int,
        on_result: Callable[[Result], None],
    ) -> list[WireJob]:
        done = self._drain(done, on_result)
        code = self._reap()
        return self._blame(queue, done, base, on_result, f"job process exited with code {code}")

    def _time_limit(
        self,
        queue: list[WireJob],
        done: int,
        base: int,
        seq: int,
        on_result: Callable[[Result], None],
    ) -> list[WireJob]:
        assert self._proc is not None
        self._proc.kill()
        self._proc.join(5)
        done = self._drain(done, on_result)
        self._discard()
        if self._read_progress()[0] != seq or seq - base < done:
            # It finished just in time (the next job had started, or its outcome was on
            # its way): nobody is to blame.
            return queue[done:]
        limit_s = queue[seq - base][4]
        return self._blame(
            queue, done, base, on_result, f"time limit of {limit_s:g} s exceeded", limit_s
        )

    def _blame(
        self,
        queue: list[WireJob],
        done: int,
        base: int,
        on_result: Callable[[Result], None],
        reason: str,
        time_limit_s: float | None = None,
    ) -> list[WireJob]:
        """The child is gone: fail the job it was running, if any; the rest run again.
        ``time_limit_s``: it was killed for running past this limit."""
        index = self._read_progress()[0] - base
        if not done <= index < len(queue):
            # It died between jobs, with nothing of ours running.
            self._barren_deaths += 1
            if self._barren_deaths >= _MAX_BARREN_DEATHS:
                raise RuntimeError(
                    f"the job process died {self._barren_deaths} times in a row without "
                    f"running a job (last: {reason})"
                )
            return queue[done:]
        self._barren_deaths = 0
        job_id, attempt = queue[index][0], queue[index][3]
        self.log.write(
            "runner_killed", job=job_id, attempt=attempt, reason=reason, time_limit_s=time_limit_s
        )
        on_result(Result(job_id, False, None, reason, self._worker, attempt))
        return queue[done:index] + queue[index + 1 :]

    def _result(self, outcome: WireResult) -> Result:
        job_id, attempt, ok, value, error = outcome
        return Result(job_id, ok, value, error, self._worker, attempt)

    def _reap(self) -> int | None:
        assert self._proc is not None
        self._proc.join(5)
        code: int | None = self._proc.exitcode
        self._discard()
        return code

    def kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._discard()

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._proc = None
        self._ready = False

    def close(self) -> None:
        if (
            self._ready
            and self._proc is not None
            and self._proc.is_alive()
            and self._conn is not None
        ):
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._proc.join(2)
        self.kill()
        self.log.close()
