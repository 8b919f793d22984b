"""The master's journal: its job board kept in SQLite (WAL), so a restarted master resumes.

Each call's board changes are appended in one transaction before the call returns; on
restart the last record of every job rebuilds the board, and ``resume_outputs`` gives the
results file and the event log whatever the crash kept from them, exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distq.board import Change, JobBoard, JobRecord, JobState
from distq.errors import UsageError
from distq.events import EventLog
from distq.jobs import Job, Result

__all__ = ["FORMAT", "Journal", "Restored", "jobs_digest", "resume_outputs"]

FORMAT = 1  # bumped when a journal written by this version could not be read by an older one

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY, task TEXT NOT NULL, args BLOB NOT NULL,
    time_limit_s REAL, batch INTEGER, seq INTEGER NOT NULL);
CREATE TABLE changes (seq INTEGER PRIMARY KEY, changes BLOB NOT NULL);
CREATE TABLE workers (name TEXT PRIMARY KEY) WITHOUT ROWID;
"""
_INSERT_JOB = "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_CHANGES = "INSERT INTO changes VALUES (?, ?)"


def jobs_digest(specs: Iterable[tuple[str, Sequence[Any], int | None, float | None]]) -> str:
    """A fingerprint of the job set a run was started with (task, args, id, time limit)."""
    text = json.dumps([[t, list(a), i, s] for t, a, i, s in specs], default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class Restored:
    """What a journal held: the board's records, and what the outputs may still lack."""

    records: list[JobRecord]
    last_lease_id: int
    terminal_seq: dict[int, int] = field(default_factory=dict)  # job -> seq of its result
    submitted_seq: dict[int, int] = field(default_factory=dict)  # job -> seq of its submission


class Journal:
    """One open journal file. Not thread-safe: the board service calls it under its lock."""

    def __init__(
        self, path: Path, db: sqlite3.Connection, meta: dict[str, Any], run: dict[str, Any]
    ) -> None:
        self.path = path
        self._db = db
        self.meta = meta
        self._run = run  # what identifies the run: the job set's digest, the batch size
        self._seq = 0
        self._checkpoint: tuple[int, int, int] | None = None

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        digest: str,
        batch_size: int | None,
        fsync: bool = False,
    ) -> Journal:
        """Open (or create) the journal at ``path`` for the run of job set ``digest``. A
        corrupt file, another program's database, a newer format or another run raise
        ``UsageError`` before the file is opened for writing."""
        where = Path(path)
        meta = _read_meta(where) if where.exists() and where.stat().st_size > 0 else {}
        if meta:
            _check_same_run(where, meta, digest=digest, batch_size=batch_size)
        try:
            # timeout=0: a journal another master holds is refused at once, not waited for.
            db = sqlite3.connect(where, isolation_level=None, check_same_thread=False, timeout=0)
            # Held for the master's life: a second master on the same journal is refused.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit survives the master's crash; FULL also a power loss.
            db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            db.execute("BEGIN IMMEDIATE")
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise UsageError(f"cannot open --journal {where}: {exc}") from None
        return cls(where, db, meta, {"jobs_digest": digest, "batch_size": batch_size})

    @property
    def is_new(self) -> bool:
        return not self.meta

    @property
    def master_id(self) -> str:
        return str(self.meta["master_id"])

    @property
    def accepting(self) -> bool:
        return bool(self.meta.get("accepting", 0))

    def create(self, board: JobBoard, *, accepting: bool) -> None:
        """Write a new journal: its identity and every job of ``board`` (all pending)."""
        self.meta = {
            "format": FORMAT,
            "master_id": secrets.token_hex(8),
            **self._run,
            "accepting": int(accepting),
            "out_seq": 0,
            "results_offset": 0,
            "events_offset": 0,
        }
        board.drain_changes()  # submitted: the rows of jobs say so
        board.drain_submitted()
        with self._db:
            self._db.execute("BEGIN")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", self.meta.items())
            self._insert_jobs([board.record(job_id).job for job_id in board.job_ids()], 1)
        self._seq = 1

    def load(self) -> Restored:
        """Every job's last record, for ``JobBoard.restore``."""
        jobs: dict[int, Job] = {}
        restored = Restored([], 0)
        for job_id, task, args, limit, batch, seq in self._db.execute("SELECT * FROM jobs"):
            jobs[job_id] = Job(job_id, task, tuple(pickle.loads(args)), 0, limit, batch)
            restored.submitted_seq[job_id] = seq
            self._seq = max(self._seq, seq)
        last: dict[int, tuple[int, Change]] = {}
        for seq, blob in self._db.execute("SELECT seq, changes FROM changes ORDER BY seq"):
            for change in pickle.loads(blob):
                last[change[0]] = (seq, change)
            self._seq = max(self._seq, seq)
        for job_id, job in jobs.items():
            found = last.get(job_id)
            if found is None:
                record = JobRecord(job, JobState.PENDING, 0, False, None, 0, (), None)
            else:
                seq, change = found
                record = JobRecord.from_change(job, change)
                restored.last_lease_id = max(restored.last_lease_id, record.lease_id)
                if record.result is not None:
                    restored.terminal_seq[job_id] = seq
            restored.records.append(record)
        return restored

    # -- writing (under the board service's lock) ------------------------------------------

    def commit(self, board: JobBoard) -> None:
        """Append the changed jobs' records (and new jobs) in one transaction."""
        new = board.drain_submitted()
        changes = board.drain_changes()
        if not changes:
            return
        seq = self._seq + 1
        blob = pickle.dumps(changes, pickle.HIGHEST_PROTOCOL)
        with self._db:
            self._db.execute("BEGIN")
            if new:
                self._insert_jobs(new, seq)
            self._db.execute(_INSERT_CHANGES, (seq, blob))
        self._seq = seq

    def known_workers(self) -> set[str]:
        """Workers that joined and never said bye: after a crash, they may rejoin."""
        return {name for (name,) in self._db.execute("SELECT name FROM workers")}

    def worker_joined(self, name: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR IGNORE INTO workers VALUES (?)", (name,))

    def worker_left(self, name: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM workers WHERE name = ?", (name,))

    def set_accepting(self, accepting: bool) -> None:
        self._set_meta({"accepting": int(accepting)})

    def outputs_written(self, results_offset: int, events_offset: int) -> None:
        """Every result journaled so far is in both outputs, before these byte offsets."""
        checkpoint = (self._seq, results_offset, events_offset)
        if checkpoint != self._checkpoint:
            self._set_meta(
                {
                    "out_seq": self._seq,
                    "results_offset": results_offset,
                    "events_offset": events_offset,
                }
            )
            self._checkpoint = checkpoint

    def close(self) -> None:
        self._db.close()

    def _insert_jobs(self, jobs: list[Job], seq: int) -> None:
        rows = [
            (job.job_id, job.task, pickle.dumps(job.args), job.time_limit_s, job.batch, seq)
            for job in jobs
        ]
        self._db.executemany(_INSERT_JOB, rows)

    def _set_meta(self, values: dict[str, Any]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("REPLACE INTO meta VALUES (?, ?)", values.items())
        self.meta.update(values)


def _check_same_run(
    where: Path, meta: dict[str, Any], *, digest: str, batch_size: int | None
) -> None:
    """Refuse to resume a journal that another job set or batch size started."""
    if meta.get("jobs_digest") != digest:
        raise UsageError(
            f"--journal {where} belongs to a run with a different job set; give the "
            "jobs it was started with, or a new journal path"
        )
    if meta.get("batch_size") != batch_size:
        raise UsageError(
            f"--journal {where} belongs to a run with --batch-size "
            f"{meta.get('batch_size')}, not {batch_size}"
        )


def _read_meta(path: Path) -> dict[str, Any]:
    """Read and validate the meta table without writing anything to the file."""
    where = f"--journal {path}"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=0)
    except sqlite3.Error as exc:
        raise UsageError(f"cannot open {where}: {exc}") from None
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if not tables:
            return {}  # created but never committed: a master died before its READY
        if not {"meta", "jobs", "changes", "workers"} <= tables:
            raise UsageError(f"{where} is not a distq journal (it is another SQLite database)")
        meta = dict(db.execute("SELECT key, value FROM meta"))
        version = meta.get("format")
        if not isinstance(version, int) or "master_id" not in meta:
            raise UsageError(f"{where} is not a distq journal (no format in its meta table)")
        if version > FORMAT:
            raise UsageError(
                f"{where} was written by a newer distq (journal format {version}; this "
                f"distq reads format {FORMAT})"
            )
        problem = db.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise UsageError(f"{where} is corrupt ({problem}); it was left as it is")
        return meta
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise UsageError(f"{where} is in use by another running master") from None
        raise UsageError(f"{where} is not a readable distq journal ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{where} is corrupt or not a distq journal ({exc})") from None
    finally:
        db.close()


# -- the outputs after a restart ---------------------------------------------------------


def _complete_lines_from(path: Path, offset: int) -> tuple[list[bytes], int, bool]:
    """The complete lines of ``path`` after ``offset`` (from the start when the file is
    shorter than that), the offset they start at, and whether a torn line follows them."""
    size = path.stat().st_size
    start = offset if size >= offset else 0
    with open(path, "rb") as handle:
        handle.seek(start)
        tail = handle.read()
    lines = tail.split(b"\n")
    torn = lines.pop() != b""
    return lines, start, torn


def _ids_in(lines: list[bytes], terminal_events: bool) -> set[int]:
    found: set[int] = set()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if terminal_events and record.get("ev") not in ("result_accepted", "dead"):
            continue
        job = record.get("job")
        if isinstance(job, int):
            found.add(job)
    return found


def resume_outputs(
    journal: Journal,
    board: JobBoard,
    restored: Restored,
    *,
    results_path: Path | None,
    write_results: Callable[[list[Result]], None],
    log: EventLog,
) -> tuple[int, bool]:
    """Give the outputs what the crash kept from them; returns how many results were
    written again and whether a torn last line was cut from the results file.

    Results journaled after the last checkpoint are looked for in the tail of each output
    and written once if missing; a torn last line is cut (results file) or ended (event
    log). A results file shorter than the checkpoint says (replaced, or cut short by a
    power loss) is read whole, and every result it lacks is written. Without a results
    file (stdout) nothing can be read back: the late results are written again (at
    least once). An event log shorter than the checkpoint says is read whole too, and the
    submissions, terminal results and batch changes it may lack are logged again."""
    out_seq = int(journal.meta.get("out_seq", 0))
    offset = int(journal.meta.get("results_offset", 0))
    readable = results_path is not None and results_path.exists()
    shrunk = results_path is not None and (not readable or results_path.stat().st_size < offset)
    since = 0 if shrunk else out_seq
    ordered = sorted((seq, job_id) for job_id, seq in restored.terminal_seq.items())
    late = [result for seq, job_id in ordered if seq > since if (result := board.result(job_id))]
    missing_output = late
    cut = False
    if results_path is not None and readable:
        lines, start, cut = _complete_lines_from(results_path, offset)
        if cut:
            os.truncate(results_path, start + sum(len(line) + 1 for line in lines))
        present = _ids_in(lines, terminal_events=False)
        missing_output = [result for result in late if result.job_id not in present]
    if missing_output:
        write_results(missing_output)
    if log.path is not None and log.path.exists():
        events_offset = int(journal.meta.get("events_offset", 0))
        # A log shorter than its checkpoint says (cut, or restored from an old copy) is
        # read whole, and every event it may lack is written again, as for the results.
        cut_short = log.path.stat().st_size < events_offset
        logged = 0 if cut_short else out_seq
        lines, _, torn = _complete_lines_from(log.path, events_offset)
        if torn:
            log.end_torn_line()
        present = _ids_in(lines, terminal_events=True)
        unlogged = [
            result
            for seq, job_id in ordered
            if seq > logged and job_id not in present
            if (result := board.result(job_id))
        ]
        _log_lost_events(board, restored, logged, unlogged, log, cut_short=cut_short)
    return len(missing_output), cut


def _log_lost_events(
    board: JobBoard,
    restored: Restored,
    out_seq: int,
    results: list[Result],
    log: EventLog,
    *,
    cut_short: bool = False,
) -> None:
    """Write the events the crash may have kept from the log: submissions and batch
    changes again (a repeat is harmless), terminal results only when absent. A log
    ``cut_short`` gets every job's submission again, the jobs it started with too."""
    submitted = restored.submitted_seq
    if cut_short:  # the jobs the master started with have no submission sequence
        submitted = {job_id: submitted.get(job_id, 0) for job_id in board.job_ids()}
    for job_id, seq in sorted(submitted.items(), key=lambda item: (item[1], item[0])):
        if seq > out_seq or cut_short:
            job = board.record(job_id).job
            log.write(
                "job_submitted", job=job_id, task=job.task, args=list(job.args),
                batch=job.batch, recovered=True,
            )  # fmt: skip
    for result in results:
        if result.ok:
            log.write(
                "result_accepted", job=result.job_id, attempt=result.attempt,
                worker=result.worker, ok=True, value=result.value, recovered=True,
            )  # fmt: skip
        else:
            log.write(
                "dead", job=result.job_id, attempts=board.attempts(result.job_id),
                error=result.error, recovered=True,
            )  # fmt: skip
    closed = board.closed_batches()
    reopened = False
    for batch in range(closed):
        members = board.batch_members(batch)
        if any(restored.terminal_seq.get(job, 0) > out_seq for job in members):
            log.write("batch_closed", batch=batch, recovered=True)
            reopened = True
    opened = board.batch_members(closed)
    if opened and (reopened or any(restored.submitted_seq[job] > out_seq for job in opened)):
        log.write("batch_opened", batch=closed, recovered=True)
