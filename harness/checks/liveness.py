"""Liveness and latency: the run ended in its bound, recovery came soon after a fault,
no lease expired early, and job time limits were enforced.
"""

from __future__ import annotations

import math

from harness import contract
from harness.checks.context import NO_CONTEXT, CheckContext
from harness.checks.struck import (
    struck,
)
from harness.checks.violations import Violation, undecided
from harness.contract import HARNESS, MASTER
from harness.history import History, HistoryEvent

__all__ = [
    "DEFAULT_RECOVERY_BOUND_S",
    "DEFAULT_TIME_LIMIT_SLACK_S",
    "MASTER_KILL_ACTIONS",
    "liveness",
    "no_spurious_expiry",
    "recovery_latency",
    "time_limits",
]


#: Faults that kill the master for good: ``kill`` aimed at it by name, or ``kill_master``.
MASTER_KILL_ACTIONS = contract.KILLS


def liveness(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """The run finished within its bound and the master stopped by itself.

    Uses the harness's ``run_finished`` (``elapsed_s``, ``bound_s``, ``timed_out``).
    ``master_killed`` says whether the master was killed on purpose (no ``master_stopped``
    expected); by default it is read from the harness faults that target the master.
    """
    master_killed = context.master_killed
    check = "liveness"
    terminals = history.terminals()
    unfinished = tuple(sorted(job for job in history.submitted() if job not in terminals))
    # For each unfinished job, the last thing the master recorded about it.
    last_seen: list[int] = []
    if unfinished:
        master = history.lines(src=MASTER)
        last_line = dict(zip(history.jobs_at(master), master, strict=True))
        last_seen = [last_line[job] for job in unfinished]
    suffix = f"; {len(unfinished)} job(s) unfinished" if unfinished else ""
    found: list[Violation] = []
    timed_out = False
    finished = history.select(contract.RUN_FINISHED, src=HARNESS)
    if not finished:
        message = "no run_finished event from the harness: the time bound was not recorded"
        found.append(Violation(check, message, unfinished, tuple(last_seen), "unknown"))
    else:
        context.judged(1, "run")
        run = finished[-1]
        elapsed_s, bound_s = run.get("elapsed_s"), run.get("bound_s")
        over = isinstance(elapsed_s, int | float) and isinstance(bound_s, int | float)
        timed_out = run.get("timed_out") is True or (over and elapsed_s > bound_s)
        if timed_out:
            message = f"run did not finish within {bound_s} s (elapsed {elapsed_s} s){suffix}"
            found.append(Violation(check, message, unfinished, (run.line, *last_seen)))
    if master_killed is None:
        master_killed = _master_killed(history)
    # A timed-out run had its master stopped by the harness: one violation is enough.
    if not (master_killed or timed_out) and not history.select(contract.MASTER_STOPPED, src=MASTER):
        message = f"the master never wrote master_stopped and was not killed on purpose{suffix}"
        found.append(Violation(check, message, unfinished, tuple(last_seen)))
    return found


def _master_killed(history: History) -> bool:
    """True when the last harness fault aimed at the master killed it."""
    killed = False
    for fault in history.faults():
        action = fault.get("action")
        if fault.get("target") == MASTER or action in contract.MASTER_ACTIONS:
            killed = action in MASTER_KILL_ACTIONS
    return killed


#: The close path's bound when the scenario states none: distq needs well under 0.2 s.
DEFAULT_RECOVERY_BOUND_S = 1.0

#: How late past its own limit a job may still be running (or be killed) by default.
DEFAULT_TIME_LIMIT_SLACK_S = 0.5

#: Scheduling allowance on top of lease_timeout_s + one heartbeat (the master's tick).
_EXPIRY_SLACK_S = 0.3


#: The runner writes ``started`` just after reading the clock it enforces limits from.
_CLOCK_TOLERANCE_S = 0.1


def _stated(history: History, key: str, given: float | None) -> float | None:
    """``given`` (the scenario's word), else what the master said at ``master_ready``."""
    if given is not None:
        return given
    for ready in reversed(history.select(contract.MASTER_READY, src=MASTER)):
        value = ready.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def recovery_latency(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """A worker killed or stopped while holding leases has them back in the queue within
    ``recovery_bound_s`` (the close path); a paused or partitioned one within
    ``lease_timeout_s`` plus one heartbeat (the expiry path; both as the scenario states
    them, else as the master's ``master_ready`` does). The measured latencies are returned
    as notes, so the verdict reports them."""
    lease_timeout_s = context.lease_timeout_s
    recovery_bound_s = context.recovery_bound_s
    heartbeat_interval_s = context.heartbeat_interval_s
    check = "recovery_latency"
    close_bound = DEFAULT_RECOVERY_BOUND_S if recovery_bound_s is None else recovery_bound_s
    faults = struck(history)
    found: list[Violation] = []
    measured: list[str] = []
    for fault in history.faults():
        action, target = str(fault.get("action")), str(fault.get("target"))
        if fault.get("missed") or (
            action not in contract.PROCESS_DEATHS and action not in contract.SUSPENDS
        ):
            continue
        if action in contract.PROCESS_DEATHS:
            bound, path = close_bound, "close"
        else:
            lease_s = _stated(history, "lease_timeout_s", lease_timeout_s)
            beat_s = _stated(history, "heartbeat_interval_s", heartbeat_interval_s)
            if lease_s is None or beat_s is None:
                why = f"neither the scenario nor the master states the lease and heartbeat to bound a {action}"
                return undecided(check, why)
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
        return undecided(check, "no fault took a worker away while it held a lease")
    context.judged(len(measured), "recoveries")
    found.append(Violation(check, "measured: " + "; ".join(measured), severity="note"))
    return found


def no_spurious_expiry(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """No lease expires while its holder is alive, not paused and not partitioned (nor on
    a toxic network): a heartbeating worker keeps its leases however long the job runs."""
    lease_timeout_s = context.lease_timeout_s
    check = "no_spurious_expiry"
    if not history.select(contract.LEASED, src=MASTER):
        return undecided(check, "no lease in the master's log")
    if not history.select(src=HARNESS):
        return undecided(check, "no harness events: which faults were applied is unknown")
    faults = struck(history)
    window = _stated(history, "lease_timeout_s", lease_timeout_s) or 0.0
    context.judged(len(history.leases()), "leases")
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


def time_limits(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """No job is killed before its own limit elapsed since its own start, and none runs
    past it (plus the slack): neither finishes nor is killed nor still runs later."""
    time_limit_slack_s = context.time_limit_slack_s
    check = "time_limits"
    slack = DEFAULT_TIME_LIMIT_SLACK_S if time_limit_slack_s is None else time_limit_slack_s
    limits: dict[int, float] = {}
    for event in history.select(contract.JOB_SUBMITTED, src=MASTER):
        limit = event.get("time_limit_s")
        if event.job is not None and isinstance(limit, int | float) and limit > 0:
            limits[event.job] = float(limit)
    faults = struck(history)
    context.judged(len(limits), "time limits")
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
        return undecided(check, "no job with a time limit started (or the log gives no limits)")
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
