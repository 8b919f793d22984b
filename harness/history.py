"""One ordered history of a run, merged from the event logs of master, workers and harness.

Events are ordered by ``t`` (every process shares one epoch), ties kept in reading order.
The queries answer what the checkers ask: which jobs were submitted, which terminal
results the master recorded, and which worker held which job when (from the master's
leases, the authoritative view).

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
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain
from operator import attrgetter
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

import msgspec

from harness import contract
from harness.contract import (
    EVENTS_GLOB,
    HARNESS,
    MASTER,
    RESULTS,
    TERMINAL_EVENTS,
    CorruptLog,
)
from harness.logread import TAGS, read_events, read_results

__all__ = [
    "HARNESS",
    "MASTER",
    "RESULTS",
    "TERMINAL_EVENTS",
    "History",
    "HistoryError",
    "HistoryEvent",
    "Incarnation",
    "Lease",
    "LeaseEnd",
    "Submission",
]


LeaseEnd = Literal["completed", "failed", "expired", "lost", "superseded", "open"]

_RESERVED = contract.RESERVED_FIELDS
_OPEN: LeaseEnd = "open"
_RENDER_VALUE_CHARS = 80
_SPACE = re.compile(r"\s")


class HistoryError(ValueError):
    """An event that cannot be placed in a history (no numeric ``t``, no ``ev``), or a
    damaged log (a corrupt line before its end)."""


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


class History:
    """An immutable, ordered run history and the queries the checkers need.

    Built once: the events in order, and indexes by event name and by ``src`` (the job
    index on first use) that every query reads instead of scanning the whole history.
    """

    def __init__(self, events: Iterable[Mapping[str, Any]]) -> None:
        columns = _Columns()
        for order, event in enumerate(events):
            t = _time_of(event, f"event {order}")
            fields = {key: value for key, value in event.items() if key not in _RESERVED}
            columns.add(t, str(event.get("src", "?")), str(event["ev"]), fields)
        self._build(columns)

    def _build(self, columns: _Columns) -> None:
        """Order the events by ``t`` (a stable sort: ties keep reading order) and index them."""
        ts, srcs, evs, bodies = columns.ts, columns.srcs, columns.evs, columns.bodies
        jobs = columns.jobs
        events: list[HistoryEvent] = []
        by_kind: dict[tuple[str, str], list[HistoryEvent]] = {}  # (ev, src) -> events
        new_event, append = HistoryEvent, events.append
        for line, index in enumerate(sorted(range(len(ts)), key=ts.__getitem__)):
            event = new_event(line, ts[index], srcs[index], evs[index], bodies[index], jobs[index])
            append(event)
            kind = event.ev, event.src
            try:
                by_kind[kind].append(event)
            except KeyError:
                by_kind[kind] = [event]
        self.events: tuple[HistoryEvent, ...] = tuple(events)
        self._by_kind = {kind: tuple(own) for kind, own in by_kind.items()}
        by_ev: dict[str, list[tuple[HistoryEvent, ...]]] = {}
        by_src: dict[str, list[tuple[HistoryEvent, ...]]] = {}
        for (ev, src), own in self._by_kind.items():
            by_ev.setdefault(ev, []).append(own)
            by_src.setdefault(src, []).append(own)
        self._by_ev = {ev: _merged(runs) for ev, runs in by_ev.items()}
        self._by_src = {src: _merged(runs) for src, runs in by_src.items()}
        self._by_job: dict[int, tuple[HistoryEvent, ...]] | None = None
        self._incarnations = self._index_incarnations()
        # When each epoch after the first began (a master started afresh).
        self._epoch_starts = [inc.t_start for inc in self._incarnations[1:] if not inc.resumed]
        self._submitted = self._index_submissions()
        self._terminals = self._index_terminals()
        self._leases = self._index_leases()
        by_job: dict[int, list[Lease]] = {}
        for lease in self._leases:
            by_job.setdefault(lease.job, []).append(lease)
        self._leases_by_job = {job: tuple(leases) for job, leases in by_job.items()}

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        paths: Iterable[str | os.PathLike[str]],
        *,
        results_path: str | os.PathLike[str] | None = None,
    ) -> History:
        """Merge event logs; optionally add the master's results output as ``result_output``.

        A torn last line (a process killed mid-write) is skipped; a corrupt line before the
        end of a log raises HistoryError.
        """
        columns = _Columns()
        collecting = gc.isenabled()
        gc.disable()  # millions of fresh dicts, none of them garbage: nothing to collect
        try:
            for path in paths:
                _read_log_into(path, columns)
            if results_path is not None:
                # Results carry no time: they sort after every logged event, in output order.
                end_t = max(columns.ts, default=0.0)
                for result in read_results(results_path):
                    order = len(columns.ts)
                    if not isinstance(result, dict):  # typed: exactly a result's keys
                        fields = cast(Mapping[str, Any], result)
                        columns.add(end_t, RESULTS, contract.RESULT_OUTPUT, fields)
                    elif "t" in result or "src" in result or "ev" in result:
                        event = {"t": end_t, "src": RESULTS, "ev": contract.RESULT_OUTPUT}
                        event.update(result)
                        t = _time_of(event, f"event {order}")
                        src, ev = str(event.pop("src")), str(event.pop("ev"))
                        del event["t"]
                        columns.add(t, src, ev, event)
                    else:
                        columns.add(end_t, RESULTS, contract.RESULT_OUTPUT, result)
            history = cls.__new__(cls)
            history._build(columns)
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

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[HistoryEvent]:
        return iter(self.events)

    def __getitem__(self, line: int) -> HistoryEvent:
        return self.events[line]

    @property
    def end_t(self) -> float:
        """The time of the last event (0.0 for an empty history)."""
        return self.events[-1].t if self.events else 0.0

    def select(
        self,
        ev: str | Iterable[str] | None = None,
        *,
        job: int | None = None,
        src: str | None = None,
        worker: str | None = None,
    ) -> tuple[HistoryEvent, ...]:
        """The events matching every given filter, in history order."""
        # Start from the narrowest index that applies, then filter by the rest.
        names: frozenset[str] | None = None
        found: Iterable[HistoryEvent]
        if job is not None:
            found = self.by_job(job)
            if ev is not None:
                names = frozenset((ev,) if isinstance(ev, str) else ev)
        elif ev is not None and src is not None:
            found, src = _merged([self._by_kind.get((name, src), ()) for name in _names(ev)]), None
        elif ev is not None:
            found = _merged([self._by_ev.get(name, ()) for name in _names(ev)])
        elif src is not None:
            found, src = self._by_src.get(src, ()), None
        else:
            found = self.events
        if names is not None:
            found = [event for event in found if event.ev in names]
        if src is not None:
            found = [event for event in found if event.src == src]
        if worker is not None:
            found = [event for event in found if event.get("worker") == worker]
        return tuple(found)

    def sources(self) -> tuple[str, ...]:
        """Every ``src`` in the history, in the order each first appears."""
        return tuple(self._by_src)

    def by_job(self, job: int) -> tuple[HistoryEvent, ...]:
        """The events naming ``job``, in history order (the index is built on first use)."""
        if self._by_job is None:
            index: dict[int, list[HistoryEvent]] = {}
            for event in self.events:
                if event.job is not None:
                    own = index.get(event.job)
                    if own is None:
                        own = index[event.job] = []
                    own.append(event)
            self._by_job = {key: tuple(own) for key, own in index.items()}
        return self._by_job.get(job, ())

    def submitted(self) -> Mapping[int, Submission]:
        """Every job the master submitted in the last epoch, by id (the first submission of
        an id wins)."""
        return self._submitted

    def terminals(self) -> Mapping[int, tuple[HistoryEvent, ...]]:
        """The master's terminal events (``result_accepted`` or ``dead``) of the last epoch,
        by job id."""
        return self._terminals

    def incarnations(self) -> tuple[Incarnation, ...]:
        """Each run of the master, in order (one, unless the harness restarted it)."""
        return self._incarnations

    def epoch_at(self, t: float) -> int:
        """The epoch (job space) of the master serving at time ``t``."""
        return bisect_right(self._epoch_starts, t) if self._epoch_starts else 0

    def leases(self, job: int | None = None) -> tuple[Lease, ...]:
        """The master's leases (of one job, or all) in the order they were granted."""
        if job is None:
            return self._leases
        return self._leases_by_job.get(job, ())

    def holder_at(self, job: int, t: float) -> str | None:
        """The worker holding a lease on ``job`` at time ``t``, if any."""
        holders = [lease.worker for lease in self.leases(job) if lease.held_at(t)]
        return holders[-1] if holders else None

    def jobs_held_by(self, worker: str, t: float) -> frozenset[int]:
        """The jobs ``worker`` held a lease on at time ``t``."""
        return frozenset(
            lease.job for lease in self._leases if lease.worker == worker and lease.held_at(t)
        )

    def faults(self) -> tuple[HistoryEvent, ...]:
        """The faults the harness injected, in the order they happened."""
        return self.select(contract.FAULT, src=HARNESS)

    def render(self, lines: Iterable[int]) -> str:
        """The given history lines, one compact line each, in history order."""
        return "\n".join(self.events[line].render() for line in sorted(set(lines)))

    # -- indexing (once, at construction) --------------------------------------------------

    def _last_epoch(self, events: tuple[HistoryEvent, ...]) -> Iterable[HistoryEvent]:
        """Those of ``events`` (in history order) from the last epoch's master."""
        if not self._epoch_starts:
            return events
        start = self._epoch_starts[-1]
        return (event for event in events if event.t >= start)

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

    def _index_submissions(self) -> Mapping[int, Submission]:
        submitted: dict[int, Submission] = {}
        for event in self._last_epoch(self.select(contract.JOB_SUBMITTED, src=MASTER)):
            job = event.job
            if job is None or job in submitted:
                continue
            args = event.get("args", ())
            batch = event.get("batch")
            submitted[job] = Submission(
                job=job,
                task=str(event.get("task", "")),
                args=tuple(args) if isinstance(args, list | tuple) else (args,),
                batch=batch if isinstance(batch, int) else None,
                line=event.line,
            )
        return MappingProxyType(submitted)

    def _index_terminals(self) -> Mapping[int, tuple[HistoryEvent, ...]]:
        terminals: dict[int, list[HistoryEvent]] = {}
        for event in self._last_epoch(self.select(TERMINAL_EVENTS, src=MASTER)):
            if event.job is not None:
                terminals.setdefault(event.job, []).append(event)
        return MappingProxyType({job: tuple(events) for job, events in terminals.items()})

    def _index_leases(self) -> tuple[Lease, ...]:
        """Replay the master's lease lifecycle: at most one open lease per job."""
        granted: list[HistoryEvent] = []  # each lease's ``leased`` event, in order
        epochs: list[int] = []  # each lease's epoch
        ended: dict[int, tuple[HistoryEvent | None, LeaseEnd]] = {}  # index into granted -> its end
        # job -> index into granted; (epoch, job) once the master started afresh (a job of a
        # later epoch is another job): the plain key keeps the common case fast
        open_lease: dict[int | tuple[int, int], int] = {}
        starts = self._epoch_starts
        epoch = 0

        def close(key: int | tuple[int, int], event: HistoryEvent, end: LeaseEnd) -> None:
            index = open_lease.pop(key, None)
            if index is not None:
                ended[index] = (event, end)

        leased, accepted, expired = (
            contract.LEASED,
            contract.RESULT_ACCEPTED,
            contract.LEASE_EXPIRED,
        )
        failed = (contract.ATTEMPT_FAILED, contract.DEAD)
        for event in self._by_src.get(MASTER, ()):
            job, ev = event.job, event.ev
            if starts:
                epoch = bisect_right(starts, event.t)
            if ev == contract.WORKER_LOST:
                for lost in event.get("jobs") or ():
                    if isinstance(lost, int):
                        close((epoch, lost) if starts else lost, event, "lost")
                continue
            if job is None:
                continue
            key = (epoch, job) if starts else job
            if ev == leased:
                if key in open_lease:
                    close(key, event, "superseded")  # a second lease while one is open: a bug
                open_lease[key] = len(granted)
                granted.append(event)
                epochs.append(epoch)
            elif ev == accepted:
                index = open_lease.get(key)
                if index is not None:
                    held = granted[index]
                    same = _int(held.get("attempt")) == event.get("attempt") and str(
                        held.get("worker", "")
                    ) == event.get("worker")
                    close(key, event, "completed" if same else "superseded")
            elif ev == expired:
                close(key, event, "expired")
            elif ev in failed:
                close(key, event, "failed")
        leases: list[Lease] = []
        no_end = (None, _OPEN)
        for index, event in enumerate(granted):
            end_event, end = ended.get(index, no_end)
            leases.append(
                Lease(
                    cast(int, event.job),
                    _int(event.get("attempt")),
                    _int(event.get("lease")),
                    str(event.get("worker", "")),
                    event.t,
                    None if end_event is None else end_event.t,
                    end,
                    event.line,
                    None if end_event is None else end_event.line,
                    epochs[index],
                )
            )
        return tuple(leases)


def _time_of(event: Mapping[str, Any], where: str) -> float:
    t = event.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise HistoryError(f"{where}: 't' must be a number of seconds, got {t!r}")
    if not isinstance(event.get("ev"), str):
        raise HistoryError(f"{where}: 'ev' must be an event name, got {event.get('ev')!r}")
    return float(t)


class _Columns:
    """Events as they are read, before they are ordered: time, source, name, fields, job."""

    def __init__(self) -> None:
        self.ts: list[float] = []
        self.srcs: list[str] = []
        self.evs: list[str] = []
        self.bodies: list[Mapping[str, Any]] = []
        self.jobs: list[int | None] = []

    def add(self, t: float, src: str, ev: str, fields: Mapping[str, Any]) -> None:
        job = fields.get("job")
        self.ts.append(t)
        self.srcs.append(sys.intern(src))
        self.evs.append(sys.intern(ev))
        self.bodies.append(fields)
        self.jobs.append(job if type(job) is int else None)


def _read_log_into(path: str | os.PathLike[str], columns: _Columns) -> None:
    """Add one log's events to ``columns``; ``t``, ``src`` and ``ev`` taken out of each
    dict (what is left are its fields, in the order the line had them)."""
    ts, srcs, evs, bodies, jobs = (
        columns.ts,
        columns.srcs,
        columns.evs,
        columns.bodies,
        columns.jobs,
    )
    intern, tags = sys.intern, TAGS
    for number, event in enumerate(read_events(path), start=1):
        if type(event) is not dict:
            typed: Any = event  # one of logread's kinds: t, src, job and the tag known
            ts.append(typed.t)
            srcs.append(intern(typed.src))
            evs.append(tags[type(typed)])
            bodies.append(typed)
            jobs.append(typed.job)
            continue
        t, ev = event.get("t"), event.get("ev")
        if (type(t) is not float and type(t) is not int) or type(ev) is not str:
            t = _time_of(event, f"{path}: event {number}")  # raises if bad
        src = event.pop("src", "?")
        del event["t"], event["ev"]
        job = event.get("job")
        ts.append(t if type(t) is float else float(t))
        srcs.append(intern(src if type(src) is str else str(src)))
        evs.append(intern(ev))  # type: ignore[arg-type]
        bodies.append(event)
        jobs.append(job if type(job) is int else None)


def _names(ev: str | Iterable[str]) -> Iterable[str]:
    return (ev,) if isinstance(ev, str) else dict.fromkeys(ev)


_line_of = attrgetter("line")


def _merged(runs: list[tuple[HistoryEvent, ...]]) -> tuple[HistoryEvent, ...]:
    """Runs of events, each in history order, as one run in history order."""
    runs = [run for run in runs if run]
    if len(runs) <= 1:
        return runs[0] if runs else ()
    return tuple(sorted(chain(*runs), key=_line_of))  # merges presorted runs in linear time


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
