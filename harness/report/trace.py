"""``trace.json``: a run as Chrome trace events, for Perfetto and ``chrome://tracing``.

One process track per lane; its threads are the rows of overlapping leases, plus one for
its lifetime and lifecycle events and one for the faults that hit it. A summary timeline's
plain accepted attempts are not events of their own: each lane gets a counter of how many
of them ran in each of ``COUNTER_BUCKETS`` slices of the run, and ``otherData`` says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from harness.report.timeline import Timeline, stack_rows

__all__ = ["trace_events", "write_trace"]

# Trace viewers' reserved colour names, one per outcome.
_COLOURS = {
    "accepted": "good",
    "duplicate": "olive",
    "failed": "bad",
    "timed_out": "yellow",
    "lost": "terrible",
    "superseded": "grey",
    "open": "generic_work",
}
_LIFE_TID, _FAULT_TID, _FIRST_ROW_TID = 0, 1, 2
_GLOBAL_PID = 0  # faults and batches that hit every lane
COUNTER_BUCKETS = 2000


def _us(t: float) -> float:
    return round(t * 1e6, 1)


def trace_events(timeline: Timeline) -> dict[str, Any]:
    """The Chrome trace-event JSON object of ``timeline`` (timestamps in microseconds)."""
    pids = {lane.name: index + 1 for index, lane in enumerate(timeline.lanes)}
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": _GLOBAL_PID, "args": {"name": "run"}}
    ]
    events += _lane_events(timeline, pids)
    events += _attempt_events(timeline, pids)
    events += _fault_events(timeline, pids)
    events += _batch_events(timeline)
    events += _mark_events(timeline, pids)
    events += _plain_counters(timeline, pids)
    s = timeline.summary
    other: dict[str, Any] = {"title": timeline.title, "verdict": s.status, "checks": dict(s.checks)}
    if timeline.plain is not None:
        other["aggregated"] = (
            f"{len(timeline.plain)} accepted attempts no violation names are counted per lane "
            f"in {COUNTER_BUCKETS} slices of the run ('accepted attempts' counters), not drawn "
            f"one by one; {len(timeline.attempts)} attempts are"
        )
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def _plain_counters(timeline: Timeline, pids: dict[str, int]) -> list[dict[str, Any]]:
    """Per lane, how many plain accepted attempts ran in each slice of the run."""
    plain = timeline.plain
    if plain is None or not len(plain):
        return []
    slice_s = max(timeline.t_end, 1e-6) / COUNTER_BUCKETS
    counts = [[0] * (COUNTER_BUCKETS + 1) for _ in plain.lanes]
    for lane, t_start, t_end in zip(plain.lane, plain.t_start, plain.t_end, strict=True):
        own = counts[lane]
        for index in range(int(t_start / slice_s), min(COUNTER_BUCKETS, int(t_end / slice_s)) + 1):
            own[index] += 1
    events: list[dict[str, Any]] = []
    for name, own in zip(plain.lanes, counts, strict=True):
        if name not in pids:
            continue
        previous = -1
        for index, count in enumerate(own):
            if count != previous:  # a counter holds its value until the next sample
                events.append(
                    {
                        "ph": "C",
                        "name": "accepted attempts",
                        "pid": pids[name],
                        "ts": _us(index * slice_s),
                        "args": {"running": count},
                    }
                )
                previous = count
    return events


def _lane_events(timeline: Timeline, pids: dict[str, int]) -> list[dict[str, Any]]:
    """Each lane's process track: its name, its place, its two fixed threads (lifetime,
    faults) and the span of its lifetime."""
    events: list[dict[str, Any]] = []
    for lane in timeline.lanes:
        pid = pids[lane.name]
        events += [
            {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": lane.name}},
            {"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}},
            {
                "ph": "M",
                "name": "thread_name",
                "pid": pid,
                "tid": _LIFE_TID,
                "args": {"name": "process"},
            },
            {
                "ph": "M",
                "name": "thread_name",
                "pid": pid,
                "tid": _FAULT_TID,
                "args": {"name": "faults"},
            },
            {
                "ph": "X",
                "name": "killed" if lane.killed else "alive",
                "pid": pid,
                "tid": _LIFE_TID,
                "ts": _us(lane.t_start),
                "dur": _us(max(0.0, lane.t_end - lane.t_start)),
                "args": {"exit_code": lane.exit_code, "killed": lane.killed},
            },
        ]
    return events


def _attempt_events(timeline: Timeline, pids: dict[str, int]) -> list[dict[str, Any]]:
    """One complete event per attempt, on the first row of its lane it does not overlap
    (each row a thread, named as it is first used)."""
    events: list[dict[str, Any]] = []
    # Complete events on one thread must not overlap: as many rows as the leases need.
    rows = stack_rows(((a.lane, a.t_start, a.t_end) for a in timeline.attempts), max_rows=1 << 20)
    named: set[tuple[int, int]] = set()
    for attempt, row in zip(timeline.attempts, rows, strict=True):
        if attempt.lane not in pids:
            continue
        pid = pids[attempt.lane]
        tid = _FIRST_ROW_TID + row
        if (pid, tid) not in named:
            named.add((pid, tid))
            events.append(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": pid,
                    "tid": tid,
                    "args": {"name": f"leases {row + 1}"},
                }
            )
        events.append(
            {
                "ph": "X",
                "name": f"job {attempt.job} attempt {attempt.attempt}",
                "cat": attempt.outcome,
                "cname": _COLOURS[attempt.outcome],
                "pid": pid,
                "tid": tid,
                "ts": _us(attempt.t_start),
                "dur": _us(max(0.0, attempt.t_end - attempt.t_start)),
                "args": {
                    "job": attempt.job,
                    "attempt": attempt.attempt,
                    "worker": attempt.lane,
                    "outcome": attempt.outcome,
                    "reason": attempt.reason,
                    "history_lines": list(attempt.lines),
                    "named_by_violation": attempt.flagged,
                },
            }
        )
    return events


def _fault_events(timeline: Timeline, pids: dict[str, int]) -> list[dict[str, Any]]:
    """Each fault on its lane's fault thread (or the run's, when it hit every lane): an
    instant for a marker, a complete event for a band."""
    events: list[dict[str, Any]] = []
    for fault in timeline.faults:
        pid = pids.get(fault.lane or "", _GLOBAL_PID)
        args = {"action": fault.action, "history_lines": list(fault.lines), "missed": fault.missed}
        if fault.t_end is None:
            scope = "p" if pid != _GLOBAL_PID else "g"
            events.append(
                {
                    "ph": "i",
                    "s": scope,
                    "name": fault.label,
                    "cat": "fault",
                    "pid": pid,
                    "tid": _FAULT_TID,
                    "ts": _us(fault.t_start),
                    "args": args,
                }
            )
        else:
            events.append(
                {
                    "ph": "X",
                    "name": fault.label,
                    "cat": "fault",
                    "cname": "bad",
                    "pid": pid,
                    "tid": _FAULT_TID,
                    "ts": _us(fault.t_start),
                    "dur": _us(max(0.0, fault.t_end - fault.t_start)),
                    "args": args,
                }
            )
    return events


def _batch_events(timeline: Timeline) -> list[dict[str, Any]]:
    """A global instant where each batch opened."""
    return [
        {
            "ph": "i",
            "s": "g",
            "name": f"batch {batch} opened",
            "cat": "batch",
            "pid": _GLOBAL_PID,
            "tid": 0,
            "ts": _us(t),
            "args": {"history_line": line},
        }
        for batch, t, line in timeline.batches
    ]


def _mark_events(timeline: Timeline, pids: dict[str, int]) -> list[dict[str, Any]]:
    """The lifecycle events of each lane, as instants on its lifetime thread."""
    return [
        {
            "ph": "i",
            "s": "t",
            "name": ev,
            "cat": "lifecycle",
            "pid": pids[mark_lane],
            "tid": _LIFE_TID,
            "ts": _us(t),
            "args": {"history_line": line},
        }
        for mark_lane, t, ev, line in timeline.marks
        if mark_lane in pids
    ]


def write_trace(path: str | os.PathLike[str], timeline: Timeline) -> Path:
    target = Path(path)
    target.write_text(json.dumps(trace_events(timeline), separators=(",", ":")) + "\n")
    return target
