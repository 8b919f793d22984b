"""Runs jobs in a child process of the worker, so a time limit or a crash is handled from
outside the job (DESIGN P3): the worker kills the child, never signals itself while it
holds a connection to the master.

The child runs the jobs it is sent in order and streams one result back per job; the
parent therefore knows which job is running (the first without a result) and since when.
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
from typing import Any

from distq.events import EventLog
from distq.jobs import Result, WireJob, resolve_task

__all__ = ["JobRunner"]

_START_TIMEOUT_S = 60.0
_WireJob = tuple[int, int, str, tuple[Any, ...]]
_WireResult = tuple[int, int, bool, Any, str | None]


def _die_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        mpc.wait([parent.sentinel])
        os._exit(1)


def _runner_main(conn: mpc.Connection, worker: str, events_path: str | None, epoch: float) -> None:
    # Ctrl-C goes to the whole process group; the worker decides what happens to jobs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    threading.Thread(target=_die_with_parent, daemon=True).start()
    log = EventLog(events_path, worker, epoch)
    tasks: dict[str, Callable[..., Any]] = {}
    conn.send("ready")
    while True:
        try:
            batch: list[_WireJob] | None = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for job_id, attempt, task, args in batch:
            log.write("started", job=job_id, attempt=attempt, worker=worker)
            try:
                function = tasks.get(task)
                if function is None:
                    function = tasks[task] = resolve_task(task)
                value = function(*args)
                wire: _WireResult = (job_id, attempt, True, value, None)
            except BaseException as exc:  # a job's SystemExit is its failure, not ours
                wire = (job_id, attempt, False, None, f"{type(exc).__name__}: {exc}")
            log.write("completed", job=job_id, attempt=attempt, worker=worker, ok=wire[2])
            try:
                conn.send(wire)
            except (ValueError, TypeError, AttributeError, RecursionError) as exc:  # unpicklable
                conn.send((job_id, attempt, False, None, f"result not serialisable: {exc}"))


class JobRunner:
    """The worker's handle on its job process: start, run a batch, kill, restart."""

    def __init__(self, worker: str, events_path: str | None, epoch: float) -> None:
        self._worker = worker
        self._events_path = events_path
        self._epoch = epoch
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: mpc.Connection | None = None
        self.log = EventLog(events_path, worker, epoch)

    def start(self) -> None:
        parent_end, child_end = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_runner_main,
            args=(child_end, self._worker, self._events_path, self._epoch),
            name=f"distq-runner-{self._worker}",
            daemon=True,
        )
        self._proc.start()
        child_end.close()
        self._conn = parent_end
        # Wait until the child can run jobs, so start-up never counts against a time limit.
        try:
            ready = parent_end.poll(_START_TIMEOUT_S) and parent_end.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise RuntimeError(f"the job process did not start within {_START_TIMEOUT_S:g} s")

    def run(
        self,
        jobs: Sequence[WireJob],
        *,
        on_result: Callable[[Result], None],
        on_tick: Callable[[], bool],
        tick_s: float,
    ) -> bool:
        """Run ``jobs``; each outcome goes to ``on_result`` as it happens.

        ``on_tick`` is called at least every ``tick_s`` (heartbeats, flushing reports);
        when it returns True the batch is abandoned and the unfinished jobs are left
        without a result. Returns False when abandoned.
        """
        queue = list(jobs)
        while queue:
            if self._proc is None or not self._proc.is_alive():
                self.start()
            assert self._conn is not None
            self._conn.send([(j[0], j[3], j[1], j[2]) for j in queue])
            index = 0
            started = time.monotonic()
            while index < len(queue):
                job_id, _task, _args, attempt, time_limit_s, _batch = queue[index]
                limit_at = started + time_limit_s if time_limit_s else None
                wire, ended = self._next(limit_at, tick_s)
                if wire is not None:
                    on_result(self._result(wire))
                    index += 1
                    started = time.monotonic()
                    if on_tick():
                        self.kill()
                        return False
                    continue
                if ended == "tick":
                    if on_tick():
                        self.kill()
                        return False
                    continue
                if ended == "time_limit":
                    self.kill()
                    reason = f"time limit of {time_limit_s:g} s exceeded"
                else:
                    code = self._reap()
                    reason = f"job process exited with code {code}"
                self.log.write("runner_killed", job=job_id, attempt=attempt, reason=reason)
                on_result(Result(job_id, False, None, reason, self._worker, attempt))
                index += 1
                break
            queue = queue[index:]
            on_tick()
        return True

    def _next(self, limit_at: float | None, tick_s: float) -> tuple[_WireResult | None, str]:
        """Wait for the next result, the time limit, a tick, or the child's death."""
        assert self._conn is not None and self._proc is not None
        now = time.monotonic()
        timeout = tick_s if limit_at is None else max(0.0, min(tick_s, limit_at - now))
        if self._conn.poll(0) or mpc.wait([self._conn, self._proc.sentinel], timeout):
            if self._conn.poll(0):
                try:
                    return self._conn.recv(), "result"
                except (EOFError, OSError):
                    return None, "died"
            return None, "died"
        if limit_at is not None and time.monotonic() >= limit_at:
            return None, "time_limit"
        return None, "tick"

    def _result(self, wire: _WireResult) -> Result:
        job_id, attempt, ok, value, error = wire
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

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive() and self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._proc.join(2)
        self.kill()
        self.log.close()
