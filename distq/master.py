"""The master: serves a JobBoard to workers over an authenticated manager connection.

The board runs in this process (no separate server process). Around the stock manager
server it adds what the tutorials lack: a bounded, logged handshake (``auth_rejected``,
``handshake_timeout``), ``TCP_NODELAY``, and a callback when a worker's connection closes,
so that worker's leases return to the queue at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from multiprocessing import connection
from multiprocessing.context import AuthenticationError
from multiprocessing.managers import Server
from traceback import format_exc
from typing import Any, TextIO

from distq.board import JobBoard
from distq.errors import EXIT_INTERRUPTED, EXIT_OK, UsageError
from distq.events import EventLog
from distq.jobs import Result, WireJob, WireResult
from distq.protocol import DistqManager, format_address, set_recv_timeout

__all__ = ["BoardService", "JobSpec", "MasterConfig", "current_service", "run_master"]

_connection_of_thread = threading.local()
_service: BoardService | None = None


def current_service() -> BoardService:
    if _service is None:
        raise RuntimeError("no board service is being served in this process")
    return _service


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to submit: what the jobs file or ``--task/--count`` describe."""

    task: str
    args: tuple[Any, ...] = ()
    job_id: int | None = None
    time_limit_s: float | None = None


@dataclass(frozen=True, slots=True)
class MasterConfig:
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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        conn = getattr(_connection_of_thread, "conn", None)
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

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify_all()

    def connected_workers(self) -> int:
        with self._cond:
            return len(self._conn_of_worker)

    def _lease(self, worker: str, max_n: int, wait_s: float) -> tuple[list[WireJob], bool]:
        conn = getattr(_connection_of_thread, "conn", None)
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


class DistqServer(Server):
    """The stock manager server plus handshake accounting and connection tracking."""

    service: BoardService
    log: EventLog
    listener: connection.Listener
    authkey: bytes
    address: tuple[str, int]

    def attach(self, service: BoardService, log: EventLog) -> None:
        self.service = service
        self.log = log
        self.stop_event = threading.Event()
        self._handshakes = threading.BoundedSemaphore(service.config.max_pending_handshakes)
        self._pending_lock = threading.Lock()
        self._pending = 0  # connections whose handshake has not ended yet
        self._open = 0  # connections accepted and not yet closed (handshakes included)
        # Python before 3.13 listens with a backlog of 16: a burst of connecting workers
        # would see dropped SYNs and a one-second retransmit. listen() again resizes it.
        sock = getattr(getattr(self.listener, "_listener", None), "_socket", None)
        if isinstance(sock, socket.socket):
            sock.listen(max(service.config.max_pending_handshakes, 128))
        self._accepter = threading.Thread(target=self.accepter, name="accepter", daemon=True)
        self._accepter.start()

    def accepter(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn = self.listener.accept()
            except OSError:
                if self.stop_event.is_set():
                    return
                continue
            if not self._handshakes.acquire(blocking=False):
                self.log.write(
                    "auth_rejected",
                    peer=_peer(conn),
                    kind="overload",
                    reason="too many pending handshakes",
                )
                conn.close()
                continue
            with self._pending_lock:
                self._pending += 1
                self._open += 1
            threading.Thread(target=self.handle_request, args=(conn,), daemon=True).start()

    def pending_handshakes(self) -> int:
        with self._pending_lock:
            return self._pending

    def open_connections(self) -> int:
        """Accepted connections not closed yet: a worker between its handshake and its
        first call counts, so a stopping master still answers it."""
        with self._pending_lock:
            return self._open

    def _handle_request(self, c: connection.Connection) -> None:
        try:
            try:
                request = self._handshake(c)
            finally:
                with self._pending_lock:
                    self._pending -= 1
                self._handshakes.release()
            if request is not None:
                self._dispatch(c, request)  # a worker's whole session, until it hangs up
        finally:
            with self._pending_lock:
                self._open -= 1

    def _handshake(self, c: connection.Connection) -> Any:
        """Authenticate both ways and read the first request, or log why not (-> None)."""
        peer = "?"
        try:
            with socket.socket(fileno=c.fileno()) as sock:
                try:
                    peer = format_address(sock.getpeername())
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    set_recv_timeout(sock, self.service.config.handshake_timeout_s)
                finally:
                    sock.detach()
            connection.deliver_challenge(c, self.authkey)
            connection.answer_challenge(c, self.authkey)
            request = c.recv()
            with socket.socket(fileno=c.fileno()) as sock:
                set_recv_timeout(sock, None)
                sock.detach()
        except BlockingIOError:
            self.log.write("handshake_timeout", peer=peer)
            return None
        except AuthenticationError as exc:
            self.log.write("auth_rejected", peer=peer, kind="bad_key", reason=str(exc))
            return None
        except (OSError, EOFError, AssertionError) as exc:
            # Garbage, a peer that hung up mid-handshake, or a non-manager client.
            reason = str(exc) or type(exc).__name__
            self.log.write("auth_rejected", peer=peer, kind="protocol", reason=reason)
            return None
        return request

    def _dispatch(self, c: connection.Connection, request: Any) -> None:
        try:
            _ignore, funcname, args, kwds = request
            if funcname not in self.public:
                raise ValueError(f"{funcname!r} unrecognized")
            func = getattr(self, funcname)
        except Exception:
            msg: tuple[str, Any] = ("#TRACEBACK", format_exc())
        else:
            try:
                msg = ("#RETURN", func(c, *args, **kwds))
            except Exception:
                msg = ("#TRACEBACK", format_exc())
        with contextlib.suppress(Exception):  # the peer is gone; handle_request closes it
            c.send(msg)

    def serve_client(self, conn: connection.Connection) -> None:
        _connection_of_thread.conn = conn
        try:
            super().serve_client(conn)
        finally:
            _connection_of_thread.conn = None
            self.service.connection_closed(conn)

    def close(self) -> None:
        self.stop_event.set()
        self.listener.close()


def _peer(conn: connection.Connection) -> str:
    try:
        with socket.socket(fileno=conn.fileno()) as sock:
            try:
                return format_address(sock.getpeername())
            finally:
                sock.detach()
    except OSError:
        return "?"


class _ServedManager(DistqManager):
    _registry: Any
    _serializer: str

    def get_server(self) -> DistqServer:
        return DistqServer(self._registry, self._address, self._authkey, self._serializer)


def result_line(result: Result) -> str:
    """``json.dumps(result.to_json_dict(), default=repr) + "\\n"``, byte for byte.

    Built directly when the value is an int, a str or None and the strings are strings
    (nearly always): the stock path costs a few microseconds per line, more than the
    board spends on the job.
    """
    value, error, worker = result.value, result.error, result.worker
    kind = type(value)
    if kind is int:
        value_json = f"{value}"
    elif kind is str:
        value_json = _encode_str(value)
    elif value is None:
        value_json = "null"
    else:
        return _encode_json(result.to_json_dict()) + "\n"
    if type(worker) is not str or not (error is None or type(error) is str):
        return _encode_json(result.to_json_dict()) + "\n"
    return (
        f'{{"job": {result.job_id}, "ok": {"true" if result.ok else "false"}, '
        f'"value": {value_json}, "error": {"null" if error is None else _encode_str(error)}, '
        f'"worker": {_encode_str(worker)}, "attempt": {result.attempt}}}\n'
    )


_encode_json = json.JSONEncoder(default=repr).encode  # json.dumps would build one per call
_encode_str = encode_basestring_ascii  # what that encoder uses for every string


class _ResultSink:
    """Terminal results as JSON lines, flushed by the main loop and at exit."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.count = 0
        self.failed = 0

    def __call__(self, results: list[Result]) -> None:
        self.count += len(results)
        self.failed += sum(not result.ok for result in results)
        self.stream.write("".join([result_line(result) for result in results]))

    def flush(self) -> None:
        self.stream.flush()


def run_master(
    config: MasterConfig,
    authkey: bytes,
    jobs: Iterable[JobSpec],
    *,
    results: TextIO,
    ready: TextIO,
    events_path: str | None = None,
) -> int:
    """Serve ``jobs`` until each has its terminal result. Returns the exit code."""
    global _service
    if not authkey:
        raise UsageError("the authkey is empty; set DISTQ_AUTHKEY or use --authkey-file")
    if not is_loopback(config.host) and len(authkey) < 16:
        raise UsageError(
            f"refusing to bind {config.host} (not loopback) with an authkey shorter than "
            "16 bytes: anyone who guesses it can run code here (pickle)"
        )
    log = EventLog(events_path, "master")
    board = JobBoard(
        clock=log.now,
        lease_timeout_s=config.lease_timeout_s,
        max_attempts=config.max_attempts,
        batch_size=config.batch_size,
        record_events=log.enabled,
    )
    for spec in jobs:
        board.submit(
            spec.task,
            spec.args,
            job_id=spec.job_id,
            time_limit_s=spec.time_limit_s
            if spec.time_limit_s is not None
            else config.time_limit_s,
        )
    sink = _ResultSink(results)
    service = BoardService(board, log, sink, config)
    manager = _ServedManager(address=(config.host, config.port), authkey=authkey)
    try:
        server = manager.get_server()
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from None
    _service = service
    interrupted: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        interrupted.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with service._cond:  # the submissions' events go out before READY
            service._flush()
        server.attach(service, log)
        address = format_address(server.address)
        log.write("master_ready", address=address, jobs=len(board), pid=os.getpid())
        ready.write(f"READY {address}\n")
        ready.flush()
        while not interrupted:
            if service.tick():
                break
            sink.flush()
            time.sleep(config.tick_s)
        service.stop()
        grace_end = time.monotonic() + config.shutdown_grace_s
        # Within the grace period, wait for the workers to leave and for every connection
        # to close: a worker that has shaken hands but not yet said hello is still told
        # the work is done, and every handshake under way ends in the log (auth_rejected,
        # handshake_timeout).
        while (
            (service.connected_workers() or server.open_connections())
            and time.monotonic() < grace_end
            and not interrupted
        ):
            time.sleep(0.02)
        server.close()
        sink.flush()
        log.write(
            "master_stopped",
            results=sink.count,
            unfinished=board.unfinished,
            requeued=board.requeues,
            duplicates=board.duplicates,
            signal=interrupted[0] if interrupted else None,
        )
        window = ""
        if service.first_lease_at is not None and service.last_result_at is not None:
            window_s = max(0.0, service.last_result_at - service.first_lease_at)
            window = f", {window_s:.6f} s from first lease to last result"
        print(
            f"distq master: {len(board)} jobs, {sink.count} results "
            f"({sink.count - sink.failed} ok, {sink.failed} failed), {board.unfinished} unfinished, "
            f"{board.requeues} requeued, {board.duplicates} duplicates dropped{window}",
            file=sys.stderr,
        )
        if interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _service = None
        log.close()
