"""The attempts checks: a job is retried at most ``max_attempts`` times and hand-backs never
count; a lost worker loses at most ``prefetch`` jobs' attempts; no job runs on two workers
at once while both hold a lease on it.
"""

from __future__ import annotations

import math
from bisect import bisect_left

from harness import contract
from harness.checks.context import NO_CONTEXT, CheckContext
from harness.checks.struck import (
    Struck,
    struck,
)
from harness.checks.violations import Violation, undecided
from harness.contract import MASTER
from harness.history import History, HistoryEvent, Lease

__all__ = ["attempts_bounded", "no_overlap", "prefetch_bounded"]


_HAND_BACKS = frozenset({contract.WORKER_LEFT, contract.WORKER_REJOINED})


def _graceful_losses(history: History, faults: Struck) -> set[int]:
    """Lines of ``worker_lost`` events that are hand-backs: the master's next event about
    that worker is a ``worker_left`` or ``worker_rejoined`` naming the same jobs as
    ``handed_back``, or the worker had been sent SIGTERM (and not killed) and had not
    joined again since. (A rejoin after the master saw the connection close hands back
    nothing: that loss was a death, counted.)"""
    graceful: set[int] = set()
    losses = history.lines(contract.WORKER_LOST, src=MASTER)
    if not losses:
        return graceful
    master = history.lines(src=MASTER)  # in history order: a line's place by bisection
    joins = history.select(contract.WORKER_JOINED, src=MASTER)
    for line in losses:
        index, event = bisect_left(master, line), history.event_at(line)
        worker, jobs = event.get("worker"), event.get("jobs") or []
        following = next(
            (
                history.event_at(later)
                for later in master[index + 1 :]
                if history.field_at(later, "worker") == worker
            ),
            None,
        )
        if (
            following is not None
            and following.ev in _HAND_BACKS
            and sorted(following.get("handed_back") or []) == sorted(jobs)
        ):
            graceful.add(event.line)
            continue
        sigterm = faults.sigterm.get(str(worker), math.inf)
        rejoined = [e.t for e in joins if e.get("worker") == worker and e.t > sigterm]
        if (
            sigterm <= event.t < min(rejoined, default=math.inf)
            and faults.killed.get(str(worker), math.inf) > event.t
        ):
            graceful.add(event.line)
    return graceful


def attempts_bounded(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """No job is leased for more than ``max_attempts`` counted attempts; a job ends dead
    after exactly ``max_attempts``; hand-backs (bye, SIGTERM, rejoin) never count.

    A counted attempt ends with ``attempt_failed``; every lease names the attempt it is
    (one more than the counted ends before it). Attempts restart with a resubmission (a
    restarted master).
    """
    max_attempts = context.max_attempts
    check = "attempts_bounded"
    if max_attempts is None:
        return undecided(check, "the scenario states no max_attempts to hold the queue to")
    leases = history.lines(contract.LEASED, src=MASTER)
    if not leases:
        return undecided(check, "no lease in the master's log: no attempt to count")
    attempts = history.values(leases, "attempt")
    if any(not isinstance(attempt, int) for attempt in attempts):
        return undecided(check, "the master's leases carry no attempt numbers")
    graceful = _graceful_losses(history, struck(history))
    context.judged(len(set(history.jobs_at(leases))), "jobs")
    found: list[Violation] = []
    if (
        max_attempts >= 1
        and set(attempts) <= {1}
        and not history.lines(
            (contract.ATTEMPT_FAILED, contract.DEAD, contract.WORKER_LOST), src=MASTER
        )
    ):
        return found  # nothing failed, died or was lost, and every lease is a first attempt
    counted: dict[int, int] = {}
    handed_back: dict[int, int] = {}  # job -> line of the hand-back that ended its lease
    # Read from the columns: a soak run's master has millions of events.
    lines = history.lines(_COUNTED, src=MASTER)
    rows = zip(
        lines,
        history.evs_at(lines),
        history.jobs_at(lines),
        history.values(lines, "attempt"),
        strict=True,
    )
    for line, ev, job, attempt in rows:
        if ev == contract.WORKER_LOST and line in graceful:
            for lost in history.field_at(line, "jobs") or ():
                if isinstance(lost, int):
                    handed_back[lost] = line
            continue
        if job is None:
            continue
        if ev == contract.JOB_SUBMITTED:
            counted[job] = 0
            handed_back.pop(job, None)
        elif ev == contract.LEASED:
            before = counted.get(job, 0)
            handed_back.pop(job, None)
            if attempt > max_attempts:
                message = f"job {job} leased for attempt {attempt} > max_attempts {max_attempts}"
                found.append(Violation(check, message, (job,), (line,)))
            elif attempt != before + 1:
                message = (
                    f"job {job} leased as attempt {attempt} after {before} counted failed "
                    f"attempt(s): an uncounted hand-back was counted, or a failure was not"
                )
                found.append(Violation(check, message, (job,), (line,)))
        elif ev == contract.ATTEMPT_FAILED:
            counted[job] = counted.get(job, 0) + 1
            back = handed_back.pop(job, None)
            if back is not None:
                message = f"job {job}: a graceful hand-back was counted as a failed attempt"
                found.append(Violation(check, message, (job,), (back, line)))
        elif ev == contract.DEAD and counted.get(job, 0) != max_attempts:
            message = (
                f"job {job} declared dead after {counted.get(job, 0)} counted attempt(s), "
                f"max_attempts is {max_attempts}"
            )
            found.append(Violation(check, message, (job,), (line,)))
    return found


_COUNTED = (
    contract.WORKER_LOST,
    contract.JOB_SUBMITTED,
    contract.LEASED,
    contract.ATTEMPT_FAILED,
    contract.DEAD,
)


def prefetch_bounded(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """A worker that dies takes at most ``prefetch`` jobs with it: each of the master's
    ``worker_lost`` events names no more jobs than a lease may hold (with ``--prefetch 1``,
    one attempt lost, not several)."""
    check = "prefetch_bounded"
    prefetch = context.prefetch
    if prefetch is None:
        return undecided(check, "the scenario states no prefetch to hold the workers to")
    found: list[Violation] = []
    losses = history.select(contract.WORKER_LOST, src=MASTER)
    context.judged(len(losses), "lost workers")
    for event in losses:
        jobs = event.get("jobs") or []
        if len(jobs) > prefetch:
            message = (
                f"{event.get('worker')} was lost holding {len(jobs)} jobs {jobs}, more than "
                f"prefetch {prefetch} allows"
            )
            found.append(Violation(check, message, tuple(jobs), (event.line,)))
    return found


_RUN_ENDS = frozenset({contract.COMPLETED, contract.RUNNER_KILLED})


class _Run:
    """One attempt as a worker ran it: from its ``started`` to its end (its ``completed``,
    its job process killed, else the worker's last event), and its lease: from when it
    was granted to when the master took it back (None: never)."""

    __slots__ = ("end_t", "granted_t", "lease_line", "start", "taken_back_t")

    def __init__(
        self, start: HistoryEvent, end_t: float, lease: Lease | None, history: History
    ) -> None:
        self.start = start
        self.end_t = end_t
        self.lease_line = None if lease is None else lease.start_line
        self.granted_t = math.inf if lease is None else lease.t_start
        self.taken_back_t = None if lease is None else lease.t_end
        # A lease the master ended only by granting the job again was never taken back.
        if (
            lease is not None
            and lease.end_line is not None
            and (history[lease.end_line].ev == contract.LEASED)
        ):
            self.taken_back_t = None

    @property
    def worker(self) -> str:
        return self.start.src

    def protected_at(self, t: float) -> bool:
        """Whether the run's lease still stood at ``t``."""
        return self.granted_t <= t and (self.taken_back_t is None or t < self.taken_back_t)


def _runs(history: History) -> dict[int, list[_Run]]:
    """Every worker's runs of each job, from the workers' own logs."""
    runs: dict[int, list[_Run]] = {}
    last_t: dict[str, float] = {}
    for src in history.sources():
        own = history.select(src=src)
        if own:
            last_t[src] = own[-1].t
    for start in history.select(contract.STARTED):
        job = start.job
        if job is None or start.src in (MASTER, contract.HARNESS):
            continue
        attempt = start.get("attempt")
        end = next(
            (
                e
                for e in history.by_job(job)
                if e.line > start.line
                and e.src == start.src
                and e.ev in _RUN_ENDS
                and e.get("attempt") == attempt
            ),
            None,
        )
        end_t = end.t if end is not None else last_t.get(start.src, history.end_t)
        epoch = history.epoch_at(start.t)
        leases = [
            lease
            for lease in history.leases(job)
            if lease.worker == start.src
            and lease.attempt == attempt
            and lease.epoch == epoch
            and lease.t_start <= start.t
        ]
        runs.setdefault(job, []).append(_Run(start, end_t, leases[-1] if leases else None, history))
    return runs


def no_overlap(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """No job runs on two workers at once while both still hold their leases on it.

    A run is a worker's ``started`` to its end; its lease is the master's lease of that job,
    attempt and worker. Two runs may overlap only once the master has taken one lease back
    (expired, lost with its connection, handed back by a rejoin): the worker it was taken
    from may still be running the job, and the first result wins. Both leases standing
    while both run means the master handed out a job that was held. The evidence is the
    pairs of runs at once: a run with none showed nothing about this.
    """
    check = "no_overlap"
    if not history.select(contract.STARTED):
        return undecided(check, "no worker logged a started job: there are no runs to compare")
    found: list[Violation] = []
    overlapping = 0  # pairs of runs at once: the evidence (none: the run proved nothing)
    for job, own in sorted(_runs(history).items()):
        for index, first in enumerate(own):
            for second in own[index + 1 :]:
                if first.worker == second.worker:
                    continue
                begin = max(first.start.t, second.start.t)
                if begin >= min(first.end_t, second.end_t):
                    continue  # one after the other
                overlapping += 1
                if not (first.protected_at(begin) and second.protected_at(begin)):
                    continue  # one lease had been taken back: that run is on its own
                message = (
                    f"job {job} ran on {first.worker} and {second.worker} at once from "
                    f"t={begin:g}, both holding a lease on it (neither expired nor taken back)"
                )
                lines = [first.start.line, second.start.line]
                lines += [run.lease_line for run in (first, second) if run.lease_line is not None]
                found.append(Violation(check, message, (job,), tuple(sorted(set(lines)))))
    context.judged(overlapping, "pairs of runs at once")
    return found
