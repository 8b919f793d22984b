"""Checkers of the queue's stated semantics: attempts, terminals, batches, leases, limits.

Pure functions History -> violations, like ``harness.checks`` (which registers them). Each
compares what the system logged with what the scenario states (``max_attempts``,
``batch_size``, ``lease_timeout_s``...) and says ``unknown`` when the evidence is absent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness import contract
from harness.checks.violations import Violation
from harness.contract import HARNESS, MASTER, RESULTS
from harness.history import History, HistoryEvent

__all__ = [
    "SEMANTIC_CHECKS",
    "attempts_bounded",
    "batch_shape",
    "first_result_wins",
    "no_spurious_expiry",
    "one_terminal",
    "recovery_latency",
    "time_limits",
]

#: The close path's bound when the scenario states none: distq needs well under 0.2 s.
DEFAULT_RECOVERY_BOUND_S = 1.0
#: How late past its own limit a job may still be running (or be killed) by default.
DEFAULT_TIME_LIMIT_SLACK_S = 0.5
#: Scheduling allowance on top of lease_timeout_s + one heartbeat (the master's tick).
_EXPIRY_SLACK_S = 0.3
#: A worker reports a finished job within this long of being able to (its report
#: interval and tick are 0.02-0.2 s; the rest is room for a loaded machine).
_REPORT_MARGIN_S = 1.0
#: The runner writes ``started`` just after reading the clock it enforces limits from.
_CLOCK_TOLERANCE_S = 0.1

_GRACEFUL_EXITS = frozenset({"terminate", "restart"})  # SIGTERM: the worker hands back
_DEATHS = frozenset({"kill", "terminate", "restart"})  # the process is gone afterwards
_SUSPENDS = {"pause": "resume", "partition": "heal"}


def _unknown(check: str, message: str) -> list[Violation]:
    return [Violation(check, message, severity="unknown")]


def _master_events(history: History) -> tuple[HistoryEvent, ...]:
    return history.select(src=MASTER)


# -- what the harness did to each worker -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Faults:
    """Per worker: when a fault ended its process, and when it was suspended."""

    gone: Mapping[str, float]  # first kill / terminate / restart
    sigterm: Mapping[str, float]  # first terminate / restart
    killed: Mapping[str, float]  # first SIGKILL
    suspended: Mapping[str, tuple[tuple[float, float], ...]]  # pause / partition windows
    network: Mapping[str, float]  # first toxic or partition on its proxy

    def suspended_during(self, worker: str, start: float, end: float) -> bool:
        return any(a < end and start < b for a, b in self.suspended.get(worker, ()))

    def resumed_after(self, worker: str, t: float) -> float:
        """``t``, or the end of the suspension that covers ``t``."""
        for a, b in self.suspended.get(worker, ()):
            if a <= t < b:
                return b
        return t

    def disturbed(self, worker: str, start: float, end: float) -> bool:
        """Killed, stopped, suspended or on a toxic network somewhere in [start, end]."""
        return (
            self.gone.get(worker, math.inf) <= end
            or self.network.get(worker, math.inf) <= end
            or self.suspended_during(worker, start, end)
        )


def _faults(history: History) -> _Faults:
    gone: dict[str, float] = {}
    sigterm: dict[str, float] = {}
    killed: dict[str, float] = {}
    network: dict[str, float] = {}
    windows: dict[str, list[tuple[float, float]]] = {}
    opened: dict[tuple[str, str], float] = {}  # (worker, action) -> start
    for fault in history.faults():
        if fault.get("missed"):
            continue
        action, target = str(fault.get("action")), str(fault.get("target"))
        if action in _DEATHS:
            gone.setdefault(target, fault.t)
        if action in _GRACEFUL_EXITS:
            sigterm.setdefault(target, fault.t)
        if action == "kill":
            killed.setdefault(target, fault.t)
        if action in ("add_toxic", "partition"):
            network.setdefault(target, fault.t)
        if action in _SUSPENDS:
            opened[(target, action)] = fault.t
        for start_action, end_action in _SUSPENDS.items():
            if action == end_action and (target, start_action) in opened:
                windows.setdefault(target, []).append((opened.pop((target, start_action)), fault.t))
    for (target, _action), start in opened.items():
        windows.setdefault(target, []).append((start, math.inf))
    for event in history.select((contract.TOXIC_ADDED, contract.PARTITION), src=HARNESS):
        network.setdefault(str(event.get("proxy")), event.t)
    if "all" in network:
        for name in {e.src for e in history if e.src not in (MASTER, HARNESS, RESULTS)}:
            network.setdefault(name, network["all"])
    return _Faults(gone, sigterm, killed, {k: tuple(v) for k, v in windows.items()}, network)


# -- attempts_bounded --------------------------------------------------------------------


_HAND_BACKS = frozenset({contract.WORKER_LEFT, contract.WORKER_REJOINED})


def _graceful_losses(history: History, faults: _Faults) -> set[int]:
    """Lines of ``worker_lost`` events that are hand-backs: the master's next event about
    that worker is a ``worker_left`` or ``worker_rejoined`` naming the same jobs as
    ``handed_back``, or the worker had been sent SIGTERM (and not killed) and had not
    joined again since. (A rejoin after the master saw the connection close hands back
    nothing: that loss was a death, counted.)"""
    master = _master_events(history)
    graceful: set[int] = set()
    for index, event in enumerate(master):
        if event.ev != contract.WORKER_LOST:
            continue
        worker, jobs = event.get("worker"), event.get("jobs") or []
        following = next((e for e in master[index + 1 :] if e.get("worker") == worker), None)
        if (
            following is not None
            and following.ev in _HAND_BACKS
            and sorted(following.get("handed_back") or []) == sorted(jobs)
        ):
            graceful.add(event.line)
            continue
        sigterm = faults.sigterm.get(str(worker), math.inf)
        rejoined = [
            e.t
            for e in master
            if e.ev == contract.WORKER_JOINED and e.get("worker") == worker and e.t > sigterm
        ]
        if (
            sigterm <= event.t < min(rejoined, default=math.inf)
            and faults.killed.get(str(worker), math.inf) > event.t
        ):
            graceful.add(event.line)
    return graceful


def attempts_bounded(
    history: History, /, *, max_attempts: int | None = None, **_: Any
) -> list[Violation]:
    """No job is leased for more than ``max_attempts`` counted attempts; a job ends dead
    after exactly ``max_attempts``; hand-backs (bye, SIGTERM, rejoin) never count.

    A counted attempt ends with ``attempt_failed``; every lease names the attempt it is
    (one more than the counted ends before it). Attempts restart with a resubmission (a
    restarted master).
    """
    check = "attempts_bounded"
    if max_attempts is None:
        return _unknown(check, "the scenario states no max_attempts to hold the queue to")
    leases = history.select(contract.LEASED, src=MASTER)
    if not leases:
        return _unknown(check, "no lease in the master's log: no attempt to count")
    if any(not isinstance(e.get("attempt"), int) for e in leases):
        return _unknown(check, "the master's leases carry no attempt numbers")
    graceful = _graceful_losses(history, _faults(history))
    found: list[Violation] = []
    counted: dict[int, int] = {}
    handed_back: dict[int, int] = {}  # job -> line of the hand-back that ended its lease
    for event in _master_events(history):
        job = event.job
        if event.ev == contract.WORKER_LOST and event.line in graceful:
            for lost in event.get("jobs") or ():
                if isinstance(lost, int):
                    handed_back[lost] = event.line
            continue
        if job is None:
            continue
        if event.ev == contract.JOB_SUBMITTED:
            counted[job] = 0
            handed_back.pop(job, None)
        elif event.ev == contract.LEASED:
            attempt, before = event.get("attempt"), counted.get(job, 0)
            handed_back.pop(job, None)
            if attempt > max_attempts:
                message = f"job {job} leased for attempt {attempt} > max_attempts {max_attempts}"
                found.append(Violation(check, message, (job,), (event.line,)))
            elif attempt != before + 1:
                message = (
                    f"job {job} leased as attempt {attempt} after {before} counted failed "
                    f"attempt(s): an uncounted hand-back was counted, or a failure was not"
                )
                found.append(Violation(check, message, (job,), (event.line,)))
        elif event.ev == contract.ATTEMPT_FAILED:
            counted[job] = counted.get(job, 0) + 1
            back = handed_back.pop(job, None)
            if back is not None:
                message = f"job {job}: a graceful hand-back was counted as a failed attempt"
                found.append(Violation(check, message, (job,), (back, event.line)))
        elif event.ev == contract.DEAD and counted.get(job, 0) != max_attempts:
            message = (
                f"job {job} declared dead after {counted.get(job, 0)} counted attempt(s), "
                f"max_attempts is {max_attempts}"
            )
            found.append(Violation(check, message, (job,), (event.line,)))
    return found


# -- one_terminal ------------------------------------------------------------------------


def one_terminal(history: History, /, **_: Any) -> list[Violation]:
    """No job has two terminal events (accepted, dead) in the master's log, whatever the
    results output says. A resubmission (a restarted master) starts the job afresh."""
    check = "one_terminal"
    if not history.select(src=MASTER):
        return _unknown(check, "no events from the master: its log is missing or empty")
    ends: dict[int, list[HistoryEvent]] = {}
    found: list[Violation] = []
    for event in history.select(
        (contract.JOB_SUBMITTED, contract.RESULT_ACCEPTED, contract.DEAD), src=MASTER
    ):
        job = event.job
        if job is None:
            continue
        if event.ev == contract.JOB_SUBMITTED:
            ends[job] = []
            continue
        seen = ends.setdefault(job, [])
        seen.append(event)
        if len(seen) == 2:
            kinds = " then ".join(e.ev for e in seen)
            message = f"job {job} has two terminal events: {kinds}"
            found.append(Violation(check, message, (job,), tuple(e.line for e in seen)))
    return found


# -- batch_shape -------------------------------------------------------------------------


def batch_shape(history: History, /, *, batch_size: int | None = None, **_: Any) -> list[Violation]:
    """Every batch has exactly ``batch_size`` jobs, the last one the remainder; no more
    than ``batch_size`` distinct jobs are leased while one batch is open (a job set known
    up front: ``distq submit`` into an open master may close a batch early)."""
    check = "batch_shape"
    if batch_size is None:
        return _unknown(check, "the scenario states no batch_size")
    submitted = history.submitted()
    if not submitted:
        return _unknown(check, "no job_submitted in the master's log")
    members: dict[int, list[int]] = {}
    unbatched: list[int] = []
    for submission in submitted.values():
        if submission.batch is None:
            unbatched.append(submission.job)
        else:
            members.setdefault(submission.batch, []).append(submission.job)
    if not members:
        return _unknown(check, "no submission names its batch: the log cannot show batches")
    found: list[Violation] = []
    if unbatched:
        message = f"jobs {_ids(unbatched)} were submitted in no batch (batch_size {batch_size})"
        found.append(Violation(check, message, tuple(sorted(unbatched))))
    last = max(members, default=-1)
    for batch in range(last + 1):
        jobs = members.get(batch, [])
        ok = len(jobs) == batch_size or (batch == last and 0 < len(jobs) <= batch_size)
        if not ok:
            lines = tuple(submitted[job].line for job in jobs)
            message = f"batch {batch} has {len(jobs)} job(s), batch_size is {batch_size}"
            found.append(Violation(check, message, tuple(sorted(jobs)), lines))
    open_batch: int | None = None
    leased: set[int] = set()
    for event in history.select(
        (contract.BATCH_OPENED, contract.BATCH_CLOSED, contract.LEASED), src=MASTER
    ):
        if event.ev == contract.BATCH_OPENED:
            open_batch, leased = event.get("batch"), set()
        elif event.ev == contract.BATCH_CLOSED:
            open_batch = None
        elif open_batch is not None and event.job is not None:
            leased.add(event.job)
            if len(leased) == batch_size + 1:
                message = f"{len(leased)} distinct jobs leased while batch {open_batch} was open"
                found.append(Violation(check, message, tuple(sorted(leased)), (event.line,)))
    return found


def _ids(jobs: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(set(jobs))))


# -- recovery_latency --------------------------------------------------------------------


def _stated(history: History, key: str, given: float | None) -> float | None:
    """``given`` (the scenario's word), else what the master said at ``master_ready``."""
    if given is not None:
        return given
    for ready in reversed(history.select(contract.MASTER_READY, src=MASTER)):
        value = ready.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def recovery_latency(
    history: History,
    /,
    *,
    lease_timeout_s: float | None = None,
    recovery_bound_s: float | None = None,
    heartbeat_interval_s: float | None = None,
    **_: Any,
) -> list[Violation]:
    """A worker killed or stopped while holding leases has them back in the queue within
    ``recovery_bound_s`` (the close path); a paused or partitioned one within
    ``lease_timeout_s`` plus one heartbeat (the expiry path; both as the scenario states
    them, else as the master's ``master_ready`` does). The measured latencies are returned
    as notes, so the verdict reports them."""
    check = "recovery_latency"
    close_bound = DEFAULT_RECOVERY_BOUND_S if recovery_bound_s is None else recovery_bound_s
    faults = _faults(history)
    found: list[Violation] = []
    measured: list[str] = []
    for fault in history.faults():
        action, target = str(fault.get("action")), str(fault.get("target"))
        if fault.get("missed") or (action not in _DEATHS and action not in _SUSPENDS):
            continue
        if action in _DEATHS:
            bound, path = close_bound, "close"
        else:
            lease_s = _stated(history, "lease_timeout_s", lease_timeout_s)
            beat_s = _stated(history, "heartbeat_interval_s", heartbeat_interval_s)
            if lease_s is None or beat_s is None:
                why = f"neither the scenario nor the master states the lease and heartbeat to bound a {action}"
                return _unknown(check, why)
            bound, path = lease_s + beat_s + _EXPIRY_SLACK_S, "expiry"
        for lease in history.leases():
            if lease.worker != target or not lease.held_at(fault.t):
                continue
            end = math.inf if lease.t_end is None else lease.t_end
            if path == "expiry":
                if lease.end == "completed":
                    continue  # its holder's own result ended it: nothing to recover
                if faults.resumed_after(target, fault.t) <= fault.t + bound < end:
                    continue  # the holder was back within the bound and kept its lease
            latency = end - fault.t
            label = f"job {lease.job} of {target} after {action} ({path} path)"
            measured.append(f"{label}: {latency:.3f} s")
            if latency > bound:
                lines = (fault.line, lease.start_line) + (
                    () if lease.end_line is None else (lease.end_line,)
                )
                message = f"{label} back after {latency:.3f} s, bound {bound:g} s"
                found.append(Violation(check, message, (lease.job,), lines))
    if not measured:
        return _unknown(check, "no fault took a worker away while it held a lease")
    found.append(Violation(check, "measured: " + "; ".join(measured), severity="note"))
    return found


# -- no_spurious_expiry ------------------------------------------------------------------


def no_spurious_expiry(
    history: History, /, *, lease_timeout_s: float | None = None, **_: Any
) -> list[Violation]:
    """No lease expires while its holder is alive, not paused and not partitioned (nor on
    a toxic network): a heartbeating worker keeps its leases however long the job runs."""
    check = "no_spurious_expiry"
    if not history.select(contract.LEASED, src=MASTER):
        return _unknown(check, "no lease in the master's log")
    if not history.select(src=HARNESS):
        return _unknown(check, "no harness events: which faults were applied is unknown")
    faults = _faults(history)
    window = _stated(history, "lease_timeout_s", lease_timeout_s) or 0.0
    found: list[Violation] = []
    for event in history.select(contract.LEASE_EXPIRED, src=MASTER):
        worker = str(event.get("worker"))
        if faults.disturbed(worker, event.t - window - _EXPIRY_SLACK_S, event.t):
            continue
        if any(e.ev == contract.WORKER_EXIT and e.t <= event.t for e in history.select(src=worker)):
            continue
        message = f"lease of job {event.job} expired while its holder {worker} was healthy"
        jobs = () if event.job is None else (event.job,)
        found.append(Violation(check, message, jobs, (event.line,)))
    return found


# -- first_result_wins -------------------------------------------------------------------


def first_result_wins(history: History, /, **_: Any) -> list[Violation]:
    """A result that reaches the master before the job has a terminal result is accepted,
    even when the job is pending again (requeued): it is never dropped and the job never
    needs another run. From the master's log (a drop before any terminal) and from the
    workers' (a finished attempt that could report long before the job's terminal)."""
    check = "first_result_wins"
    completions = [e for e in history.select(contract.COMPLETED) if e.src != MASTER]
    if not completions:
        return _unknown(check, "no worker logged a finished job")
    found: list[Violation] = []
    first_end: dict[int, HistoryEvent] = {}
    for event in history.select(
        (
            contract.JOB_SUBMITTED,
            contract.RESULT_ACCEPTED,
            contract.DEAD,
            contract.DUPLICATE_DROPPED,
        ),
        src=MASTER,
    ):
        job = event.job
        if job is None:
            continue
        if event.ev == contract.JOB_SUBMITTED:
            first_end.pop(job, None)
        elif event.ev == contract.DUPLICATE_DROPPED:
            if job not in first_end and event.get("ok", True) is True:
                message = f"job {job}: a result was dropped before the job had any terminal result"
                found.append(Violation(check, message, (job,), (event.line,)))
        else:
            first_end.setdefault(job, event)
    faults = _faults(history)
    by_worker: dict[str, list[HistoryEvent]] = {}
    for event in history.select((contract.STARTED, contract.COMPLETED, contract.RUNNER_KILLED)):
        by_worker.setdefault(event.src, []).append(event)
    for done in completions:
        job = done.job
        end = None if job is None else first_end.get(job)
        if job is None or done.get("ok") is not True or end is None or end.t <= done.t:
            continue
        if end.ev == contract.RESULT_ACCEPTED and (end.get("worker"), end.get("attempt")) == (
            done.src,
            done.get("attempt"),
        ):
            continue
        reportable = faults.resumed_after(done.src, _sent_by(by_worker[done.src], done))
        if end.t <= reportable + _REPORT_MARGIN_S:
            continue
        if faults.disturbed(done.src, reportable, reportable + _REPORT_MARGIN_S) or (
            faults.gone.get(done.src, math.inf) <= reportable
            or faults.network.get(done.src, math.inf) <= reportable
        ):
            continue  # its report may never have left
        message = (
            f"job {job}: {done.src}'s ok result of attempt {done.get('attempt')} could "
            f"reach the master by t={reportable:.3f}, yet the job's terminal came at "
            f"t={end.t:.3f} from another attempt"
        )
        found.append(Violation(check, message, (job,), (done.line, end.line)))
    return found


def _sent_by(events: list[HistoryEvent], done: HistoryEvent) -> float:
    """When the job process had sent the outcome of ``done`` at the latest: outcomes of
    short jobs wait for the next job of the lease, so by that job's end."""
    after = [e for e in events if e.t > done.t or (e.t == done.t and e.line > done.line)]
    if after and after[0].ev == contract.STARTED:
        ends = [e for e in after[1:] if e.ev != contract.STARTED]
        return ends[0].t if ends else math.inf
    return done.t


# -- time_limits -------------------------------------------------------------------------


def time_limits(
    history: History, /, *, time_limit_slack_s: float | None = None, **_: Any
) -> list[Violation]:
    """No job is killed before its own limit elapsed since its own start, and none runs
    past it (plus the slack): neither finishes nor is killed nor still runs later."""
    check = "time_limits"
    slack = DEFAULT_TIME_LIMIT_SLACK_S if time_limit_slack_s is None else time_limit_slack_s
    limits: dict[int, float] = {}
    for event in history.select(contract.JOB_SUBMITTED, src=MASTER):
        limit = event.get("time_limit_s")
        if event.job is not None and isinstance(limit, int | float) and limit > 0:
            limits[event.job] = float(limit)
    faults = _faults(history)
    found: list[Violation] = []
    runs = 0
    by_worker: dict[str, list[HistoryEvent]] = {}
    for event in history.select(
        (contract.STARTED, contract.COMPLETED, contract.RUNNER_KILLED, contract.WORKER_EXIT)
    ):
        if event.src != MASTER:
            by_worker.setdefault(event.src, []).append(event)
    for worker, events in by_worker.items():
        for index, start in enumerate(events):
            job = start.job
            if start.ev != contract.STARTED or job not in limits:
                continue
            limit = limits[job]
            end = _end_of_run(events[index + 1 :], start)
            deadline = start.t + limit + slack
            if faults.disturbed(worker, start.t, min(deadline, end.t if end else math.inf)):
                continue  # a stopped or killed worker cannot enforce anything
            if end is None and history.end_t <= deadline:
                continue  # the history ends before the limit could pass
            runs += 1
            if end is None:
                message = (
                    f"job {job} (limit {limit:g} s) started at t={start.t:.3f} on {worker} "
                    "and never ended"
                )
                found.append(Violation(check, message, (job,), (start.line,)))
                continue
            ran = end.t - start.t
            lines = (start.line, end.line)
            limit_kill = end.ev == contract.RUNNER_KILLED and end.get("time_limit_s") is not None
            if limit_kill and ran < limit - _CLOCK_TOLERANCE_S:
                message = f"job {job} killed after {ran:.3f} s of its own, its limit is {limit:g} s"
                found.append(Violation(check, message, (job,), lines))
            if ran > limit + slack:
                what = "killed" if end.ev == contract.RUNNER_KILLED else "ran"
                message = (
                    f"job {job} {what} after {ran:.3f} s, its limit is {limit:g} s (+{slack:g})"
                )
                found.append(Violation(check, message, (job,), lines))
    if not runs:
        return _unknown(check, "no job with a time limit started (or the log gives no limits)")
    return found


def _end_of_run(later: list[HistoryEvent], start: HistoryEvent) -> HistoryEvent | None:
    """The event that ended the run ``start`` began: its completion, a kill blamed on it,
    the next job's start (it died unblamed) or the worker's exit."""
    for event in later:
        if event.ev in (contract.COMPLETED, contract.RUNNER_KILLED) and event.job == start.job:
            return event
        if event.ev in (contract.STARTED, contract.WORKER_EXIT):
            return event
    return None


SEMANTIC_CHECKS: Mapping[str, Callable[..., list[Violation]]] = {
    "attempts_bounded": attempts_bounded,
    "one_terminal": one_terminal,
    "batch_shape": batch_shape,
    "recovery_latency": recovery_latency,
    "no_spurious_expiry": no_spurious_expiry,
    "first_result_wins": first_result_wins,
    "time_limits": time_limits,
}
