"""The worker: connect, lease jobs, run them under a time limit, heartbeat, report.

Everything that talks to the master happens on the main thread, one call at a time;
signals only set a flag (a signal that interrupted a proxied call would desynchronise
the connection, DESIGN P3). On master loss or a refused key the worker exits with one
line and the exit code documented in ``distq.errors``.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import AuthenticationError
from typing import Any

from distq.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    AuthRejected,
    DistqError,
    HandshakeTimeout,
    MasterBusy,
    MasterLost,
    MasterUnreachable,
    OutputFailed,
    UsageError,
)
from distq.events import EventLog
from distq.jobs import Result, WireJob, result_to_wire
from distq.protocol import (
    BoardProxy,
    ClientSettings,
    DistqManager,
    MasterBusyError,
    format_address,
)
from distq.runner import JobRunner

__all__ = ["WorkerConfig", "run_worker"]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    address: tuple[str, int]
    name: str
    prefetch: int = 256
    poll_s: float = 1.0
    idle_exit_s: float | None = None
    connect_timeout_s: float = 10.0
    handshake_timeout_s: float = 5.0
    rpc_timeout_s: float = 60.0
    report_every_s: float = 0.02
    lease_work_s: float = 0.1  # size leases to about this much work, by observed job time
    reconnect_s: float = 0.0  # on a lost connection, try this long to rejoin (0: exit 5)


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _Stop:
    """Set by SIGINT/SIGTERM; checked between calls, never raised inside one."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        self.signum = signum

    def __bool__(self) -> bool:
        return self.signum is not None


def _connect(
    config: WorkerConfig,
    authkey: bytes,
    within_s: float | None = None,
    stop: _Stop | None = None,
) -> BoardProxy:
    """Connect, retrying with backoff for ``within_s`` (default: the connect timeout)."""
    where = format_address(config.address)
    if within_s is None:
        within_s = config.connect_timeout_s
    # One attempt never outlasts the time there is (a rejoin may have little left).
    ClientSettings.connect_timeout_s = max(0.05, min(config.connect_timeout_s, 5.0, within_s))
    ClientSettings.handshake_timeout_s = max(0.05, min(config.handshake_timeout_s, within_s))
    ClientSettings.rpc_timeout_s = config.rpc_timeout_s
    give_up_at = time.monotonic() + within_s
    delay_s = 0.05
    while True:
        manager = DistqManager(config.address, authkey)
        try:
            manager.connect()
            return manager.board()
        except AuthenticationError:
            raise AuthRejected(f"the master at {where} rejected our authkey") from None
        except TimeoutError:
            raise HandshakeTimeout(
                f"the peer at {where} accepted the connection but did not answer the "
                f"handshake within {config.handshake_timeout_s:g} s"
            ) from None
        except (ConnectionError, OSError, EOFError) as exc:
            if stop is not None and stop.signum is not None:
                raise _Interrupted(stop.signum, "while connecting to the master") from None
            if time.monotonic() + delay_s > give_up_at and isinstance(exc, MasterBusyError):
                raise MasterBusy(
                    f"the master at {where} was busy (too many handshakes pending) "
                    f"for {within_s:g} s; try again later or raise --connect-timeout-s"
                ) from None
            if time.monotonic() + delay_s > give_up_at:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise MasterUnreachable(
                    f"no master at {where} after {within_s:g} s ({reason})"
                ) from None
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 1.0)


class _Session:
    """One worker's conversation with the master: leases, buffered reports, heartbeats.

    With ``rejoin`` set, a lost connection is replaced (``rejoin`` reconnects and says
    hello again, or raises) and the call is made again: every call is safe to repeat (a
    repeated report is dropped as a duplicate; leases lost with a reply were taken back
    by the rejoin)."""

    def __init__(
        self,
        board: BoardProxy,
        config: WorkerConfig,
        heartbeat_s: float,
        rejoin: Callable[[MasterLost, float], tuple[BoardProxy, dict[str, Any]]] | None = None,
    ) -> None:
        self.board = board
        self.config = config
        self.heartbeat_s = heartbeat_s
        self.rejoin = rejoin
        self.buffer: list[Result] = []
        self.buffered_at = 0.0
        self.ahead: list[WireJob] = []  # leased while the previous batch ran
        self.last_contact = time.monotonic()
        self.stop_requested_by_master = False
        self.master_id: str | None = None  # from the first hello; a rejoin must match it

    def call(self, method: str, *args: Any) -> Any:
        give_up_at: float | None = None  # one budget for the call, however many rejoins
        while True:
            try:
                reply = getattr(self.board, method)(*args)
            except (EOFError, ConnectionError, BlockingIOError) as exc:
                lost = MasterLost(f"lost the master at {self._where} ({type(exc).__name__})")
            except OSError as exc:
                lost = MasterLost(f"lost the master at {self._where} ({exc.strerror or exc})")
            else:
                self.last_contact = time.monotonic()
                if method == "hello":
                    self._check_same_master(reply)
                return reply
            if self.rejoin is None or self.stop_requested_by_master:
                raise lost from None  # (once the master said stop, every job is terminal)
            if give_up_at is None:
                give_up_at = time.monotonic() + self.config.reconnect_s
            self.board.abandon()
            self.board, settings = self.rejoin(lost, give_up_at)
            self._check_same_master(settings)
            self.ahead = []  # taken back by the rejoin
            if method == "hello":  # the rejoin said it
                self.last_contact = time.monotonic()
                return settings

    def _check_same_master(self, settings: dict[str, Any]) -> None:
        """A rejoin must reach the master it left: a restarted master numbers its jobs
        afresh, so a result for "job 3" would be accepted for a different job."""
        master_id = settings.get("master_id")
        if self.master_id is None:
            self.master_id = master_id
        elif master_id != self.master_id:
            raise MasterLost(
                f"lost the master at {self._where}: a different master answers there now"
            )

    @property
    def _where(self) -> str:
        return format_address(self.config.address)

    def add(self, result: Result) -> None:
        if not self.buffer:
            self.buffered_at = time.monotonic()
        self.buffer.append(result)

    def flush(self) -> None:
        if self.buffer:
            results, self.buffer = self.buffer, []
            wire = [result_to_wire(result) for result in results]
            if self.call("report", self.config.name, wire):
                self.stop_requested_by_master = True

    def lease(self, want: int, wait_s: float | None = None) -> tuple[list[WireJob], bool]:
        """Long-poll for up to ``want`` jobs; what is buffered is reported in the same call."""
        name = self.config.name
        if wait_s is None:  # a long poll must end well within the reply timeout
            wait_s = min(self.config.poll_s, self.config.rpc_timeout_s / 2)
        if not self.buffer:
            return self.call("lease", name, want, wait_s)  # type: ignore[no-any-return]
        results, self.buffer = self.buffer, []
        wire = [result_to_wire(result) for result in results]
        return self.call("report_and_lease", name, wire, want, wait_s)  # type: ignore[no-any-return]

    def lease_ahead(self, want: int, stop: _Stop) -> None:
        """Lease the next batch, without waiting, while the job process runs this one.

        Short jobs would otherwise leave the job process idle for a round trip to the
        master after every batch, and the master idle while the batch runs.
        """
        if stop or self.stop_requested_by_master:
            return
        self.ahead, stop_now = self.lease(want, 0.0)
        if stop_now:
            self.stop_requested_by_master = True

    def tick(self, stop: _Stop) -> bool:
        """Report or heartbeat when due. Returns True when the batch should be abandoned."""
        now = time.monotonic()
        if self.buffer and now - self.buffered_at >= self.config.report_every_s:
            self.flush()
        elif now - self.last_contact >= self.heartbeat_s and self.call(
            "heartbeat", self.config.name
        ):
            self.stop_requested_by_master = True
        # Once the master stops, every job is terminal: what we still run is a duplicate.
        return bool(stop) or self.stop_requested_by_master


class _Interrupted(Exception):
    """A signal arrived while the worker was (re)connecting: nothing of ours to hand back."""

    def __init__(self, signum: int, doing: str) -> None:
        super().__init__(signum, doing)
        self.signum = signum
        self.doing = doing


REJOINING = "while rejoining the master; it takes back what this worker held"


def _rejoin(
    config: WorkerConfig,
    authkey: bytes,
    log: EventLog,
    stop: _Stop,
    lost: MasterLost,
    give_up_at: float,
) -> tuple[BoardProxy, dict[str, Any]]:
    """Reconnect before ``give_up_at`` and say hello again as the same worker; raises
    ``lost`` (exit 5) when the master is not back in time."""
    started = time.monotonic()
    while (remaining := give_up_at - time.monotonic()) > 0:
        if stop.signum is not None:
            raise _Interrupted(stop.signum, REJOINING)
        try:
            board = _connect(config, authkey, remaining, stop=stop)
        except MasterUnreachable:
            break  # it retried for all the time there was
        except HandshakeTimeout:
            continue  # a peer that does not answer yet (a partition): try again in time
        try:
            settings = board.hello(config.name, os.getpid(), socket.gethostname(), True)
        except (EOFError, OSError):
            board.abandon()
            time.sleep(min(0.2, max(0.0, give_up_at - time.monotonic())))
            continue
        except ValueError as exc:  # the name is taken by another process
            raise UsageError(str(exc)) from None
        log.write(
            "reconnected",
            master=format_address(config.address),
            after_s=round(time.monotonic() - started, 3),
            reason=str(lost),
        )
        return board, settings
    if stop.signum is not None:
        raise _Interrupted(stop.signum, REJOINING)
    raise MasterLost(f"{lost}; not back within {config.reconnect_s:g} s") from None


def run_worker(config: WorkerConfig, authkey: bytes, events_path: str | None = None) -> int:
    """Work until the master says stop. Returns the exit code; raises DistqError."""
    if not authkey:
        raise UsageError("the authkey is empty; set DISTQ_AUTHKEY or use --authkey-file")
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    log = EventLog(events_path, config.name)
    runner = JobRunner(config.name, events_path, log.epoch)
    try:
        runner.start(fork=True)  # no thread, no connection yet: nothing to inherit
        board = _connect(config, authkey, stop=stop)
        rejoin = None
        if config.reconnect_s > 0:
            rejoin = functools.partial(_rejoin, config, authkey, log, stop)
        session = _Session(board, config, 1.0, rejoin)
        try:
            settings = session.call("hello", config.name, os.getpid(), socket.gethostname())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        session.heartbeat_s = float(settings["heartbeat_interval_s"])
        log.write("connected", master=format_address(config.address))
        runner.wait_ready()
        idle_since = time.monotonic()
        job_s = config.lease_work_s  # running mean of one job's time; the first lease is 1 job
        while not stop and not session.stop_requested_by_master and log.error is None:
            want = max(1, min(config.prefetch, int(config.lease_work_s / max(job_s, 1e-6))))
            if session.ahead:
                jobs, session.ahead = session.ahead, []
            else:
                jobs, stop_now = session.lease(want)
                if stop_now:
                    break
            if not jobs:
                if (
                    config.idle_exit_s is not None
                    and time.monotonic() - idle_since >= config.idle_exit_s
                ):
                    session.call("bye", config.name)
                    log.write("worker_exit", code=EXIT_OK, reason="idle")
                    print(
                        f"distq worker {config.name}: no work for {config.idle_exit_s:g} s, exiting",
                        file=sys.stderr,
                    )
                    return EXIT_OK
                continue
            batch_started = time.monotonic()
            finished = runner.run(
                jobs,
                on_result=session.add,
                on_tick=lambda: session.tick(stop),
                tick_s=min(session.heartbeat_s, 0.2),
                # Several jobs to a lease: they are short, lease the next batch meanwhile.
                # (With --prefetch 1 a worker never holds more than its one job.)
                on_sent=functools.partial(session.lease_ahead, want, stop)
                if len(jobs) > 1
                else None,
            )
            idle_since = time.monotonic()
            job_s = 0.5 * job_s + 0.5 * (idle_since - batch_started) / len(jobs)
            if not finished:
                break
        if log.error is not None:  # a full disk: leave before work goes unrecorded
            session.flush()
            session.call("bye", config.name)  # its leases go back, no attempt counted
            raise OutputFailed(
                f"cannot write --events {events_path}: {log.error.strerror or log.error}; "
                "left the master"
            )
        if stop:
            session.flush()
            session.call("bye", config.name)
            log.write(
                "worker_exit",
                code=EXIT_INTERRUPTED if stop.signum == signal.SIGINT else EXIT_OK,
                reason=f"signal {stop.signum}",
            )
            print(
                f"distq worker {config.name}: stopped by signal {stop.signum}, leases handed back",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED if stop.signum == signal.SIGINT else EXIT_OK
        session.flush()
        session.call("bye", config.name)
        log.write("worker_exit", code=EXIT_OK, reason="master finished")
        return EXIT_OK
    except _Interrupted as exc:
        code = EXIT_INTERRUPTED if exc.signum == signal.SIGINT else EXIT_OK
        log.write("worker_exit", code=code, reason=f"signal {exc.signum} {exc.doing}")
        print(
            f"distq worker {config.name}: stopped by signal {exc.signum} {exc.doing}",
            file=sys.stderr,
        )
        return code
    except DistqError as exc:  # every documented exit is in the log, with its reason
        log.write("worker_exit", code=exc.exit_code, reason=str(exc))
        raise
    finally:
        runner.close()
        log.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
