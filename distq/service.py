"""The board service: the object the master's manager serves to workers and clients.

It wraps the pure ``JobBoard`` in one lock, long-polls leases, tracks which connection
belongs to which worker, and writes the board's results and events as they come out.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any

from distq.board import JobBoard
from distq.events import EventLog
from distq.jobs import Result, WireJob, WireResult

__all__ = ["BoardService", "MasterConfig", "set_caller"]

# The connection of the call being served on this thread: the server sets it, so a
# call knows which worker connection it came on without that being an argument.
_caller = threading.local()


def set_caller(conn: object) -> None:
    """Make the service calls that follow on this thread come from ``conn``."""
    _caller.conn = conn


@dataclass(frozen=True, slots=True)
class MasterConfig:
    """How the master serves: its address, lease and retry policy, handshake bounds."""

    host: str = "127.0.0.1"
    port: int = 0
    lease_timeout_s: float = 10.0
    time_limit_s: float | None = None
    max_attempts: int = 3
    batch_size: int | None = None
    handshake_timeout_s: float = 5.0
    max_pending_handshakes: int = 128
    shutdown_grace_s: float = 3.0
    tick_s: float = 0.05
    open_submissions: bool = False  # accept jobs from clients until they close submissions


class BoardService:
    """The object workers call through their proxy; one lock around the board."""

    def __init__(
        self,
        board: JobBoard,
        log: EventLog,
        write_results: Callable[[list[Result]], None],
        config: MasterConfig,
    ) -> None:
        self.board = board
        self.log = log
        self._write_results = write_results
        self.config = config
        self._cond = threading.Condition()
        self._conn_of_worker: dict[str, object] = {}
        self._worker_of_conn: dict[int, str] = {}
        self._identity: dict[str, tuple[int, str]] = {}  # worker -> (pid, host) at hello
        self.master_id = secrets.token_hex(8)  # a rejoining worker checks it is the same
        self.stopping = False
        self.accepting = config.open_submissions
        # Throughput window for the summary line: start-up and shutdown stay outside it.
        self.first_lease_at: float | None = None
        self.last_result_at: float | None = None

    # -- called by workers (in the server's per-connection threads) ----------------------

    def hello(self, worker: str, pid: int, host: str, rejoin: bool = False) -> dict[str, Any]:
        """Register a worker on this connection. ``rejoin``: the same worker process (same
        pid and host) is back on a new connection after losing its old one; whatever the
        old connection held goes back to the queue without counting an attempt (the worker
        reports what it finishes of it; the first result wins)."""
        conn = getattr(_caller, "conn", None)
        with self._cond:
            old = self._conn_of_worker.get(worker)
            if old is not None:
                if not rejoin or self._identity.get(worker) != (pid, host):
                    raise ValueError(f"a worker named {worker!r} is already connected")
                self._worker_of_conn.pop(id(old), None)
            if rejoin and self.board.held_by(worker):
                self.board.worker_lost(worker, "worker rejoined", count_attempt=False)
                self._flush()  # the hand-back is in the log before the rejoin
            self._conn_of_worker[worker] = conn
            self._identity[worker] = (pid, host)
            if conn is not None:
                self._worker_of_conn[id(conn)] = worker
            if rejoin:
                self.log.write("worker_rejoined", worker=worker, pid=pid, host=host)
            else:
                self.log.write("worker_joined", worker=worker, pid=pid, host=host)
            self._flush()
        return {
            "lease_timeout_s": self.config.lease_timeout_s,
            "heartbeat_interval_s": self.config.lease_timeout_s / 4,
            "time_limit_s": self.config.time_limit_s,
            "master_id": self.master_id,
        }

    def lease(self, worker: str, max_n: int, wait_s: float) -> tuple[list[WireJob], bool]:
        """Long-poll for up to ``max_n`` jobs. Returns (jobs, stop)."""
        with self._cond:
            self.board.heartbeat(worker)
            return self._lease(worker, max_n, wait_s)

    def report(self, worker: str, results: list[WireResult]) -> bool:
        """Apply a batch of results and failures. Returns True when the worker should stop."""
        with self._cond:
            self.board.heartbeat(worker)
            self._apply(worker, results)
            self._flush()
            return self.stopping

    def report_and_lease(
        self, worker: str, results: list[WireResult], max_n: int, wait_s: float
    ) -> tuple[list[WireJob], bool]:
        """``report`` then ``lease``, in one round trip for the worker."""
        with self._cond:
            self.board.heartbeat(worker)
            self._apply(worker, results)
            self._flush()
            return self._lease(worker, max_n, wait_s)

    def heartbeat(self, worker: str) -> bool:
        with self._cond:
            self.board.heartbeat(worker)
            return self.stopping

    def bye(self, worker: str) -> None:
        """A worker leaving on purpose: its leases go back without counting an attempt."""
        with self._cond:
            conn = self._conn_of_worker.pop(worker, None)
            self._worker_of_conn.pop(id(conn), None)
            if self.board.held_by(worker):
                self.board.worker_lost(worker, "worker left", count_attempt=False)
            self.log.write("worker_left", worker=worker)
            self._flush()

    # -- called by the server and the main loop ---------------------------------------------

    def connection_closed(self, conn: object) -> None:
        with self._cond:
            worker = self._worker_of_conn.pop(id(conn), None)
            if worker is None or self._conn_of_worker.get(worker) is not conn:
                return
            del self._conn_of_worker[worker]
            self.board.worker_lost(worker, "connection closed")
            self._flush()

    def submit(self, specs: list[tuple[str, list[Any], float | None]]) -> list[int]:
        """Add jobs to an open master; returns their ids. Called by ``distq submit``."""
        with self._cond:
            if not self.accepting:
                raise ValueError("this master does not accept submissions (start it with --open)")
            ids = []
            for task, args, limit in specs:
                if limit is None:
                    limit = self.config.time_limit_s
                ids.append(self.board.submit(task, tuple(args), time_limit_s=limit).job_id)
            self._flush()
            return ids

    def close_submissions(self) -> None:
        """No more jobs will come: the master stops once every job is terminal."""
        with self._cond:
            self.accepting = False
            self.log.write("submissions_closed", jobs=len(self.board))
            self._flush()

    def tick(self) -> bool:
        """Expire overdue leases. Returns True once every job is terminal and no more
        can come."""
        with self._cond:
            self.board.expire()
            self._flush()
            return self.board.finished and not self.accepting

    def flush(self) -> None:
        """Write what the board has produced so far (the master: before its READY line)."""
        with self._cond:
            self._flush()

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify_all()

    def connected_workers(self) -> int:
        with self._cond:
            return len(self._conn_of_worker)

    def _lease(self, worker: str, max_n: int, wait_s: float) -> tuple[list[WireJob], bool]:
        conn = getattr(_caller, "conn", None)
        deadline = time.monotonic() + max(0.0, min(wait_s, 30.0))
        while True:
            if self.stopping:
                return [], True
            if conn is not None and self._worker_of_conn.get(id(conn)) != worker:
                return [], False  # not (or no longer) this worker's connection: a rejoin or bye
            jobs = self.board.lease_wire(worker, self._fair_share(max_n))
            if jobs:
                if self.first_lease_at is None:
                    self.first_lease_at = time.monotonic()
                self._flush()
                return jobs, False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return [], False
            self._cond.wait(min(remaining, 0.1))
            # A caller waiting on its reply sends nothing: readable means closed.
            if isinstance(conn, connection.Connection) and conn.poll(0):
                return [], False

    def _apply(self, worker: str, results: list[WireResult]) -> None:
        board = self.board
        for job_id, attempt, ok, value, error in results:
            if ok:
                board.complete(worker, job_id, attempt, value)
            else:
                board.fail(worker, job_id, attempt, error or "error")

    def _fair_share(self, max_n: int) -> int:
        """Split what is leasable among the connected workers, so none sits idle."""
        workers = max(1, len(self._conn_of_worker))
        return max(1, min(max_n, math.ceil(self.board.leasable / workers)))

    def _flush(self) -> None:
        """Write new terminal results and drained events; wake waiting leases."""
        results = self.board.drain_results()
        if results:
            self._write_results(results)
            self.last_result_at = time.monotonic()
        if self.log.enabled:
            self.log.write_all(self.board.drain_events())
        if self.board.leasable or self.board.finished:
            if self.board.finished and not self.accepting:
                self.stopping = True
            self._cond.notify_all()
