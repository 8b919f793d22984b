"""The board service: the object the master's manager serves to workers and clients.

It wraps the pure ``JobBoard`` in one lock, long-polls leases, tracks which connection
belongs to which worker, takes submitters' jobs within their windows and hands their
results back, and writes the board's results and events as they come out.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any

from distq.board import JobBoard
from distq.events import EventLog
from distq.jobs import BUILTIN_TASKS, Result, WireJob, WireResult
from distq.journal import Journal
from distq.submissions import (
    DEFAULT_WINDOW,
    Refusal,
    Session,
    Sessions,
    WireOutcome,
    WireSubmission,
    refusal_reason,
)

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
    submit_window: int = DEFAULT_WINDOW  # jobs in flight per submitter session, at most

    @property
    def heartbeat_interval_s(self) -> float:
        """How often workers heartbeat: four chances before a lease expires."""
        return self.lease_timeout_s / 4


class JournalDown(BaseException):
    """A journal write failed: the call gets no reply, and the master stops serving.

    Not an ``Exception``: the manager's server would send it back to the caller as an
    error; it ends the connection instead (``DistqServer.handle_request``)."""


class BoardService:
    """The object workers call through their proxy; one lock around the board."""

    def __init__(
        self,
        board: JobBoard,
        log: EventLog,
        write_results: Callable[[list[Result]], None],
        config: MasterConfig,
        journal: Journal | None = None,
    ) -> None:
        self.board = board
        self.journal = journal  # with one, changes are committed before results go out
        self.log = log
        self._write_results = write_results
        self.config = config
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        # Submitters wait here for room in their window or for results; one lock for all.
        self._delivered = threading.Condition(lock)
        self.sessions = Sessions(config.submit_window)
        self._known_tasks: set[str] = set(BUILTIN_TASKS)  # task references seen well-formed
        self._conn_of_worker: dict[str, object] = {}
        self._worker_of_conn: dict[int, str] = {}
        self._identity: dict[str, tuple[int, str]] = {}  # worker -> (pid, host) at hello
        # A rejoining worker checks it is the same master; a journal keeps it across restarts.
        self.master_id = journal.master_id if journal is not None else secrets.token_hex(8)
        self.stopping = False
        self.journal_error: Exception | None = None  # the failed journal write, once one failed
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
            handed_back: list[int] = []
            if rejoin and self.board.held_by(worker):
                handed_back = self.board.worker_lost(worker, "worker rejoined", count_attempt=False)
                self._flush()  # the hand-back is in the log before the rejoin
            if self.journal is not None and worker not in self._identity:
                # A restarted master waits for it to rejoin.
                self._journal_write(self.journal.worker_joined, worker)
            self._conn_of_worker[worker] = conn
            self._identity[worker] = (pid, host)
            if conn is not None:
                self._worker_of_conn[id(conn)] = worker
            if rejoin:
                self.log.write(
                    "worker_rejoined", worker=worker, pid=pid, host=host, handed_back=handed_back
                )
            else:
                self.log.write("worker_joined", worker=worker, pid=pid, host=host)
            self._flush()
        return {
            "lease_timeout_s": self.config.lease_timeout_s,
            "heartbeat_interval_s": self.config.heartbeat_interval_s,
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
            handed_back: list[int] = []
            if self.board.held_by(worker):
                handed_back = self.board.worker_lost(worker, "worker left", count_attempt=False)
            if self.journal is not None:
                self._journal_write(self.journal.worker_left, worker)
            # The jobs handed back: a check tells them from attempts that failed.
            self.log.write("worker_left", worker=worker, handed_back=handed_back)
            self._flush()

    # -- called by the server and the main loop ---------------------------------------------

    def connection_closed(self, conn: object) -> None:
        with self._cond:
            self.sessions.connection_closed(id(conn))
            worker = self._worker_of_conn.pop(id(conn), None)
            if worker is None or self._conn_of_worker.get(worker) is not conn:
                return
            del self._conn_of_worker[worker]
            self.board.worker_lost(worker, "connection closed")
            if self.journal_error is None:
                with contextlib.suppress(JournalDown):  # the main loop stops the master
                    self._flush()

    # -- called by submitters (distq.client.Submitter) -----------------------------------

    def open_session(self, collect: bool, window: int | None = None) -> dict[str, Any]:
        """Start a submitter session; its jobs' results are kept for it when ``collect``."""
        with self._cond:
            if not self.accepting:
                raise ValueError("this master does not accept submissions (start it with --open)")
            session = self.sessions.open(collect, window)
            self._session(session.name)  # on this connection
            return {"session": session.name, "window": session.window}

    def reserve_ids(self, session: str, count: int) -> int:
        """A block of ``count`` fresh job ids for the submitter to assign; the first."""
        with self._cond:
            self._session(session)
            return self.board.reserve_ids(max(1, min(count, 1 << 20)))

    def submit_jobs(
        self, session: str, jobs: list[WireSubmission], wait_s: float
    ) -> tuple[int, list[Refusal]]:
        """Take jobs in order while the session's window has room (waiting up to
        ``wait_s`` for some when it has none). Returns how many of ``jobs`` were taken
        (the rest are to be sent again) and which of those were refused, with why.

        The reply is the acknowledgement: a submitter's ``flush()`` counts every taken
        job as the master's. Every taken job is on the board when ``_accept_jobs``
        returns; whatever must hold before the reply (a journal committed) goes between
        that and the ``return`` below.
        """
        with self._cond:
            owner = self._session(session)
            # A full window frees one job at a time: wait for a quarter of it (or all the
            # batch) rather than take a few jobs per round trip and be sent the rest again.
            wanted = min(len(jobs), max(1, owner.window // 4))
            self._delivered.wait_for(
                lambda: not self.accepting or self.sessions.room(owner) >= wanted or self.stopping,
                timeout=max(0.0, min(wait_s, 5.0)),
            )
            if self.journal_error is not None:
                raise JournalDown
            taken, refused = self._accept_jobs(owner, jobs)
            self._flush()
            return taken, refused

    def fetch_results(self, session: str, max_n: int, wait_s: float) -> list[WireOutcome]:
        """Up to ``max_n`` terminal results of the session's jobs, waiting up to ``wait_s``
        for the first."""
        with self._cond:
            owner = self._session(session)
            connection = id(getattr(_caller, "conn", None))
            self.sessions.fetching_on(owner, connection)
            self._delivered.wait_for(
                lambda: bool(owner.results) or self.stopping,
                timeout=max(0.0, min(wait_s, 5.0)),
            )
            if self.journal_error is not None:
                raise JournalDown
            return self.sessions.take_results(owner, max(1, max_n), connection)

    def end_session(self, session: str) -> None:
        with self._cond:
            self.sessions.end(session)

    def _session(self, name: str) -> Session:
        """The named session, noting the connection this call came on."""
        session = self.sessions.get(name)
        conn = getattr(_caller, "conn", None)
        if conn is not None:
            self.sessions.seen_on(session, id(conn))
        return session

    def close_submissions(self) -> None:
        """No more jobs will come: the master stops once every job is terminal."""
        with self._cond:
            self.accepting = False
            if self.journal is not None:
                self._journal_write(self.journal.set_accepting, False)
            self.log.write("submissions_closed", jobs=len(self.board))
            self._flush()
            self._delivered.notify_all()  # a submitter waiting for room is refused now

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

    def sync_outputs(self, flush: Callable[[], None], results_size: Callable[[], int]) -> None:
        """Flush the results output; with a journal, record that every result journaled
        so far is in both outputs (a restart looks for later ones only after these)."""
        with self._cond:
            flush()
            if self.journal is not None:
                self._journal_write(self.journal.outputs_written, results_size(), self.log.size())

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify_all()
            self._delivered.notify_all()

    def connected_workers(self) -> int:
        with self._cond:
            return len(self._conn_of_worker)

    def not_seen(self, workers: set[str]) -> set[str]:
        """Those of ``workers`` that have not said hello to this master."""
        with self._cond:
            return workers - set(self._identity)

    def _lease(self, worker: str, max_n: int, wait_s: float) -> tuple[list[WireJob], bool]:
        conn = getattr(_caller, "conn", None)
        deadline = time.monotonic() + max(0.0, min(wait_s, 30.0))
        while True:
            if self.journal_error is not None:
                raise JournalDown
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

    def _accept_jobs(
        self, session: Session, jobs: list[WireSubmission]
    ) -> tuple[int, list[Refusal]]:
        """Put jobs on the board in order until the session's window is full; refuse the
        malformed ones, and every one once submissions are closed. Returns (taken,
        refused): what the reply acknowledges."""
        if not self.accepting:
            return len(jobs), [(job[0], "submissions are closed") for job in jobs]
        if self.stopping:  # interrupted: no room will come
            return len(jobs), [(job[0], "the master is stopping") for job in jobs]
        room = self.sessions.room(session)
        submit = self.board.submit
        default_limit = self.config.time_limit_s
        known = self._known_tasks
        accepted: list[int] = []
        refused: list[Refusal] = []
        taken = 0
        for job_id, task, args, limit in jobs:
            if len(accepted) >= room:
                break
            reason = None
            if not (type(task) is str and task in known and type(args) is tuple and limit is None):
                reason = refusal_reason(task, args, limit)
                if reason is None and len(known) < 1024:
                    known.add(task)  # well-formed: the next jobs of this task skip the check
            if reason is None:
                try:
                    submit(
                        task,
                        tuple(args),
                        job_id=job_id,
                        time_limit_s=default_limit if limit is None else limit,
                    )
                except ValueError as exc:  # an id submitted twice
                    reason = str(exc)
            if reason is None:
                accepted.append(job_id)
            else:
                refused.append((job_id, reason))
            taken += 1
        self.sessions.owns(session, accepted)
        return taken, refused

    def _apply(self, worker: str, results: list[WireResult]) -> None:
        if self.journal_error is not None:
            raise JournalDown  # nothing more is accepted that could not be journaled
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
        """Write new terminal results and drained events; wake waiting leases. With a
        journal, the changes are committed first: nothing goes out that a crash could undo."""
        if self.journal is not None:
            self._journal_write(self.journal.commit, self.board)
        results = self.board.drain_results()
        if results:
            self._write_results(results)
            self.last_result_at = time.monotonic()
            if self.sessions.route(results):
                self._delivered.notify_all()
        if self.log.enabled:
            self.log.write_all(self.board.drain_events())
        if self.board.leasable or self.board.finished:
            if self.board.finished and not self.accepting:
                self.stopping = True
            self._cond.notify_all()

    def _journal_write(self, write: Callable[..., None], *args: Any) -> None:
        """Write to the journal under the lock. Once a write failed (a full disk, an I/O
        error), nothing more is written, journaled or acknowledged: JournalDown."""
        if self.journal_error is not None:
            raise JournalDown
        try:
            write(*args)
        except (sqlite3.Error, OSError) as exc:
            self.journal_error = exc
            self._cond.notify_all()  # waiting leases and submitters give up
            self._delivered.notify_all()
            raise JournalDown from exc

    def unjournaled_results(self) -> list[Result]:
        """After a journal failure: the results accepted since the last commit (their
        reporters got no reply), for the master to hand over on stderr."""
        with self._cond:
            return self.board.drain_results()
