"""One ordered history of a run, merged from the event logs of master, workers and harness.

Events are ordered by ``t`` (every process shares one epoch), ties kept in reading order.
The queries answer what the checkers ask: which jobs were submitted, which terminal
results the master recorded, and which worker held which job when (from the master's
leases, the authoritative view).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from harness import contract
from harness.contract import EVENTS_GLOB, HARNESS, MASTER, RESULTS, TERMINAL_EVENTS, CorruptLog

__all__ = [
    "HARNESS",
    "MASTER",
    "RESULTS",
    "TERMINAL_EVENTS",
    "History",
    "HistoryError",
    "HistoryEvent",
    "Lease",
    "LeaseEnd",
    "Submission",
]


LeaseEnd = Literal["completed", "failed", "expired", "lost", "superseded", "open"]

_RESERVED = contract.RESERVED_FIELDS
_RENDER_VALUE_CHARS = 80
_SPACE = re.compile(r"\s")


class HistoryError(ValueError):
    """An event that cannot be placed in a history (no numeric ``t``, no ``ev``), or a
    damaged log (a corrupt line before its end)."""


@dataclass(frozen=True, slots=True, eq=False)
class HistoryEvent:
    """One event at its position (``line``) in the merged history.

    Compared by identity: a line of a history is one event, and ``fields`` is not hashable.
    """

    line: int
    t: float
    src: str
    ev: str
    fields: Mapping[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    @property
    def job(self) -> int | None:
        """The event's job id, if it names one."""
        job = self.fields.get("job")
        return job if isinstance(job, int) and not isinstance(job, bool) else None

    def render(self) -> str:
        """One compact line: ``#12 t=0.632582 master leased job=0 attempt=1 ...``."""
        parts = [f"#{self.line}", f"t={self.t:.6f}", self.src, self.ev]
        parts.extend(f"{key}={_compact(value)}" for key, value in self.fields.items())
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Submission:
    """A job as the master submitted it."""

    job: int
    task: str
    args: tuple[Any, ...]
    batch: int | None
    line: int


@dataclass(frozen=True, slots=True)
class Lease:
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

    def held_at(self, t: float) -> bool:
        return self.t_start <= t and (self.t_end is None or t < self.t_end)


class History:
    """An immutable, ordered run history and the queries the checkers need."""

    def __init__(self, events: Iterable[Mapping[str, Any]]) -> None:
        keyed: list[tuple[float, int, Mapping[str, Any]]] = []
        for order, event in enumerate(events):
            keyed.append((_time_of(event, f"event {order}"), order, event))
        keyed.sort(key=lambda item: (item[0], item[1]))
        self.events: tuple[HistoryEvent, ...] = tuple(
            _to_event(line, t, event) for line, (t, _order, event) in enumerate(keyed)
        )
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
        events: list[dict[str, Any]] = []
        try:
            for path in paths:
                for number, event in enumerate(contract.read_log(path), start=1):
                    _time_of(event, f"{path}: event {number}")
                    events.append(event)
            if results_path is not None:
                # Results carry no time: they sort after every logged event, in output order.
                end_t = max((float(event["t"]) for event in events), default=0.0)
                for result in contract.read_log(results_path):
                    events.append(
                        {"t": end_t, "src": RESULTS, "ev": contract.RESULT_OUTPUT, **result}
                    )
        except CorruptLog as exc:
            raise HistoryError(str(exc)) from None
        return cls(events)

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
        names = None if ev is None else frozenset((ev,) if isinstance(ev, str) else ev)
        return tuple(
            event
            for event in self.events
            if (names is None or event.ev in names)
            and (job is None or event.job == job)
            and (src is None or event.src == src)
            and (worker is None or event.get("worker") == worker)
        )

    def submitted(self) -> Mapping[int, Submission]:
        """Every job the master submitted, by id (the first submission of an id wins)."""
        return self._submitted

    def terminals(self) -> Mapping[int, tuple[HistoryEvent, ...]]:
        """The master's terminal events (``result_accepted`` or ``dead``) by job id."""
        return self._terminals

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

    def _index_submissions(self) -> Mapping[int, Submission]:
        submitted: dict[int, Submission] = {}
        for event in self.select(contract.JOB_SUBMITTED, src=MASTER):
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
        for event in self.select(TERMINAL_EVENTS, src=MASTER):
            if event.job is not None:
                terminals.setdefault(event.job, []).append(event)
        return MappingProxyType({job: tuple(events) for job, events in terminals.items()})

    def _index_leases(self) -> tuple[Lease, ...]:
        """Replay the master's lease lifecycle: at most one open lease per job."""
        leases: list[Lease] = []
        open_lease: dict[int, int] = {}  # job -> index into leases

        def close(job: int, event: HistoryEvent, end: LeaseEnd) -> None:
            index = open_lease.pop(job, None)
            if index is not None:
                opened = leases[index]
                leases[index] = Lease(
                    opened.job,
                    opened.attempt,
                    opened.lease,
                    opened.worker,
                    opened.t_start,
                    event.t,
                    end,
                    opened.start_line,
                    event.line,
                )

        for event in self.events:
            if event.src != MASTER:
                continue
            job = event.job
            if event.ev == contract.WORKER_LOST:
                for lost in event.get("jobs") or ():
                    if isinstance(lost, int):
                        close(lost, event, "lost")
                continue
            if job is None:
                continue
            if event.ev == contract.LEASED:
                close(job, event, "superseded")  # a second lease while one is open: a bug
                open_lease[job] = len(leases)
                leases.append(
                    Lease(
                        job=job,
                        attempt=_int(event.get("attempt")),
                        lease=_int(event.get("lease")),
                        worker=str(event.get("worker", "")),
                        t_start=event.t,
                        t_end=None,
                        end="open",
                        start_line=event.line,
                        end_line=None,
                    )
                )
            elif event.ev == contract.RESULT_ACCEPTED:
                index = open_lease.get(job)
                if index is not None:
                    held = leases[index]
                    same = held.attempt == event.get("attempt") and held.worker == event.get(
                        "worker"
                    )
                    close(job, event, "completed" if same else "superseded")
            elif event.ev == contract.LEASE_EXPIRED:
                close(job, event, "expired")
            elif event.ev in (contract.ATTEMPT_FAILED, contract.DEAD):
                close(job, event, "failed")
        return tuple(leases)


def _time_of(event: Mapping[str, Any], where: str) -> float:
    t = event.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise HistoryError(f"{where}: 't' must be a number of seconds, got {t!r}")
    if not isinstance(event.get("ev"), str):
        raise HistoryError(f"{where}: 'ev' must be an event name, got {event.get('ev')!r}")
    return float(t)


def _to_event(line: int, t: float, event: Mapping[str, Any]) -> HistoryEvent:
    fields = {key: value for key, value in event.items() if key not in _RESERVED}
    return HistoryEvent(
        line=line,
        t=t,
        src=str(event.get("src", "?")),
        ev=str(event["ev"]),
        fields=MappingProxyType(fields),
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
