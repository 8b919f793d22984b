"""One ordered history of a run, merged from the event logs of master, workers and harness.

Events are ordered by ``t`` (every process shares one epoch), ties kept in reading order.
The queries answer what the checkers ask: which jobs were submitted, which terminal
results the master recorded, and which worker held which job when (from the master's
leases, the authoritative view). The events are held as columns (``columns``) and built
as objects only when read; the checks of a soak run read lines and fields instead
(``lines``, ``jobs_at``, ``values``), so a million jobs cost arrays, not objects.

A master the harness restarts begins a new incarnation. One that resumes its journal keeps
its jobs; one that starts afresh numbers new jobs from the same ids, so a job is known by
its id within an *epoch*: the incarnations that share one job space (a fresh start opens
the next epoch). Leases carry their epoch; ``submitted`` and ``terminals`` answer for the
last epoch, the one the run ended with (the jobs of an earlier one were abandoned with it).
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain, compress, repeat
from operator import and_, eq, gt
from pathlib import Path
from typing import Any, Literal, cast, overload

import msgspec

from harness import contract
from harness.columns import (
    JOB_ELSEWHERE,
    NO_JOB,
    PARALLEL_BYTES,
    Columns,
    HistoryError,
    add_all,
    bucketed,
    read_run,
)
from harness.contract import (
    EVENTS_GLOB,
    HARNESS,
    MASTER,
    RESULTS,
    TERMINAL_EVENTS,
    CorruptLog,
)

__all__ = [
    "HARNESS",
    "MASTER",
    "RESULTS",
    "TERMINAL_EVENTS",
    "Events",
    "History",
    "HistoryError",
    "HistoryEvent",
    "Incarnation",
    "Lease",
    "LeaseEnd",
    "Leases",
    "Submission",
]


LeaseEnd = Literal["completed", "failed", "expired", "lost", "superseded", "open"]

_OPEN: LeaseEnd = "open"
_RENDER_VALUE_CHARS = 80
_SPACE = re.compile(r"\s")


class HistoryEvent(msgspec.Struct, frozen=True, eq=False, gc=False):
    """One event at its position (``line``) in the merged history.

    Compared by identity: a line of a history is one event, and ``fields`` is not hashable.
    ``job`` is the event's job id, if it names one (an int, never a bool). A compact record
    (no GC tracking: it refers to nothing that refers back), as a soak run holds millions.
    """

    line: int
    t: float
    src: str
    ev: str
    fields: Mapping[str, Any]
    job: int | None

    def get(self, key: str, default: Any = None) -> Any:
        fields: Any = self.fields
        if type(fields) is dict:
            return fields.get(key, default)
        # A typed record (``logread``): one call, not two, for the checks' hottest question.
        return getattr(fields, key) if key in fields.key_set else default

    def render(self) -> str:
        """One compact line: ``#12 t=0.632582 master leased job=0 attempt=1 ...``."""
        parts = [f"#{self.line}", f"t={self.t:.6f}", self.src, self.ev]
        parts.extend(f"{key}={_compact(value)}" for key, value in self.fields.items())
        return " ".join(parts)


class Submission(msgspec.Struct, frozen=True, gc=False):
    """A job as the master submitted it."""

    job: int
    task: str
    args: tuple[Any, ...]
    batch: int | None
    line: int


class Incarnation(msgspec.Struct, frozen=True, gc=False):
    """One run of the master: from ``t_start`` (0, or when the harness had the previous
    one gone) to the next; ``epoch`` is its job space (the same as the previous one's when
    it resumed a journal, the next otherwise)."""

    index: int
    t_start: float
    epoch: int
    resumed: bool


class Lease(msgspec.Struct, frozen=True, gc=False):
    """One lease from the master's log: who held which job from when to when.

    ``end``: ``completed`` (its own result was accepted), ``failed`` (the attempt failed),
    ``expired`` (``lease_expired``), ``lost`` (``worker_lost``: killed, or handed back on a
    graceful stop), ``superseded`` (another attempt's result, or a second lease, ended it),
    ``open`` (still held when the history ends).
    """

    job: int
    attempt: int
    lease: int
    worker: str
    t_start: float
    t_end: float | None  # None while open
    end: LeaseEnd
    start_line: int
    end_line: int | None
    epoch: int = 0  # the job space of the master that granted it (see Incarnation)

    def held_at(self, t: float) -> bool:
        return self.t_start <= t and (self.t_end is None or t < self.t_end)


class Events(Sequence[HistoryEvent]):
    """Events of a history by line, each built when it is read (a soak run's history keeps
    its events as columns, not as millions of objects)."""

    __slots__ = ("_history", "_lines")

    def __init__(self, history: History, lines: Sequence[int]) -> None:
        self._history = history
        self._lines = lines

    @property
    def lines(self) -> Sequence[int]:
        """The history lines, in history order."""
        return self._lines

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> HistoryEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Events: ...

    def __getitem__(self, index: int | slice) -> HistoryEvent | Events:
        if isinstance(index, slice):
            return Events(self._history, self._lines[index])
        return self._history.event_at(self._lines[index])

    def __iter__(self) -> Iterator[HistoryEvent]:
        return map(self._history.event_at, self._lines)

    def __reversed__(self) -> Iterator[HistoryEvent]:
        return map(self._history.event_at, reversed(self._lines))

    def __eq__(self, other: object) -> bool:
        """Equal to a sequence of the same events (the same lines, times, sources, names)."""
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(map(_same_event, self, other))

    __hash__ = None  # type: ignore[assignment]


_LEASE_ENDS = (
    contract.LEASED,
    contract.RESULT_ACCEPTED,
    contract.LEASE_EXPIRED,
    contract.ATTEMPT_FAILED,
    contract.DEAD,
    contract.WORKER_LOST,
)


#: Lease events a plain run's master writes (``_plain_leases``); any other is replayed.
_PLAIN_ENDS = frozenset({contract.LEASED, contract.RESULT_ACCEPTED})


class History:
    """An immutable, ordered run history and the queries the checkers need.

    Built once: the events as columns in order (``columns``), and indexes of their lines by
    event name and source (by job on first use) that every query reads instead of scanning
    the whole history. An event is built as a :class:`HistoryEvent` only when it is read.
    """

    def __init__(self, events: Iterable[Mapping[str, Any]]) -> None:
        columns = Columns()
        add_all(columns, events)
        self._build(columns.ordered())

    def _build(self, columns: Columns) -> None:
        """Index the events (already in history order) and replay the leases."""
        self._c = columns
        names = columns.names.names
        runs = columns.runs if columns.runs is not None else bucketed(columns.key)
        # (event, source) pairs, in the order each first appears: a pair may have two keys
        # (a typed kind's lines and odd ones of the same name), their runs merged
        pairs: dict[tuple[str, str], list[array[int]]] = {}
        for key, run in sorted(runs.items(), key=lambda item: item[1][0]):
            pair = (names[columns.key_ev[key]], names[columns.key_src[key]])
            pairs.setdefault(pair, []).append(run)
        del runs
        self._by_kind: dict[tuple[str, str], Sequence[int]] = {
            pair: _merged(list(found)) for pair, found in pairs.items()
        }
        self._sources = tuple(dict.fromkeys(src for _, src in self._by_kind))
        self._by_ev: dict[str, Sequence[int]] = {}
        self._by_src: dict[str, Sequence[int]] = {}
        self._by_job: tuple[array[int], array[int], dict[int, list[int]]] | None = None
        self._incarnations = self._index_incarnations()
        # When each epoch after the first began (a master started afresh).
        self._epoch_starts = [inc.t_start for inc in self._incarnations[1:] if not inc.resumed]
        self._submitted = self._index_submissions()
        self._terminals = self._index_terminals()
        self._leases = self._index_leases()

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        paths: Iterable[str | os.PathLike[str]],
        *,
        results_path: str | os.PathLike[str] | None = None,
        parallel_bytes: int = PARALLEL_BYTES,
    ) -> History:
        """Merge event logs; optionally add the master's results output as ``result_output``.
        Logs of ``parallel_bytes`` or more in all are read by two processes at once.

        A torn last line (a process killed mid-write) is skipped; a corrupt line before the
        end of a log raises HistoryError.
        """
        collecting = gc.isenabled()
        gc.disable()  # millions of fresh objects, none of them garbage: nothing to collect
        try:
            columns, settled, helper = read_run(
                list(paths), results_path, parallel_bytes=parallel_bytes
            )
            try:
                ordered = columns.ordered(settled, helper)
            finally:
                if helper is not None:
                    helper.close()
            history = cls.__new__(cls)
            history._build(ordered)
        except CorruptLog as exc:
            raise HistoryError(str(exc)) from None
        finally:
            if collecting:
                gc.enable()
        return history

    @classmethod
    def load_run(
        cls, run_dir: str | os.PathLike[str], *, results_name: str | None = "results.jsonl"
    ) -> History:
        """Merge every ``*.events.jsonl`` in ``run_dir``, plus ``results_name`` if it exists."""
        root = Path(run_dir)
        if not root.is_dir():
            raise HistoryError(f"run directory {root} does not exist")
        results_path = None if results_name is None else root / results_name
        if results_path is not None and not results_path.is_file():
            results_path = None
        return cls.from_files(sorted(root.glob(EVENTS_GLOB)), results_path=results_path)

    # -- reading ---------------------------------------------------------------------------

    @property
    def events(self) -> Events:
        """Every event, in history order."""
        return Events(self, range(len(self._c)))

    def __len__(self) -> int:
        return len(self._c)

    def __iter__(self) -> Iterator[HistoryEvent]:
        return map(self.event_at, range(len(self._c)))

    def __getitem__(self, line: int) -> HistoryEvent:
        return self.event_at(range(len(self._c))[line])

    def event_at(self, line: int) -> HistoryEvent:
        """The event at ``line`` (a position in the history, from 0)."""
        return _event(self._c, line)

    # Column reads: what the checks of a soak run ask about millions of events, answered
    # without building them.

    def ev_at(self, line: int) -> str:
        return self._c.names.names[self._c.ev_code(line)]

    def src_at(self, line: int) -> str:
        return self._c.names.names[self._c.src_code(line)]

    def t_at(self, line: int) -> float:
        return self._c.t[line]

    def job_at(self, line: int) -> int | None:
        return self._c.job_at(line)

    def field_at(self, line: int, name: str, default: Any = None) -> Any:
        """One field of the event at ``line`` (as ``event.get(name, default)``)."""
        return self._c.field(line, name, default)

    @property
    def end_t(self) -> float:
        """The time of the last event (0.0 for an empty history)."""
        return self._c.t[-1] if len(self._c) else 0.0

    def select(
        self,
        ev: str | Iterable[str] | None = None,
        *,
        job: int | None = None,
        src: str | None = None,
        worker: str | None = None,
    ) -> Sequence[HistoryEvent]:
        """The events matching every given filter, in history order."""
        return Events(self, self.lines(ev, job=job, src=src, worker=worker))

    def lines(
        self,
        ev: str | Iterable[str] | None = None,
        *,
        job: int | None = None,
        src: str | None = None,
        worker: str | None = None,
    ) -> Sequence[int]:
        """The lines of the events ``select`` gives, without building them."""
        # Start from the narrowest index that applies, then filter by the rest.
        columns = self._c
        codes: set[int] | None = None
        found: Sequence[int]
        if job is not None:
            found = self._job_lines(job)
            if ev is not None:
                codes = {code for name in _names(ev) if (code := columns.code(name)) is not None}
        elif ev is not None and src is not None:
            found = _merged([self._by_kind.get((name, src), ()) for name in _names(ev)])
            src = None
        elif ev is not None:
            found = _merged([self._ev_lines(name) for name in _names(ev)])
        elif src is not None:
            found, src = self._src_lines(src), None
        else:
            found = range(len(columns))
        if codes is not None or src is not None:
            src_code = None if src is None else columns.code(src)
            if src is not None and src_code is None:
                return []
            keys, key_column = columns.keys_where(codes, src_code), columns.key
            found = [line for line in found if key_column[line] in keys]
        if worker is not None:
            field = columns.field
            found = [line for line in found if field(line, "worker") == worker]
        return found

    def _ev_lines(self, ev: str) -> Sequence[int]:
        found = self._by_ev.get(ev)
        if found is None:
            runs = [run for (name, _), run in self._by_kind.items() if name == ev]
            found = self._by_ev[ev] = _merged(runs)
        return found

    def _src_lines(self, src: str) -> Sequence[int]:
        found = self._by_src.get(src)
        if found is None:
            runs = [run for (_, name), run in self._by_kind.items() if name == src]
            found = self._by_src[src] = _merged(runs)
        return found

    def kinds(self) -> tuple[tuple[str, str], ...]:
        """Every (event name, source) pair in the history, in the order each first appears."""
        return tuple(self._by_kind)

    def sources(self) -> tuple[str, ...]:
        """Every ``src`` in the history, in the order each first appears."""
        return self._sources

    def by_job(self, job: int) -> Sequence[HistoryEvent]:
        """The events naming ``job``, in history order (the index is built on first use)."""
        return Events(self, self._job_lines(job))

    def _job_lines(self, job: int) -> Sequence[int]:
        if self._by_job is None:
            # Lines sorted by job (stably: history order within a job), and the job of each:
            # two arrays and a binary search, not a list per job.
            columns = self._c
            named = compress(range(len(columns)), map(_NAMES_A_JOB.__lt__, columns.job))
            order = array("q", sorted(named, key=columns.job.__getitem__))
            jobs = array("q", map(columns.job.__getitem__, order))
            elsewhere: dict[int, list[int]] = {}
            for line, big in sorted(columns.big_jobs.items()):
                elsewhere.setdefault(big, []).append(line)
            self._by_job = (jobs, order, elsewhere)
        jobs, order, elsewhere = self._by_job
        if not JOB_ELSEWHERE < job <= _JOB_MAX:
            return tuple(elsewhere.get(job, ()))
        return order[bisect_left(jobs, job) : bisect_right(jobs, job)]

    def submitted(self) -> Mapping[int, Submission]:
        """Every job the master submitted, by id (the first submission of an id wins)."""
        return self._submitted

    def terminals(self) -> Mapping[int, tuple[HistoryEvent, ...]]:
        """The master's terminal events (``result_accepted`` or ``dead``) by job id."""
        return self._terminals

    def submission_lines(self) -> Mapping[int, int]:
        """The line of each job's first submission, by job id (``submitted`` unbuilt)."""
        return self._submitted.first

    def terminal_lines(self) -> Mapping[int, tuple[int, ...]]:
        """The lines of each job's terminal events, by job id (``terminals`` unbuilt)."""
        return self._terminals.lines

    def jobs_at(self, lines: Sequence[int]) -> list[int | None]:
        """The job of each line (None where an event names none)."""
        column = self._c.job
        jobs: list[Any] = list(map(column.__getitem__, lines))
        if jobs and min(jobs) <= JOB_ELSEWHERE:  # some name no job, or one past 64 bits
            jobs = list(map(self._c.job_at, lines))
        return jobs

    def evs_at(self, lines: Iterable[int]) -> list[str]:
        """The event name of each line."""
        columns = self._c
        codes = map(columns.key_ev.__getitem__, map(columns.key.__getitem__, lines))
        return list(map(columns.names.names.__getitem__, codes))

    def values(self, lines: Iterable[int], name: str, default: Any = None) -> list[Any]:
        """One field of each line's event (as ``event.get(name, default)``), in one pass."""
        return self._c.values(lines, name, default)

    def incarnations(self) -> tuple[Incarnation, ...]:
        """Each run of the master, in order (one, unless the harness restarted it)."""
        return self._incarnations

    def epoch_at(self, t: float) -> int:
        """The epoch (job space) of the master serving at time ``t``."""
        return bisect_right(self._epoch_starts, t) if self._epoch_starts else 0

    def leases(self, job: int | None = None) -> Sequence[Lease]:
        """The master's leases (of one job, or all) in the order they were granted."""
        if job is None:
            return self._leases
        return self._leases.of_job(job)

    def lease_table(self) -> Leases:
        """Every lease as columns (what ``leases()`` builds a Lease at a time from)."""
        return self._leases

    def holder_at(self, job: int, t: float) -> str | None:
        """The worker holding a lease on ``job`` at time ``t``, if any."""
        holders = [lease.worker for lease in self.leases(job) if lease.held_at(t)]
        return holders[-1] if holders else None

    def jobs_held_by(self, worker: str, t: float) -> frozenset[int]:
        """The jobs ``worker`` held a lease on at time ``t``."""
        return frozenset(
            lease.job for lease in self._leases if lease.worker == worker and lease.held_at(t)
        )

    def faults(self) -> Sequence[HistoryEvent]:
        """The faults the harness injected, in the order they happened."""
        return self.select(contract.FAULT, src=HARNESS)

    def render(self, lines: Iterable[int]) -> str:
        """The given history lines, one compact line each, in history order."""
        return "\n".join(self.event_at(line).render() for line in sorted(set(lines)))

    # -- indexing (once, at construction) --------------------------------------------------

    def _last_epoch(self, lines: Sequence[int]) -> Sequence[int]:
        """Those of ``lines`` (in history order) from the last epoch's master."""
        if not self._epoch_starts:
            return lines
        start, ts = self._epoch_starts[-1], self._c.t
        return [line for line in lines if ts[line] >= start]

    def _index_incarnations(self) -> tuple[Incarnation, ...]:
        """The master's runs: one from the start, one more per restart the harness made
        (from when the old one was gone); each resumed if its ``master_ready`` says so."""
        starts: list[float] = []
        for effect in self.select(contract.FAULT_EFFECT, src=HARNESS):
            down_t = effect.get("down_t")
            if effect.get("action") in contract.MASTER_RESTARTS and type(down_t) in (int, float):
                starts.append(float(down_t))
        if not starts:
            return (Incarnation(0, 0.0, 0, False),)
        starts.sort()
        readies = self.select(contract.MASTER_READY, src=MASTER)
        incarnations = [Incarnation(0, 0.0, 0, False)]
        for index, start in enumerate(starts, start=1):
            end = starts[index] if index < len(starts) else math.inf
            ready = next((e for e in readies if start < e.t <= end), None)
            resumed = ready is not None and ready.get("resumed") is True
            epoch = incarnations[-1].epoch + (0 if resumed else 1)
            incarnations.append(Incarnation(index, start, epoch, resumed))
        return tuple(incarnations)

    def _index_submissions(self) -> _Submissions:
        lines = self._last_epoch(self._by_kind.get((contract.JOB_SUBMITTED, MASTER), ()))
        jobs = self.jobs_at(lines)
        # job -> the line of its first submission, in the order jobs were first submitted
        first: dict[Any, int] = dict.fromkeys(jobs, 0)
        first.update(zip(reversed(jobs), reversed(lines), strict=True))  # the first wins
        first.pop(None, None)
        return _Submissions(self._c, first)

    def _index_terminals(self) -> _Terminals:
        terminals: dict[Any, tuple[int, ...]] = {}
        lines = self._last_epoch(self.lines(TERMINAL_EVENTS, src=MASTER))
        jobs = self.jobs_at(lines)
        if len(set(jobs)) == len(jobs):  # one terminal line a job: built in C
            terminals = dict(zip(jobs, zip(lines), strict=True))
        else:
            for line, job in zip(lines, jobs, strict=True):
                terminals[job] = (*terminals.get(job, ()), line)
        terminals.pop(None, None)
        return _Terminals(self._c, terminals)

    def _plain_leases(self) -> Leases | None:
        """The replay's answer, in C-level passes, for a master log whose only lease events
        are one ``leased`` per job and its results (a run without failures, expiries or
        losses, as a soak run is); None for any other log, which the replay answers."""
        by_kind = self._by_kind
        if self._epoch_starts:
            return None  # a master started afresh: jobs are known by epoch too
        if any((ev, MASTER) in by_kind for ev in _LEASE_ENDS if ev not in _PLAIN_ENDS):
            return None
        granted = by_kind.get((contract.LEASED, MASTER), ())
        jobs = self.jobs_at(granted)
        if None in jobs or len(set(jobs)) != len(jobs):
            return None  # a lease of no job, or a job leased twice
        reports = by_kind.get((contract.RESULT_ACCEPTED, MASTER), ())
        past = len(self._c)  # after every line: no accepted result
        first_report = dict(zip(reversed(self.jobs_at(reports)), reversed(reports), strict=True))
        end_lines = list(map(first_report.get, jobs, repeat(past)))
        if any(map(gt, granted, end_lines)):
            return None  # a result accepted before its job's lease
        values = self._c.values
        attempts = _ints(values(granted, "attempt"))
        workers = values(granted, "worker", _MISSING)
        if set(map(type, workers)) != {str}:
            workers = ["" if w is _MISSING else str(w) for w in workers]
        ts = self._c.t
        leases = Leases()
        leases.job.extend(cast(list[int], jobs))
        leases.attempt.extend(attempts)
        leases.lease.extend(_ints(values(granted, "lease")))
        leases.worker.extend(map(sys.intern, workers))
        leases.t_start.extend(map(ts.__getitem__, granted))
        leases.start_line.extend(granted)
        closed = [line for line in end_lines if line != past] if past in end_lines else end_lines
        # Completed when the result accepted names the attempt and worker the lease did.
        same = map(
            and_,
            map(eq, compress(attempts, map(past.__ne__, end_lines)), values(closed, "attempt")),
            map(eq, compress(workers, map(past.__ne__, end_lines)), values(closed, "worker")),
        )
        if closed is end_lines:  # every lease closed (a clean run): in C
            leases.t_end.extend(map(ts.__getitem__, end_lines))
            leases.end.extend(map(_ENDS.__getitem__, same))
            leases.end_line.extend(end_lines)
            return leases
        for line in end_lines:
            if line == past:
                leases.t_end.append(math.nan)
                leases.end.append(_OPEN)
                leases.end_line.append(-1)
            else:
                leases.t_end.append(ts[line])
                leases.end.append(_ENDS[next(same)])
                leases.end_line.append(line)
        return leases

    def _index_leases(self) -> Leases:
        """Replay the master's lease lifecycle: at most one open lease per job."""
        plain = self._plain_leases()
        if plain is not None:
            return plain
        columns = self._c
        granted: list[int] = []  # each lease's ``leased`` line, in order
        epochs: list[int] = []  # each lease's epoch
        ended: dict[int, tuple[int, LeaseEnd]] = {}  # index into granted -> its end
        # job -> index into granted; (epoch, job) once the master started afresh (a job of a
        # later epoch is another job): the plain key keeps the common case fast
        open_lease: dict[int | tuple[int, int], int] = {}
        starts, ts = self._epoch_starts, columns.t
        epoch = 0

        def close(key: int | tuple[int, int], line: int, end: LeaseEnd) -> None:
            index = open_lease.pop(key, None)
            if index is not None:
                ended[index] = (line, end)

        code = columns.code
        leased, accepted, expired, lost = (
            code(contract.LEASED),
            code(contract.RESULT_ACCEPTED),
            code(contract.LEASE_EXPIRED),
            code(contract.WORKER_LOST),
        )
        failed = {code(contract.ATTEMPT_FAILED), code(contract.DEAD)} - {None}
        lines = self.lines(_LEASE_ENDS, src=MASTER)
        held_by: list[tuple[int, str]] = []  # each lease's attempt and worker, as granted
        rows = zip(
            lines,
            map(columns.key_ev.__getitem__, map(columns.key.__getitem__, lines)),
            map(columns.job.__getitem__, lines),
            columns.values(lines, "attempt"),
            columns.values(lines, "worker", _MISSING),
            strict=True,
        )
        for line, ev, job, attempt, worker in rows:
            if starts:
                epoch = bisect_right(starts, ts[line])
            if ev == lost:
                for lost_job in columns.field(line, "jobs") or ():
                    if isinstance(lost_job, int):
                        close((epoch, lost_job) if starts else lost_job, line, "lost")
                continue
            if job == NO_JOB:
                continue
            if job == JOB_ELSEWHERE:
                job = columns.big_jobs[line]
            key = (epoch, job) if starts else job
            if ev == leased:
                if key in open_lease:
                    close(key, line, "superseded")  # a second lease while one is open: a bug
                open_lease[key] = len(granted)
                granted.append(line)
                epochs.append(epoch)
                held_by.append((_int(attempt), "" if worker is _MISSING else str(worker)))
            elif ev == accepted:
                index = open_lease.get(key)
                if index is not None:
                    same = held_by[index] == (attempt, None if worker is _MISSING else worker)
                    close(key, line, "completed" if same else "superseded")
            elif ev == expired:
                close(key, line, "expired")
            elif ev in failed:
                close(key, line, "failed")
        leases = Leases()
        ts = columns.t
        leases.job.extend(cast(list[int], list(map(columns.job_at, granted))))
        leases.attempt.extend(attempt for attempt, _ in held_by)
        leases.lease.extend(map(_int, columns.values(granted, "lease")))
        leases.worker.extend(sys.intern(worker) for _, worker in held_by)
        leases.t_start.extend(map(ts.__getitem__, granted))
        leases.start_line.extend(granted)
        leases.epoch.extend(epochs)
        no_end = (-1, _OPEN)
        for index in range(len(granted)):
            end_line, end = ended.get(index, no_end)
            leases.t_end.append(math.nan if end_line < 0 else ts[end_line])
            leases.end.append(end)
            leases.end_line.append(end_line)
        return leases


def _ints(values: list[Any]) -> list[int]:
    """``_int`` of each value (the list itself when all are ints already)."""
    return values if set(map(type, values)) <= {int} else list(map(_int, values))


class Leases(Sequence[Lease]):
    """The master's leases as columns, each :class:`Lease` built when it is read."""

    def __init__(self) -> None:
        self.job: list[int] = []
        self.attempt: list[int] = []
        self.lease: list[int] = []
        self.worker: list[str] = []
        self.t_start = array("d")
        self.t_end = array("d")  # NaN while open
        self.end: list[LeaseEnd] = []
        self.start_line = array("q")
        self.end_line = array("q")  # -1 while open
        self.epoch: list[int] = []  # empty: every lease of the first epoch
        self._by_job: tuple[list[int], list[int]] | None = None

    def __len__(self) -> int:
        return len(self.job)

    @overload
    def __getitem__(self, index: int) -> Lease: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Lease, ...]: ...

    def __getitem__(self, index: int | slice) -> Lease | tuple[Lease, ...]:
        if isinstance(index, slice):
            return tuple(map(self._lease, range(len(self))[index]))
        return self._lease(range(len(self))[index])

    def __iter__(self) -> Iterator[Lease]:
        return map(self._lease, range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def _lease(self, index: int) -> Lease:
        t_end, end_line = self.t_end[index], self.end_line[index]
        return Lease(
            self.job[index],
            self.attempt[index],
            self.lease[index],
            self.worker[index],
            self.t_start[index],
            None if end_line < 0 else t_end,
            self.end[index],
            self.start_line[index],
            None if end_line < 0 else end_line,
            self.epoch[index] if self.epoch else 0,
        )

    def of_job(self, job: int) -> tuple[Lease, ...]:
        """The leases of one job, in the order they were granted (indexed on first use)."""
        if self._by_job is None:
            order = sorted(range(len(self)), key=self.job.__getitem__)
            self._by_job = ([self.job[index] for index in order], order)
        jobs, order = self._by_job
        found = order[bisect_left(jobs, job) : bisect_right(jobs, job)]
        return tuple(map(self._lease, found))


_MISSING: Any = object()  # a field the event does not have
#: How a lease a result was accepted for ended: whether that result was its own.
_ENDS: dict[bool, LeaseEnd] = {True: "completed", False: "superseded"}
_NAMES_A_JOB = JOB_ELSEWHERE  # job columns above it name a job that fits 64 bits
_JOB_MAX = 2**63 - 1


class _Submissions(Mapping[int, Submission]):
    """The first submission of each job, built when it is read."""

    def __init__(self, columns: Columns, first: dict[int, int]) -> None:
        self._columns = columns  # not the history: it holds this (no cycle to collect)
        self.first = first

    def __getitem__(self, job: int) -> Submission:
        line = self.first[job]
        event = _event(self._columns, line)
        args = event.get("args", ())
        batch = event.get("batch")
        return Submission(
            job=job,
            task=str(event.get("task", "")),
            args=tuple(args) if isinstance(args, list | tuple) else (args,),
            batch=batch if isinstance(batch, int) else None,
            line=line,
        )

    def __iter__(self) -> Iterator[int]:
        return iter(self.first)

    def __len__(self) -> int:
        return len(self.first)

    def __contains__(self, job: object) -> bool:
        return job in self.first

    def line(self, job: int) -> int:
        """The history line of the job's first submission."""
        return self.first[job]


class _Terminals(Mapping[int, tuple[HistoryEvent, ...]]):
    """The master's terminal events by job, built when they are read."""

    def __init__(self, columns: Columns, lines: dict[int, tuple[int, ...]]) -> None:
        self._columns = columns  # not the history: it holds this (no cycle to collect)
        self.lines = lines

    def __getitem__(self, job: int) -> tuple[HistoryEvent, ...]:
        return tuple(_event(self._columns, line) for line in self.lines[job])

    def __iter__(self) -> Iterator[int]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def __contains__(self, job: object) -> bool:
        return job in self.lines


def _event(columns: Columns, line: int) -> HistoryEvent:
    """The event at ``line`` of ``columns``, built."""
    names = columns.names.names
    return HistoryEvent(
        line,
        columns.t[line],
        names[columns.src_code(line)],
        names[columns.ev_code(line)],
        columns.fields_at(line),
        columns.job_at(line),
    )


def _names(ev: str | Iterable[str]) -> Iterable[str]:
    return (ev,) if isinstance(ev, str) else dict.fromkeys(ev)


def _merged(runs: list[Sequence[int]]) -> Sequence[int]:
    """Runs of lines, each in history order, as one run in history order."""
    runs = [run for run in runs if run]
    if len(runs) <= 1:
        return runs[0] if runs else ()
    return array("q", sorted(chain(*runs)))  # merges presorted runs in linear time


def _same_event(one: HistoryEvent, other: object) -> bool:
    return isinstance(other, HistoryEvent) and (one.line, one.t, one.src, one.ev, one.job) == (
        other.line,
        other.t,
        other.src,
        other.ev,
        other.job,
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _compact(value: Any) -> str:
    # Fast paths (a 5,000-job history renders ~140,000 values for its report): the same
    # text json.dumps gives, without its cost.
    if isinstance(value, str) and value and not _SPACE.search(value):
        text = value
    elif value is None or isinstance(value, bool):
        text = "null" if value is None else "true" if value else "false"
    elif type(value) is int or (type(value) is float and math.isfinite(value)):
        text = repr(value)
    else:
        text = json.dumps(value, separators=(",", ":"), default=repr)
    if len(text) > _RENDER_VALUE_CHARS:
        text = text[: _RENDER_VALUE_CHARS - 3] + "..."
    return text
