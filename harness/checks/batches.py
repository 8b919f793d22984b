"""Batch checks: the barrier between batches, and batches of the stated size."""

from __future__ import annotations

from harness import contract
from harness.checks.context import NO_CONTEXT, CheckContext
from harness.checks.violations import Violation, job_ids, undecided
from harness.contract import MASTER, TERMINAL_EVENTS
from harness.history import History, HistoryEvent

__all__ = ["batch_barrier", "batch_shape"]


def batch_barrier(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """No job of batch k+1 is leased (or the batch opened) before batch k closed.

    Also: no lease of batch k before batch k opened, and no batch closed while one of its
    jobs still has no terminal result. Violations are grouped per batch and cite both sides.
    """
    check = "batch_barrier"
    submitted = history.submitted()
    members: dict[int, list[int]] = {}
    for submission in submitted.values():
        if submission.batch is not None:
            members.setdefault(submission.batch, []).append(submission.job)
    opened: dict[int, HistoryEvent] = {}
    closed: dict[int, HistoryEvent] = {}
    terminal: set[int] = set()
    context.judged(len(members), "batches")
    # (batch, the batch it came too early for, "leased" | "opened") -> (jobs, lines)
    early: dict[tuple[int, int, str], tuple[list[int], list[int]]] = {}
    found: list[Violation] = []
    for event in history.select(src=MASTER):
        batch = event.get("batch")
        if event.ev in TERMINAL_EVENTS and event.job is not None:
            terminal.add(event.job)
        elif event.ev == contract.BATCH_CLOSED and isinstance(batch, int):
            closed.setdefault(batch, event)
            unfinished = sorted(job for job in members.get(batch, ()) if job not in terminal)
            if unfinished:
                lines = [event.line, *(submitted[job].line for job in unfinished)]
                message = f"batch {batch} closed while jobs {job_ids(unfinished)} had no result"
                found.append(Violation(check, message, tuple(unfinished), tuple(lines)))
        elif event.ev == contract.BATCH_OPENED and isinstance(batch, int):
            opened.setdefault(batch, event)
            for earlier in range(batch):
                if earlier not in closed:
                    early.setdefault((batch, earlier, "opened"), ([], [event.line]))
        elif event.ev == contract.LEASED and event.job is not None:
            leased_as = submitted.get(event.job)
            batch = leased_as.batch if leased_as is not None else batch
            if not isinstance(batch, int):
                continue
            if batch not in opened:
                jobs, lines = early.setdefault((batch, batch, "leased"), ([], []))
                jobs.append(event.job)
                lines.append(event.line)
            for earlier in range(batch):
                if earlier not in closed:
                    jobs, lines = early.setdefault((batch, earlier, "leased"), ([], []))
                    jobs.append(event.job)
                    lines.append(event.line)
    for (batch, earlier, kind), (jobs, lines) in sorted(early.items()):
        if kind == "opened":
            message = f"batch {batch} opened before batch {earlier} closed"
        elif earlier == batch:
            message = f"jobs {job_ids(jobs)} of batch {batch} leased before the batch opened"
        else:
            message = f"jobs {job_ids(jobs)} of batch {batch} leased before batch {earlier} closed"
        # Cite the other side of the barrier: when it came late, or nothing when it never did.
        barrier = opened.get(batch) if earlier == batch else closed.get(earlier)
        other = [] if barrier is None else [barrier.line]
        if barrier is None:
            message += " (it never did)"
        found.append(Violation(check, message, tuple(sorted(set(jobs))), (*lines, *other)))
    return found


def batch_shape(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """Every batch has exactly ``batch_size`` jobs, the last one the remainder; no more
    than ``batch_size`` distinct jobs are leased while one batch is open (a job set known
    up front: ``distq submit`` into an open master may close a batch early)."""
    batch_size = context.batch_size
    check = "batch_shape"
    if batch_size is None:
        return undecided(check, "the scenario states no batch_size")
    submitted = history.submitted()
    if not submitted:
        return undecided(check, "no job_submitted in the master's log")
    members: dict[int, list[int]] = {}
    unbatched: list[int] = []
    for submission in submitted.values():
        if submission.batch is None:
            unbatched.append(submission.job)
        else:
            members.setdefault(submission.batch, []).append(submission.job)
    if not members:
        return undecided(check, "no submission names its batch: the log cannot show batches")
    context.judged(len(members), "batches")
    found: list[Violation] = []
    if unbatched:
        message = f"jobs {job_ids(unbatched)} were submitted in no batch (batch_size {batch_size})"
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
