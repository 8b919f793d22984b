"""The picture of a run as data: lanes, attempts, faults, batches and a summary.

Built from a History and its Verdict only, so it draws any system whose events follow the
history contract: a lane is a process the history shows (an event ``src``, a worker the
master leased to, a spawned process, a fault's target), never a name this module knows.
``harness.chart`` and ``harness.trace`` draw it.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import compress, repeat
from operator import add, and_, eq, mul, not_
from typing import Any, Literal, cast

from harness import contract as c
from harness.checks import Verdict
from harness.contract import HARNESS, MASTER, RESULTS
from harness.history import History, HistoryEvent, Leases

__all__ = [
    "NOTABLE_MAX",
    "OUTCOMES",
    "SUMMARY_OVER",
    "Attempt",
    "FaultMark",
    "Lane",
    "Plain",
    "Summary",
    "Timeline",
    "build_timeline",
    "stack_rows",
]

Outcome = Literal["accepted", "duplicate", "failed", "timed_out", "lost", "superseded", "open"]
#: Every outcome of an attempt, in legend order, with the words a reader sees.
OUTCOMES: Mapping[Outcome, str] = {
    "accepted": "accepted",
    "duplicate": "duplicate dropped",
    "failed": "failed",
    "timed_out": "timed out",
    "lost": "lost with its holder",
    "superseded": "superseded",
    "open": "still open at the end",
}
_LEASE_OUTCOME: Mapping[str, Outcome] = {
    "completed": "accepted",
    "failed": "failed",
    "expired": "timed_out",
    "lost": "lost",
    "superseded": "superseded",
    "open": "open",
}

# Faults drawn as a band from the action to its undoing; the rest are markers.
_BAND_ENDS = {name: row.ended_by for name, row in c.FAULT_ACTIONS.items() if row.drawn == "band"}
_LANE_MARKS = frozenset(
    {
        c.MASTER_READY,
        c.MASTER_STOPPED,
        c.WORKER_JOINED,
        c.WORKER_REJOINED,
        c.WORKER_LOST,
        c.WORKER_LEFT,
        c.WORKER_EXIT,
        c.RECONNECTED,
        c.AUTH_REJECTED,
        c.HANDSHAKE_TIMEOUT,
        c.LEASE_EXPIRED,
        c.HANG,
    }
)
# Master events about a worker, drawn on that worker's lane.
_ABOUT_A_WORKER = frozenset({c.WORKER_JOINED, c.WORKER_REJOINED, c.WORKER_LOST, c.WORKER_LEFT})
_MAX_LANE_MARKS = 600
#: Past this many leases a timeline is a summary: the accepted attempts no violation names
#: are kept as columns (``Plain``), not one ``Attempt`` each, and lines are gathered for
#: the attempts drawn only. A soak run has a million of them.
SUMMARY_OVER = 50_000
#: A summary draws at most this many attempts and this many violations; it counts the rest.
NOTABLE_MAX = 20_000
VIOLATIONS_MAX = 1_000
_KILL_GRACE_S = 0.5
_TIME_LIMIT = re.compile(r"time.?limit|timed out", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Lane:
    """One process of the run: when it was seen, how it ended, how many bar rows it needs."""

    name: str
    t_start: float
    t_end: float
    killed: bool
    exit_code: int | None
    rows: int
    seen: bool = True  # False: no event wrote or named it (a service spawned, or a target)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One lease of one job, drawn from lease to report (or to its lease's end)."""

    job: int
    attempt: int
    lane: str
    t_start: float
    t_end: float
    outcome: Outcome
    reason: str
    t_lease_end: float | None  # when the master ended the lease, if before ``t_end``
    lines: tuple[int, ...]
    row: int
    flagged: bool  # a violation names its job


@dataclass(frozen=True, slots=True)
class Plain:
    """The accepted attempts a summary timeline does not draw one by one, as columns:
    attempt ``i`` ran job ``job[i]`` on ``lanes[lane[i]]`` from ``t_start[i]`` to
    ``t_end[i]``."""

    lanes: tuple[str, ...]
    lane: array[int]
    job: array[int]
    t_start: array[float]
    t_end: array[float]

    def __len__(self) -> int:
        return len(self.job)


@dataclass(frozen=True, slots=True)
class FaultMark:
    """A fault: a marker (``t_end`` None) or a band; ``lane`` None means every lane."""

    label: str
    action: str
    lane: str | None
    t_start: float
    t_end: float | None
    lines: tuple[int, ...]
    missed: str = ""
    #: Why the fault did not take effect (its ``fault_effect`` says so), or "".
    unverified: str = ""


@dataclass(frozen=True, slots=True)
class Summary:
    """The header of a report: the verdict, each check's result and the run's counts."""

    status: str
    checks: Mapping[str, str]  # check name -> pass | fail | unknown | not recorded
    jobs: int
    results: int
    lost: int
    duplicated: int
    requeued: int
    dropped: int
    faults_planned: int | None
    faults_fired: int
    faults_hit: int
    wall_s: float


@dataclass(frozen=True, slots=True)
class Timeline:
    """Everything a report draws; ``lines`` fields are positions in the history."""

    title: str
    summary: Summary
    lanes: tuple[Lane, ...]
    attempts: tuple[Attempt, ...]
    faults: tuple[FaultMark, ...]
    batches: tuple[tuple[int, float, int], ...]  # (batch, t opened, line)
    marks: tuple[tuple[str, float, str, int], ...]  # (lane, t, ev, line)
    violations: tuple[dict[str, Any], ...]
    job_lines: Mapping[int, tuple[int, ...]]  # submission, requeues, dead: not one attempt's
    t_end: float
    #: A summary's accepted attempts that are not in ``attempts`` (None: every attempt is).
    plain: Plain | None = None
    #: What a summary left out: attempts and violations past its caps.
    attempts_left_out: int = 0
    violations_left_out: int = 0


def build_timeline(
    history: History,
    verdict: Verdict | None,
    *,
    title: str = "",
    faults_planned: int | None = None,
    summary: bool | None = None,
) -> Timeline:
    """The timeline of ``history``; ``verdict`` None when it was not recorded.

    ``summary``: keep plain accepted attempts as columns (``Timeline.plain``); by default
    when the history has more than ``SUMMARY_OVER`` leases."""
    if summary is None:
        summary = len(history.leases()) > SUMMARY_OVER
    flagged_jobs: set[int] = set()
    violations: list[dict[str, Any]] = []
    named = () if verdict is None else (*verdict.violations, *verdict.unknowns)
    shown = named[:VIOLATIONS_MAX] if summary else named
    for violation in shown:
        flagged_jobs.update(violation.jobs)
        violations.append(
            {
                "check": violation.check,
                "severity": violation.severity,
                "message": violation.message,
                "jobs": list(violation.jobs),
                "lines": sorted(set(violation.lines)),
            }
        )
    faults = _faults(history)
    lanes_seen = _lane_names(history)
    lines: dict[tuple[int, int], list[int]] | None = None
    job_lines: dict[int, list[int]] = {}
    if not summary:
        lines, job_lines = _lines(history)
    attempts, plain, left_out = _attempts(history, flagged_jobs, lines, summary)
    if summary:
        lines_of = _lines(history, {attempt.job for attempt in attempts})
        job_lines = lines_of[1]
        attempts = _with_lines(attempts, lines_of[0])
    lanes = _lanes(history, lanes_seen, attempts, faults)
    finished = _run_finished(history)
    t_end = max(
        [
            history.end_t,
            *(a.t_end for a in attempts),
            *(lane.t_end for lane in lanes),
            max(plain.t_end) if plain else 0.0,
        ],
        default=0.0,
    )
    batches = tuple(
        (int(event.get("batch")), event.t, event.line)
        for event in history.select(c.BATCH_OPENED, src=MASTER)
        if isinstance(event.get("batch"), int)
    )
    marks = [
        (lane, event.t, event.ev, event.line)
        for event in history.select(_LANE_MARKS)
        if (lane := _mark_lane(event))
    ][:_MAX_LANE_MARKS]
    return Timeline(
        title=title,
        summary=_summary(history, verdict, faults, faults_planned, finished, t_end),
        lanes=lanes,
        attempts=attempts,
        faults=faults,
        batches=batches,
        marks=tuple(marks),
        violations=tuple(violations),
        job_lines={job: tuple(own) for job, own in job_lines.items()},
        t_end=t_end,
        plain=plain,
        attempts_left_out=left_out,
        violations_left_out=len(named) - len(shown),
    )


def _lines(
    history: History, jobs: Iterable[int] | None = None
) -> tuple[dict[tuple[int, int], list[int]], dict[int, list[int]]]:
    """The history lines of each (job, attempt), and each job's lines that belong to no
    attempt (submission, requeues, dead), of every job or of ``jobs`` only."""
    events: Iterable[HistoryEvent]
    if jobs is None:
        events = history
    else:
        events = (event for job in sorted(set(jobs)) for event in history.by_job(job))
    lines: dict[tuple[int, int], list[int]] = {}
    job_lines: dict[int, list[int]] = {}
    for event in events:
        job = event.job
        if job is None or event.src == RESULTS:
            continue
        attempt = event.get("attempt")
        if isinstance(attempt, int):
            lines.setdefault((job, attempt), []).append(event.line)
        else:
            job_lines.setdefault(job, []).append(event.line)
    return lines, job_lines


# -- lanes ---------------------------------------------------------------------------------


def _natural(name: str) -> tuple[int, str, int]:
    """``master`` first, then by name with numbers compared as numbers (worker-2 < worker-10)."""
    match = re.fullmatch(r"(.*?)(\d+)", name)
    rank = 0 if name == MASTER else 1
    if match:
        return rank, match.group(1), int(match.group(2))
    return rank, name, -1


def _lane_names(history: History) -> list[str]:
    """Every process: one that wrote events, held a lease, was spawned (its exit code is
    recorded) or was the target of a fault (a broker that writes no events of its own)."""
    names = {src for src in history.sources() if src not in (HARNESS, RESULTS)}
    names.update(worker for worker in set(history.lease_table().worker) if worker)
    exit_codes = _run_finished(history).get("exit_codes")
    if isinstance(exit_codes, dict):
        names.update(str(name) for name in exit_codes)
    for fault in history.faults():
        target = fault.get("target")
        if isinstance(target, str) and target != "all" and not fault.get("missed"):
            names.add(target)
    return sorted(names, key=_natural)


def _lanes(
    history: History,
    names: list[str],
    attempts: tuple[Attempt, ...],
    faults: tuple[FaultMark, ...],
) -> tuple[Lane, ...]:
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    own_last: dict[str, float] = {}  # the last event the process wrote itself
    known = set(names)
    # History order is time order: a lane spans from the first event a process wrote or
    # was named in to the last. Its own events come from the source index; one pass finds
    # the events that name it.
    gone = (c.WORKER_LOST, c.WORKER_LEFT)
    first_line: dict[str, int] = {}
    last_line: dict[str, int] = {}
    # A kind (event and source) at a time: its worker fields read by C-level maps, and the
    # first and last line naming each worker found by list searches, not a pass in Python.
    for ev, src in history.kinds():
        if src == RESULTS:
            continue
        run = history.lines(ev, src=src)
        named = history.values(run, "worker")
        try:
            distinct = set(named)
        except TypeError:  # an unhashable value: no worker's name
            distinct = {name for name in named if isinstance(name, str)}
        backwards: list[Any] | None = None
        for name in distinct:
            if type(name) is not str or name not in known:
                continue
            start = run[named.index(name)]
            first_line[name] = min(first_line.get(name, start), start)
            # Another process's word that a worker is gone does not extend its lane.
            if name == src or ev not in gone:
                backwards = named[::-1] if backwards is None else backwards
                end = run[len(named) - 1 - backwards.index(name)]
                last_line[name] = max(last_line.get(name, end), end)
    first.update((name, history.t_at(line)) for name, line in first_line.items())
    last.update((name, history.t_at(line)) for name, line in last_line.items())
    for src in history.sources():
        if src == RESULTS:  # printed after the run, not something a process did then
            continue
        own = history.select(src=src)
        own_last[src] = own[-1].t
        if src in known:
            first[src] = min(first.get(src, own[0].t), own[0].t)
            last[src] = max(last.get(src, own[-1].t), own[-1].t)
    exit_codes = _run_finished(history).get("exit_codes") or {}
    rows: dict[str, int] = {}
    for attempt in attempts:
        rows[attempt.lane] = max(rows.get(attempt.lane, 0), attempt.row + 1)
    lanes = []
    for name in names:
        t_start, t_end = first.get(name, 0.0), last.get(name, 0.0)
        kills = [
            f.t_start for f in faults if f.lane == name and f.action in c.KILLS and not f.missed
        ]
        code = exit_codes.get(name) if isinstance(exit_codes, dict) else None
        code = code if isinstance(code, int) else None
        # The lane ends at a kill unless the process lived on (a restart under the same
        # name); an orphaned child may still log for a moment after its parent's SIGKILL.
        killed = bool(kills) and (
            (code is not None and code < 0)
            or own_last.get(name, t_start) <= kills[-1] + _KILL_GRACE_S
        )
        if killed:
            t_end = kills[-1]
        lanes.append(
            Lane(
                name,
                t_start,
                t_end,
                killed,
                code if isinstance(code, int) else None,
                rows.get(name, 0),
                seen=name in first,
            )
        )
    return tuple(lanes)


def _mark_lane(event: HistoryEvent) -> str:
    """Where a lifecycle event is drawn: on the worker it names, else on its writer."""
    worker = event.get("worker")
    if event.ev in _ABOUT_A_WORKER and isinstance(worker, str):
        return worker
    if event.src == HARNESS:
        return MASTER if event.ev == c.HANG else ""
    return event.src


def _run_finished(history: History) -> Mapping[str, Any]:
    ends = history.select(c.RUN_FINISHED, src=HARNESS)
    return ends[-1].fields if ends else {}


# -- attempts ------------------------------------------------------------------------------


def _late_reports(history: History, jobs: set[int]) -> dict[tuple[int, int, str], int]:
    """The line of the first report (dropped or accepted) of each (job, attempt, worker),
    for ``jobs`` only (the attempts drawn one by one: a soak run accepts a million)."""
    late_reports: dict[tuple[int, int, str], int] = {}
    if not jobs:
        return late_reports
    reports = history.lines((c.DUPLICATE_DROPPED, c.RESULT_ACCEPTED), src=MASTER)
    named = history.jobs_at(reports)
    chosen = list(map(jobs.__contains__, named))
    reports = list(compress(reports, chosen))
    for line, job, attempt, worker in zip(
        reports,
        cast(list[int], list(compress(named, chosen))),
        history.values(reports, "attempt"),
        history.values(reports, "worker", ""),
        strict=True,
    ):
        late_reports.setdefault((job, _int(attempt), str(worker)), line)
    return late_reports


def _attempts(
    history: History,
    flagged_jobs: set[int],
    lines: Mapping[tuple[int, int], list[int]] | None,
    summary: bool,
) -> tuple[tuple[Attempt, ...], Plain | None, int]:
    """Every attempt (a summary: the notable ones, the plain accepted ones as columns, and
    how many notable ones past the cap were left out). Without ``lines`` (a summary) an
    attempt's ``lines`` are only those its lease adds; ``_with_lines`` adds the rest."""
    own_lines: Mapping[tuple[int, int], list[int]] = {} if lines is None else lines
    # Reports that arrive after their lease ended: dropped (dedup working), or accepted
    # anyway (a bug the checks will name), keyed by job, attempt and worker.
    drawn: list[tuple[_Span, Outcome, float, float | None, str, tuple[int, ...]]] = []
    plain = (array("H"), array("q"), array("d"), array("d"))
    table = history.lease_table()  # read as columns: a soak run has a million leases
    # A summary keeps the plain attempts (accepted, of a job no violation names) as columns,
    # taken by C-level passes; a completed lease always has its end.
    is_plain = list(map(eq, table.end, repeat("completed"))) if summary else [False] * len(table)
    if summary and flagged_jobs:
        is_plain = list(map(and_, is_plain, map(not_, map(flagged_jobs.__contains__, table.job))))
    plain_lanes = {
        worker: lane for lane, worker in enumerate(dict.fromkeys(compress(table.worker, is_plain)))
    }
    plain[0].extend(map(plain_lanes.__getitem__, compress(table.worker, is_plain)))
    plain[1].extend(compress(table.job, is_plain))
    plain[2].extend(compress(table.t_start, is_plain))
    plain[3].extend(compress(table.t_end, is_plain))
    late_reports = _late_reports(history, set(compress(table.job, map(not_, is_plain))))
    for index in compress(range(len(table)), map(not_, is_plain)):
        lease = table[index]
        outcome = _LEASE_OUTCOME[lease.end]
        ended = None if lease.end_line is None else history[lease.end_line]
        reason = "" if ended is None else str(ended.get("reason") or "")
        if lease.end == "expired":
            reason = reason or "lease expired"
        if outcome == "failed" and _TIME_LIMIT.search(reason):
            outcome = "timed_out"
        t_end = history.end_t if lease.t_end is None else lease.t_end
        t_lease_end: float | None = None
        own = list(own_lines.get((lease.job, lease.attempt), ()))
        if lease.end_line is not None:
            own.append(lease.end_line)
        late_line = late_reports.get((lease.job, lease.attempt, lease.worker))
        late = None if late_line is None else history[late_line]
        if late is not None and outcome != "accepted" and late.t >= t_end:
            # The holder reported after all: the bar runs on to its report.
            dropped = late.ev == c.DUPLICATE_DROPPED
            words = "its late result was dropped" if dropped else "its late result was accepted"
            reason = f"{reason}; {words}" if reason else words
            outcome, t_lease_end, t_end = ("duplicate" if dropped else "accepted"), t_end, late.t
            own.append(late.line)
        span = _Span(lease.job, lease.attempt, lease.worker, lease.t_start)
        drawn.append((span, outcome, t_end, t_lease_end, reason, tuple(sorted(set(own)))))
    drawn += _unleased(history, own_lines, table)
    left_out = 0
    if summary and len(drawn) > NOTABLE_MAX:
        left_out = len(drawn) - NOTABLE_MAX
        drawn = drawn[:NOTABLE_MAX]
    rows = stack_rows([(span.worker, span.t_start, t_end) for span, _, t_end, *_ in drawn])
    attempts = tuple(
        Attempt(
            job=lease.job,
            attempt=lease.attempt,
            lane=lease.worker,
            t_start=lease.t_start,
            t_end=t_end,
            outcome=outcome,
            reason=reason,
            t_lease_end=t_lease_end,
            lines=own,
            row=row,
            flagged=lease.job in flagged_jobs,
        )
        for (lease, outcome, t_end, t_lease_end, reason, own), row in zip(drawn, rows, strict=True)
    )
    if not summary:
        return attempts, None, 0
    return attempts, Plain(tuple(plain_lanes), *plain), left_out


def _with_lines(
    attempts: tuple[Attempt, ...], lines: Mapping[tuple[int, int], list[int]]
) -> tuple[Attempt, ...]:
    """Each attempt with the history lines of its job and attempt added to its own."""
    return tuple(
        replace(a, lines=tuple(sorted({*lines.get((a.job, a.attempt), ()), *a.lines})))
        for a in attempts
    )


def _all_leased(jobs: list[int | None], attempts: list[Any], table: Leases) -> bool:
    """Whether every (job, attempt) started is one a lease covers (the common case, asked
    in C-level passes: each pair as one int, while every attempt fits 32 bits); False
    when unsure."""
    spread = 1 << 32
    if None in jobs or not set(map(type, attempts)) <= {int}:
        return False
    if attempts and not (min(attempts) >= 0 and max(attempts) < spread):
        return False
    if table.attempt and not (min(table.attempt) >= 0 and max(table.attempt) < spread):
        return False
    leased = set(map(add, map(mul, table.job, repeat(spread)), table.attempt))
    return leased.issuperset(map(add, map(mul, cast(list[int], jobs), repeat(spread)), attempts))


@dataclass(frozen=True, slots=True)
class _Span:
    """Where an attempt's bar starts: its job, attempt, worker and time."""

    job: int
    attempt: int
    worker: str
    t_start: float


def _unleased(
    history: History, lines: Mapping[tuple[int, int], list[int]], table: Leases
) -> list[tuple[_Span, Outcome, float, float | None, str, tuple[int, ...]]]:
    """Attempts no lease of the master's covers (an engine's broker hands jobs out): each a
    bar from the worker's ``started`` to its ``completed``, or to its kill (lost)."""
    lines_started = history.lines(c.STARTED)
    jobs, attempts = history.jobs_at(lines_started), history.values(lines_started, "attempt")
    if _all_leased(jobs, attempts, table):
        return []
    leased = set(zip(table.job, table.attempt, strict=True))
    starts = [
        history[line]
        for line, job, attempt in zip(lines_started, jobs, attempts, strict=True)
        if job is not None and isinstance(attempt, int) and (job, attempt) not in leased
    ]
    if not starts:
        return []
    kills: dict[str, float] = {}
    for fault in history.faults():
        target = fault.get("target")
        if fault.get("action") in c.KILLS and isinstance(target, str) and not fault.get("missed"):
            kills.setdefault(target, fault.t)
    accepted = {event.job for event in history.select(c.RESULT_ACCEPTED, src=MASTER)}
    completed = {
        (event.job, event.get("attempt"), event.src): event for event in history.select(c.COMPLETED)
    }
    found: list[tuple[_Span, Outcome, float, float | None, str, tuple[int, ...]]] = []
    for event in starts:
        attempt = event.get("attempt")
        if event.job is None or not isinstance(attempt, int) or (event.job, attempt) in leased:
            continue
        leased.add((event.job, attempt))  # a redelivered message starts once per attempt
        span = _Span(event.job, attempt, event.src, event.t)
        own = tuple(sorted(set(lines.get((event.job, attempt), ()))))
        done = completed.get((event.job, attempt, event.src))
        killed_at = kills.get(event.src)
        outcome: Outcome
        if done is not None:
            ok = done.get("ok") is not False
            outcome = "failed" if not ok else "accepted" if event.job in accepted else "open"
            reason = "" if outcome != "open" else "completed; no result accepted"
            found.append((span, outcome, done.t, None, reason, own))
        elif killed_at is not None and killed_at >= event.t:
            found.append((span, "lost", killed_at, None, f"its worker {event.src} was killed", own))
        else:
            found.append((span, "open", history.end_t, None, "", own))
    return found


#: Bars that overlap on one lane stack in rows; past this many they share the last rows.
MAX_ROWS = 6


def stack_rows(spans: Iterable[tuple[str, float, float]], max_rows: int = MAX_ROWS) -> list[int]:
    """A row per span so that spans of one lane in one row do not overlap (first fit).

    Past ``max_rows`` rows a span goes to the row that frees first and may overlap it.
    """
    free_at: dict[str, list[float]] = {}
    rows = []
    for lane, t_start, t_end in spans:
        ends = free_at.setdefault(lane, [])
        for row, end in enumerate(ends):
            if end <= t_start:
                ends[row] = t_end
                rows.append(row)
                break
        else:
            if len(ends) < max_rows:
                ends.append(t_end)
                rows.append(len(ends) - 1)
            else:
                row = min(range(max_rows), key=ends.__getitem__)
                ends[row] = max(ends[row], t_end)
                rows.append(row)
    return rows


# -- faults --------------------------------------------------------------------------------


def _faults(history: History) -> tuple[FaultMark, ...]:
    unverified = _unverified(history)  # once: a long run has many fault marks
    counted = _kernel_counts(history)
    marks = [
        replace(
            mark,
            label=mark.label + counted.get(mark.lines[0], ""),
            unverified=unverified.get(mark.lines[0], ""),
        )
        for mark in _fault_marks(history)
    ]
    return tuple(sorted(marks, key=lambda mark: (mark.t_start, mark.label)))


def _kernel_counts(history: History) -> dict[int, str]:
    """History line of each kernel fault -> what its counters said, for its label."""
    said: dict[tuple[object, object], str] = {}
    for event in history.select(c.FAULT_EFFECT, src=HARNESS):
        if c.fault_action(event.get("action")).kernel:
            dropped, held = event.get("dropped", 0), event.get("held_back", 0)
            said[(event.get("fault"), event.get("action"))] = (
                f" ({event.get('reset')} connections reset)"
                if "reset" in event.fields
                else f" ({held} packets held back)"
                if held
                else f" ({dropped} packets dropped)"
            )
    return {
        fault.line: said[key]
        for fault in history.faults()
        if (key := (fault.get("fault"), fault.get("action"))) in said
    }


def _unverified(history: History) -> dict[int, str]:
    """History line of each fault that did not take effect -> why (its ``fault_effect``)."""
    failed = {
        (event.get("fault"), event.get("action")): str(event.get("why") or "not verified")
        for event in history.select(c.FAULT_EFFECT, src=HARNESS)
        if event.get("verified") is not True
    }
    return {
        fault.line: failed[key]
        for fault in history.faults()
        if (key := (fault.get("fault"), fault.get("action"))) in failed
    }


def _fault_marks(history: History) -> list[FaultMark]:
    marks: list[FaultMark] = []
    open_bands: dict[tuple[str, str], tuple[HistoryEvent, str]] = {}
    for event in history.faults():
        action = str(event.get("action", "?"))
        target = event.get("target")
        lane = MASTER if action in c.MASTER_ACTIONS else target if isinstance(target, str) else None
        if lane == "all":
            lane = None
        missed = str(event.get("missed") or "")
        label = f"{action} {target}" if isinstance(target, str) else action
        if missed:
            marks.append(FaultMark(label, action, lane, event.t, None, (event.line,), missed))
        elif action in c.NETWORK_ACTIONS:
            continue  # drawn from the proxy's own events, for each link it touched
        elif action in _BAND_ENDS and lane is not None:
            open_bands[(_BAND_ENDS[action], lane)] = (event, label)
        elif lane is not None and (action, lane) in open_bands:
            start, start_label = open_bands.pop((action, lane))
            marks.append(
                FaultMark(
                    start_label,
                    str(start.get("action")),
                    lane,
                    start.t,
                    event.t,
                    (start.line, event.line),
                )
            )
        else:
            marks.append(FaultMark(label, action, lane, event.t, None, (event.line,)))
    for (_, lane), (start, label) in open_bands.items():
        marks.append(
            FaultMark(label, str(start.get("action")), lane, start.t, history.end_t, (start.line,))
        )
    marks.extend(_network_bands(history))
    return marks


def _network_bands(history: History) -> list[FaultMark]:
    """Partitions from cut to heal and toxics from added to removed, per proxied link.

    Their ``action`` is the kind of band drawn: ``partition`` or ``toxic``.
    """
    marks: list[FaultMark] = []
    # (kind, toxic name or "", proxy) -> the event that opened the band, and its label
    open_bands: dict[tuple[str, str, str], tuple[HistoryEvent, str]] = {}
    for event in history.select((c.PARTITION, c.HEAL, c.TOXIC_ADDED, c.TOXIC_REMOVED), src=HARNESS):
        proxy = event.get("proxy")
        if not isinstance(proxy, str):
            continue
        if event.ev == c.PARTITION:
            open_bands.setdefault(("partition", "", proxy), (event, f"partition {proxy}"))
        elif event.ev == c.TOXIC_ADDED:
            name = str(event.get("toxic"))
            label = f"toxic {name} ({event.get('kind')}) {proxy}"
            open_bands[("toxic", name, proxy)] = (event, label)
        else:
            key = (
                ("partition", "", proxy)
                if event.ev == c.HEAL
                else ("toxic", str(event.get("toxic")), proxy)
            )
            opened = open_bands.pop(key, None)
            if opened is not None:
                start, label = opened
                lines = (start.line, event.line)
                marks.append(FaultMark(label, key[0], proxy, start.t, event.t, lines))
    for (kind, _, proxy), (start, label) in open_bands.items():
        marks.append(FaultMark(label, kind, proxy, start.t, history.end_t, (start.line,)))
    return marks


# -- summary -------------------------------------------------------------------------------


def _summary(
    history: History,
    verdict: Verdict | None,
    faults: tuple[FaultMark, ...],
    faults_planned: int | None,
    finished: Mapping[str, Any],
    t_end: float,
) -> Summary:
    checks: dict[str, str] = {}
    if verdict is not None:
        for name in verdict.checks:
            checks[name] = "pass"
        for violation in verdict.unknowns:
            checks[violation.check] = "unknown"
        for violation in verdict.violations:
            checks[violation.check] = "fail"
    submitted = history.submitted()
    terminals = history.terminal_lines()  # counted unbuilt: a soak run has millions
    fired = {
        event.get("fault")
        for event in history.faults()
        if not event.get("scheduled") and not event.get("missed")
    }
    # A fault that fired but missed its window (fault_coverage said unknown) did not hit.
    missed: set[Any] = set()
    if verdict is not None:
        for violation in verdict.unknowns:
            if violation.check == "fault_coverage":
                missed.update(
                    history[line].get("fault")
                    for line in violation.lines
                    if 0 <= line < len(history) and history[line].ev == "fault"
                )
    wall = finished.get("elapsed_s")
    return Summary(
        status="not recorded" if verdict is None else verdict.status,
        checks=checks,
        jobs=len(submitted),
        results=sum(len(ends) for ends in terminals.values()),
        lost=sum(1 for job in submitted if job not in terminals),
        duplicated=sum(1 for ends in terminals.values() if len(ends) > 1),
        requeued=len(history.select(c.REQUEUED, src=MASTER)),
        dropped=len(history.select(c.DUPLICATE_DROPPED, src=MASTER)),
        faults_planned=faults_planned,
        faults_fired=len(fired),
        faults_hit=len(fired - missed),
        wall_s=float(wall) if isinstance(wall, int | float) else t_end,
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
