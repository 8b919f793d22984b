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
from collections.abc import Iterable
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
from distq.journal import Journal, jobs_digest, resume_outputs
from distq.output import ResultSink, result_line
from distq.protocol import format_address
from distq.server import ServedManager
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
    log = EventLog(events_path, "master")
    board = JobBoard(
        clock=log.now,
        lease_timeout_s=config.lease_timeout_s,
        max_attempts=config.max_attempts,
        batch_size=config.batch_size,
        record_events=log.enabled,
        track_changes=journal is not None,
    )
    restored = None
    if journal is not None and not journal.is_new:
        restored = journal.load()
        board.restore(restored.records, last_lease_id=restored.last_lease_id)
    else:
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
    sink = ResultSink(results)
    service = BoardService(board, log, sink, config, journal)
    results_file = None if results_path is None else Path(results_path)

    def results_size() -> int:
        return 0 if results_file is None else results_file.stat().st_size

    def checked_flush() -> None:
        sink.flush()
        if sink.error is not None or log.error is not None:
            # No journal checkpoint then: what was not written must be found again.
            raise _OutputDown

    def sync_outputs() -> bool:
        """Flush the outputs (with a journal, checkpoint them); False once one failed."""
        try:
            service.sync_outputs(checked_flush, results_size)
        except (_OutputDown, JournalDown):
            return False
        return True

    rejoining: set[str] = set()  # workers of the last incarnation that may come back
    if journal is not None and restored is not None:
        service.accepting = journal.accepting
        rejoining = journal.known_workers()
        again, cut = resume_outputs(
            journal, board, restored, results_path=results_file, write_results=sink, log=log
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
    manager = ServedManager(address=(config.host, config.port), authkey=authkey)
    try:
        server = manager.get_server()
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from None
    interrupted: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        interrupted.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.suppress(JournalDown):  # the loop below does not start then
            service.flush()  # the submissions' events go out before READY
        sync_outputs()
        server.attach(service, log)
        address = format_address(server.address)
        resumed = {} if journal is None else {"resumed": restored is not None}
        log.write(
            "master_ready",
            address=address,
            jobs=len(board),
            pid=os.getpid(),
            lease_timeout_s=config.lease_timeout_s,
            heartbeat_interval_s=config.heartbeat_interval_s,
            **resumed,
        )
        ready.write(f"READY {address}\n")
        ready.flush()
        while not interrupted and service.journal_error is None:
            try:
                if service.tick():
                    break
            except JournalDown:
                break  # not durable any more: stop at once
            if not sync_outputs():
                break  # a full disk: stop handing out work whose results would be lost
            time.sleep(config.tick_s)
        service.stop()
        grace_end = time.monotonic() + config.shutdown_grace_s
        # Within the grace period, wait for the workers to leave and for every connection
        # to close: a worker that has shaken hands but not yet said hello is still told
        # the work is done, and every handshake under way ends in the log (auth_rejected,
        # handshake_timeout).
        # A resumed master also gives the workers of the last one (away since its
        # crash) that time to rejoin and be told: otherwise they would keep trying.
        while (
            service.journal_error is None
            and (
                service.connected_workers()
                or server.open_connections()
                or service.not_seen(rejoining)
            )
            and time.monotonic() < grace_end
            and not interrupted
        ):
            time.sleep(0.02)
        server.close()
        sync_outputs()
        log.write(
            "master_stopped",
            results=sink.count,
            unfinished=board.unfinished,
            requeued=board.requeues,
            duplicates=board.duplicates,
            signal=interrupted[0] if interrupted else None,
        )
        if journal is not None and service.journal_error is not None:
            _raise_journal_failure(service, sink, journal.path, service.journal_error)
        _raise_output_failure(sink, log, results_name, events_path)
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
        server.detach()
        log.close()


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
