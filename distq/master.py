"""The master process: builds the board from the jobs, serves it, prints ``READY
host:port``, runs until every job is terminal (or a signal), then shuts down within a
grace period and prints a summary line.

The parts it puts together: ``service`` (the board behind one lock), ``server`` (the
connections and handshakes), ``output`` (the results file), ``journal`` (with
``--journal``: the board on disk, and resuming from it after a crash).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from distq.board import JobBoard
from distq.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    MIN_AUTHKEY_BYTES,
    OutputFailed,
    UsageError,
    weak_key_message,
)
from distq.events import EventLog
from distq.jobsfile import JobSpec
from distq.journal import Journal, Restored, jobs_digest, resume_outputs
from distq.output import ResultSink, result_line
from distq.protocol import format_address
from distq.server import DistqServer, ServedManager
from distq.service import BoardService, JournalDown, MasterConfig

__all__ = ["BoardService", "JobSpec", "MasterConfig", "run_master"]


def run_master(
    config: MasterConfig,
    authkey: bytes,
    jobs: Iterable[JobSpec],
    *,
    results: TextIO,
    ready: TextIO,
    events_path: str | None = None,
    journal_path: str | None = None,
    journal_fsync: bool = False,
    results_path: str | None = None,
    results_name: str = "stdout",
) -> int:
    """Serve ``jobs`` until each has its terminal result. Returns the exit code.

    With ``journal_path`` the board lives on disk too; an existing journal is resumed
    (``results_path`` names the file behind ``results``, so the restart can read back
    what reached it)."""
    if not authkey:
        raise UsageError("the authkey is empty; set DISTQ_AUTHKEY or use --authkey-file")
    if len(authkey) < MIN_AUTHKEY_BYTES:
        raise UsageError(weak_key_message(len(authkey)))
    specs = list(jobs)
    digest = jobs_digest((s.task, s.args, s.job_id, s.time_limit_s) for s in specs)
    journal = None
    if journal_path is not None:
        journal = Journal.open(
            journal_path, digest=digest, batch_size=config.batch_size, fsync=journal_fsync
        )
    try:
        return _serve(
            config, authkey, specs, results, ready, events_path, journal, results_path, results_name
        )
    finally:
        if journal is not None:
            journal.close()


def _serve(
    config: MasterConfig,
    authkey: bytes,
    specs: list[JobSpec],
    results: TextIO,
    ready: TextIO,
    events_path: str | None,
    journal: Journal | None,
    results_path: str | None,
    results_name: str,
) -> int:
    """Set up (the board, new or resumed; the listener), then the phases of a run:
    announce READY, serve until done, give the workers a grace period to leave, stop
    and report."""
    log = EventLog(events_path, "master")
    board, restored = _load_board(config, specs, log, journal)
    sink = ResultSink(results)
    service = BoardService(board, log, sink, config, journal)
    results_file = None if results_path is None else Path(results_path)
    serving = _Serving(
        config, log, board, sink, service, journal, _output_syncer(service, sink, log, results_file)
    )
    rejoining: set[str] = set()  # workers of the last incarnation that may come back
    if journal is not None and restored is not None:
        rejoining = _resume(serving, journal, restored, results_file)
    server = _listen(config, authkey)
    interrupted: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        interrupted.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _announce_ready(serving, server, ready, resumed=restored is not None)
        _serve_until_done(serving, interrupted)
        _wait_for_departures(serving, server, rejoining, interrupted)
        server.close()
        serving.sync_outputs()
        _log_stopped(serving, interrupted)
        _raise_failures(serving, results_name, events_path)
        _print_summary(serving)
        if interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.detach()
        log.close()


@dataclass(frozen=True, slots=True)
class _Serving:
    """What the phases of one master run share."""

    config: MasterConfig
    log: EventLog
    board: JobBoard
    sink: ResultSink
    service: BoardService
    journal: Journal | None
    #: Flush the outputs (with a journal, checkpoint them); False once one failed.
    sync_outputs: Callable[[], bool]


def _load_board(
    config: MasterConfig, specs: list[JobSpec], log: EventLog, journal: Journal | None
) -> tuple[JobBoard, Restored | None]:
    """The board: restored from an existing journal (with what it restored), or holding
    ``specs`` (and written to a new journal)."""
    board = JobBoard(
        clock=log.now,
        lease_timeout_s=config.lease_timeout_s,
        max_attempts=config.max_attempts,
        batch_size=config.batch_size,
        record_events=log.enabled,
        track_changes=journal is not None,
    )
    if journal is not None and not journal.is_new:
        restored = journal.load()
        board.restore(restored.records, last_lease_id=restored.last_lease_id)
        return board, restored
    for spec in specs:
        board.submit(
            spec.task,
            spec.args,
            job_id=spec.job_id,
            time_limit_s=spec.time_limit_s
            if spec.time_limit_s is not None
            else config.time_limit_s,
        )
    if journal is not None:
        journal.create(board, accepting=config.open_submissions)
    return board, None


def _output_syncer(
    service: BoardService, sink: ResultSink, log: EventLog, results_file: Path | None
) -> Callable[[], bool]:
    """``sync_outputs``: flush the results and the event log, with a journal checkpoint
    of how far they got; False once a write failed."""

    def results_size() -> int:
        return 0 if results_file is None else results_file.stat().st_size

    def checked_flush() -> None:
        sink.flush()
        if sink.error is not None or log.error is not None:
            # No journal checkpoint then: what was not written must be found again.
            raise _OutputDown

    def sync_outputs() -> bool:
        try:
            service.sync_outputs(checked_flush, results_size)
        except (_OutputDown, JournalDown):
            return False
        return True

    return sync_outputs


def _resume(
    serving: _Serving, journal: Journal, restored: Restored, results_file: Path | None
) -> set[str]:
    """Pick up where the crashed master left off: write out again what may not have
    reached the outputs, take back its leases. Returns the workers that may rejoin."""
    board, service = serving.board, serving.service
    service.accepting = journal.accepting
    rejoining = journal.known_workers()
    again, cut = resume_outputs(
        journal,
        board,
        restored,
        results_path=results_file,
        write_results=serving.sink,
        log=serving.log,
    )
    taken_back = 0
    for holder in board.holders():
        # The master's death was not the job's fault: no attempt is counted.
        taken_back += len(board.worker_lost(holder, "master restarted", count_attempt=False))
    print(
        f"distq master: resumed from --journal {journal.path}: {len(board)} jobs, "
        f"{len(board) - board.unfinished} already terminal ({again} written out again"
        f"{', a torn last line cut' if cut else ''}), "
        f"{taken_back} leases taken back",
        file=sys.stderr,
    )
    return rejoining


def _listen(config: MasterConfig, authkey: bytes) -> DistqServer:
    manager = ServedManager(address=(config.host, config.port), authkey=authkey)
    try:
        return manager.get_server()
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from None


def _announce_ready(
    serving: _Serving, server: DistqServer, ready: TextIO, *, resumed: bool
) -> None:
    """Write what the board holds so far, start serving, and print ``READY host:port``."""
    config, log, service = serving.config, serving.log, serving.service
    with contextlib.suppress(JournalDown):  # the serve loop does not start then
        service.flush()  # the submissions' events go out before READY
    serving.sync_outputs()
    server.attach(service, log)
    address = format_address(server.address)
    log.write(
        "master_ready",
        address=address,
        jobs=len(serving.board),
        pid=os.getpid(),
        lease_timeout_s=config.lease_timeout_s,
        heartbeat_interval_s=config.heartbeat_interval_s,
        **({} if serving.journal is None else {"resumed": resumed}),
    )
    ready.write(f"READY {address}\n")
    ready.flush()


def _serve_until_done(serving: _Serving, interrupted: list[int]) -> None:
    """Tick until every job is terminal, a signal, or a failed write."""
    service = serving.service
    while not interrupted and service.journal_error is None:
        try:
            if service.tick():
                break
        except JournalDown:
            break  # not durable any more: stop at once
        if not serving.sync_outputs():
            break  # a full disk: stop handing out work whose results would be lost
        time.sleep(serving.config.tick_s)
    service.stop()


def _wait_for_departures(
    serving: _Serving, server: DistqServer, rejoining: set[str], interrupted: list[int]
) -> None:
    """Within the grace period, wait for the workers to leave and for every connection
    to close: a worker that has shaken hands but not yet said hello is still told the
    work is done, and every handshake under way ends in the log (auth_rejected,
    handshake_timeout).

    A resumed master also gives the workers of the last one (away since its crash) that
    time to rejoin and be told: otherwise they would keep trying."""
    service = serving.service
    grace_end = time.monotonic() + serving.config.shutdown_grace_s
    while (
        service.journal_error is None
        and (
            service.connected_workers() or server.open_connections() or service.not_seen(rejoining)
        )
        and time.monotonic() < grace_end
        and not interrupted
    ):
        time.sleep(0.02)


def _log_stopped(serving: _Serving, interrupted: list[int]) -> None:
    board = serving.board
    serving.log.write(
        "master_stopped",
        results=serving.sink.count,
        unfinished=board.unfinished,
        requeued=board.requeues,
        duplicates=board.duplicates,
        signal=interrupted[0] if interrupted else None,
    )


def _raise_failures(serving: _Serving, results_name: str, events_path: str | None) -> None:
    """OutputFailed if a journal or output write failed (a journal failure first)."""
    service, journal = serving.service, serving.journal
    if journal is not None and service.journal_error is not None:
        _raise_journal_failure(service, serving.sink, journal.path, service.journal_error)
    _raise_output_failure(serving.sink, serving.log, results_name, events_path)


def _print_summary(serving: _Serving) -> None:
    """The one summary line on stderr: jobs, results, requeues, duplicates, and the time
    from first lease to last result."""
    board, sink, service = serving.board, serving.sink, serving.service
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


class _OutputDown(Exception):
    """A write to the results or the event log failed (a full disk)."""


def _raise_output_failure(
    sink: ResultSink, log: EventLog, results_name: str, events_path: str | None
) -> None:
    """After a failed write, one line for the person, and the accepted results that
    were not written, as JSON lines on stderr: none is lost."""
    if sink.error is None and log.error is None:
        return
    if sink.unwritten:
        sys.stderr.write("".join(sink.unwritten))
        sys.stderr.flush()
    if sink.error is not None:
        what = f"--results {results_name}: {sink.error.strerror or sink.error}"
    else:
        assert log.error is not None
        what = f"--events {events_path}: {log.error.strerror or log.error}"
    kept = (
        f"the {len(sink.unwritten)} accepted results not written there are on stderr above"
        if sink.unwritten
        else "every accepted result was written"
    )
    raise OutputFailed(f"cannot write {what}; stopped serving; {kept}")


def _raise_journal_failure(
    service: BoardService, sink: ResultSink, path: object, error: Exception
) -> None:
    """After a failed journal write, as after a failed output: the accepted results not
    known to be written (those not journaled among them) as JSON lines on stderr, then
    one line. Those not journaled run again on a resumed master."""
    lines = sink.unwritten + [result_line(r) for r in service.unjournaled_results()]
    if lines:
        sys.stderr.write("".join(lines))
        sys.stderr.flush()
    reason = getattr(error, "strerror", None) or str(error)
    kept = (
        f"the {len(lines)} accepted results not written out are on stderr above"
        if lines
        else "every accepted result was written"
    )
    raise OutputFailed(f"cannot write --journal {path}: {reason}; stopped serving; {kept}")
