"""Checkers: pure functions from a History to the violations they find, and the verdict.

Each checker takes the history and keyword context (checkers ignore keys they do not
use) and returns violations that cite job ids and history lines. A violation is either a
failure of the system or ``unknown``: the run did not exercise what it was meant to (a
fault missed its window), which is neither a pass nor a fail.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from harness import contract
from harness.checks.causes import lost_cause
from harness.checks.semantics import SEMANTIC_CHECKS
from harness.checks.violations import Severity, Violation
from harness.contract import HARNESS, MASTER, RESULTS, TERMINAL_EVENTS
from harness.history import History, HistoryEvent, Submission

__all__ = [
    "CHECKS",
    "EXIT_USAGE",
    "VERDICT_EXIT_CODES",
    "Checker",
    "ExitCodes",
    "Expect",
    "ExpectedFn",
    "Verdict",
    "Violation",
    "at_least_once",
    "auth",
    "batch_barrier",
    "correct_values",
    "duplicate_executions",
    "exactly_once",
    "fault_coverage",
    "judge",
    "liveness",
]

Status = Literal["pass", "fail", "unknown"]

#: The harness's exit codes: one per verdict, and 2 for a bad option or invalid file
#: (``python -m harness``; ``Verdict.exit_code`` and ``ScenarioOutcome.exit_code``).
EXIT_USAGE = 2
VERDICT_EXIT_CODES: Mapping[Status, int] = {"pass": 0, "fail": 1, "unknown": 3}
_REPORT_LINES_PER_VIOLATION = 12


@dataclass(frozen=True, slots=True)
class Verdict:
    """``pass``, ``fail`` (violations) or ``unknown`` (faults that missed their window)."""

    status: Status
    violations: tuple[Violation, ...] = ()
    unknowns: tuple[Violation, ...] = ()
    checks: tuple[str, ...] = ()
    notes: tuple[Violation, ...] = ()  # what checks measured (e.g. recovery latencies)

    @property
    def exit_code(self) -> int:
        return VERDICT_EXIT_CODES[self.status]

    def report(self, history: History) -> str:
        """A readable report: each violation, its jobs, and the history lines behind it."""
        counts = f"{len(self.violations)} violation(s), {len(self.unknowns)} unknown"
        out = [f"verdict: {self.status} ({counts}; checks: {', '.join(self.checks) or '-'})"]
        for violation in (*self.violations, *self.unknowns, *self.notes):
            jobs = f" [jobs {', '.join(map(str, violation.jobs))}]" if violation.jobs else ""
            out.append(f"{violation.severity} {violation.check}: {violation.message}{jobs}")
            lines = sorted(set(violation.lines))
            shown = lines[:_REPORT_LINES_PER_VIOLATION]
            out.extend("    " + text for text in history.render(shown).splitlines())
            if len(lines) > len(shown):
                out.append(f"    ... {len(lines) - len(shown)} more line(s)")
        return "\n".join(out)


@dataclass(frozen=True, slots=True)
class ExitCodes:
    """A system's documented exit codes by meaning; None: the system does not document one.

    Given by the system under test (``harness.systems``), read by ``clean_exits``.

    ``clean_exits`` allows a code only when the run gave its process that reason.
    """

    ok: int = 0
    usage: int | None = None  # bad option or key (an empty key refused before connecting)
    auth_rejected: int | None = None  # the master refused the key
    no_master: int | None = None  # nothing accepted a connection
    master_lost: int | None = None  # the master went away mid-run
    handshake_timeout: int | None = None  # the handshake was never answered
    interrupted: int | None = None  # Ctrl-C


class Checker(Protocol):
    def __call__(self, history: History, /, **context: Any) -> list[Violation]: ...


# -- exactly_once ------------------------------------------------------------------------


def exactly_once(
    history: History, /, *, executions_are_results: bool = False, **_: Any
) -> list[Violation]:
    """Every submitted job has exactly one terminal result; no terminal for unknown ids.

    A ``duplicate_dropped`` is dedup working and fine; two terminal events fail. When the
    master's results output is in the history, each job must appear there exactly once too.
    """
    check = "exactly_once"
    if not history.select(src=MASTER):
        return [Violation(check, "no events from the master: its log is missing or empty")]
    submitted = history.submitted()
    terminals = history.terminals()
    found: list[Violation] = []
    for job, submission in submitted.items():
        ends = terminals.get(job, ())
        if not ends:
            cause, cited = lost_cause(history, job)
            lines = tuple(dict.fromkeys((submission.line, *_lease_lines(history, job), *cited)))
            message = f"job {job} lost: no terminal result: {cause}"
            found.append(Violation(check, message, (job,), lines))
        elif len(ends) > 1:
            kinds = ", ".join(f"{end.ev} (#{end.line})" for end in ends)
            lines = (submission.line, *(end.line for end in ends))
            found.append(
                Violation(
                    check, f"job {job} has {len(ends)} terminal results: {kinds}", (job,), lines
                )
            )
    for job, ends in terminals.items():
        if job not in submitted:
            found.append(
                Violation(
                    check,
                    f"job {job} was never submitted but has a terminal result",
                    (job,),
                    tuple(end.line for end in ends),
                )
            )
    outputs = history.select(contract.RESULT_OUTPUT, src=RESULTS)
    if outputs:
        found.extend(_output_once(submitted, outputs))
    if executions_are_results:  # no dedup between the workers and the result store
        for job, runs in sorted(duplicate_executions(history).items()):
            message = f"job {job} ran to completion {len(runs)} times (each stored a result)"
            found.append(Violation(check, message, (job,), tuple(run.line for run in runs)))
    return found


def duplicate_executions(history: History) -> dict[int, tuple[HistoryEvent, ...]]:
    """Jobs that more than one execution completed successfully, from the workers' logs."""
    runs: dict[int, list[HistoryEvent]] = {}
    for event in history.select(contract.COMPLETED):
        if event.src != MASTER and event.job is not None and event.get("ok") is True:
            runs.setdefault(event.job, []).append(event)
    return {job: tuple(done) for job, done in runs.items() if len(done) > 1}


def at_least_once(history: History, /, **_: Any) -> list[Violation]:
    """Jepsen's total queue: every submitted job has a terminal result (lost fails);
    duplicates, of results or of executions, are allowed (the matrix counts them)."""
    check = "at_least_once"
    if not history.select(src=MASTER):
        return [Violation(check, "no events from the master: its log is missing or empty")]
    terminals = history.terminals()
    found: list[Violation] = []
    for job, submission in history.submitted().items():
        if not terminals.get(job):
            lines = (submission.line, *_lease_lines(history, job))
            found.append(Violation(check, f"job {job} lost: no terminal result", (job,), lines))
    return found


def _output_once(
    submitted: Mapping[int, Submission], outputs: Sequence[HistoryEvent]
) -> list[Violation]:
    check = "exactly_once"
    by_job: dict[int | None, list[HistoryEvent]] = {}
    for output in outputs:
        by_job.setdefault(output.job, []).append(output)
    found: list[Violation] = []
    for job, submission in submitted.items():
        seen = by_job.get(job, [])
        if len(seen) != 1:
            what = "missing from" if not seen else f"{len(seen)} times in"
            lines = (submission.line, *(output.line for output in seen))
            found.append(Violation(check, f"job {job} is {what} the results output", (job,), lines))
    for output_job, seen in by_job.items():
        if output_job not in submitted:
            jobs = () if output_job is None else (output_job,)
            found.append(
                Violation(
                    check,
                    f"results output has a line for job {output_job}, which was never submitted",
                    jobs,
                    tuple(output.line for output in seen),
                )
            )
    return found


def _lease_lines(history: History, job: int) -> list[int]:
    lines: list[int] = []
    for lease in history.leases(job):
        lines.append(lease.start_line)
        if lease.end_line is not None:
            lines.append(lease.end_line)
    return lines


# -- correct_values ----------------------------------------------------------------------


class Expect(enum.Enum):
    """What an ``expected`` function returns when it has no single value to offer."""

    UNKNOWN = "unknown"  # cannot say: skip the job
    FAILURE = "failure"  # the task cannot succeed on these args: an ok result is wrong


ExpectedFn = Callable[[str, tuple[Any, ...]], Any]


def correct_values(
    history: History, /, *, expected: ExpectedFn | None = None, **_: Any
) -> list[Violation]:
    """Each accepted ok value (and each ok line of the results output) is the task's value.

    ``expected(task, args)`` comes from the system under test (its ``expected``) and may
    return :class:`Expect` members; a job it cannot say anything about is skipped. A failed
    job is never a violation here: a worker can die on any task.
    """
    submitted = history.submitted()
    found: list[Violation] = []
    accepted = history.select(contract.RESULT_ACCEPTED, src=MASTER)
    reports = (*accepted, *history.select(contract.RESULT_OUTPUT, src=RESULTS))
    for report in reports:
        job = report.job
        submission = None if job is None else submitted.get(job)
        if submission is None or report.get("ok", True) is not True:
            continue
        want = expected(submission.task, submission.args) if expected else Expect.UNKNOWN
        if want is Expect.UNKNOWN:
            continue
        where = "accepted" if report.ev == contract.RESULT_ACCEPTED else "results output"
        call = f"{submission.task}({', '.join(map(_short, submission.args))})"
        lines = (submission.line, report.line)
        got = report.get("value")
        if want is Expect.FAILURE:
            message = f"job {job}: {call} cannot succeed, yet {where} ok value {_short(got)}"
            found.append(Violation("correct_values", message, (submission.job,), lines))
        elif not _same(_as_json(want), got):
            message = f"job {job}: {call} = {_short(want)}, but {where} value {_short(got)}"
            found.append(Violation("correct_values", message, (submission.job,), lines))
    return found


def _as_json(value: Any) -> Any:
    """The value as it reads back from an event log (tuples become lists, and so on)."""
    return json.loads(json.dumps(value, default=repr))


def _same(want: Any, got: Any) -> bool:
    if isinstance(want, float) and isinstance(got, float) and math.isnan(want):
        return math.isnan(got)
    return bool(want == got)


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


# -- batch_barrier -----------------------------------------------------------------------


def batch_barrier(history: History, /, **_: Any) -> list[Violation]:
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
                message = f"batch {batch} closed while jobs {_ids(unfinished)} had no result"
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
            message = f"jobs {_ids(jobs)} of batch {batch} leased before the batch opened"
        else:
            message = f"jobs {_ids(jobs)} of batch {batch} leased before batch {earlier} closed"
        # Cite the other side of the barrier: when it came late, or nothing when it never did.
        barrier = opened.get(batch) if earlier == batch else closed.get(earlier)
        other = [] if barrier is None else [barrier.line]
        if barrier is None:
            message += " (it never did)"
        found.append(Violation(check, message, tuple(sorted(set(jobs))), (*lines, *other)))
    return found


def _ids(jobs: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(set(jobs))))


# -- auth --------------------------------------------------------------------------------

#: Harness faults that start a worker with a bad key, and ones that only handshake badly.
WRONG_KEY_WORKER_ACTIONS = frozenset({"wrong_key_worker", "empty_key_worker"})
BAD_HANDSHAKE_ACTIONS = frozenset({"bad_handshakes", "garbage"})  # each needs a rejection
_SERVED_WORKER_EVENTS = frozenset({contract.CONNECTED, contract.STARTED, contract.COMPLETED})


def auth(
    history: History, /, *, wrong_key_workers: Iterable[str] = (), **_: Any
) -> list[Violation]:
    """Every wrong-key attempt was rejected, and no wrong-key worker was served.

    Wrong-key workers are named by ``wrong_key_workers`` (the harness knows the names it
    gave them) and by the ``target`` of ``wrong_key_worker`` / ``empty_key_worker`` faults.
    The master knows a rejected peer's address, not its name, so rejections are counted:
    each wrong-key worker and each of a ``bad_handshakes`` fault's ``count`` needs one
    ``auth_rejected``. An empty key is refused by the worker itself before it connects,
    so an ``empty_key_worker`` only has to stay unserved.
    """
    check = "auth"
    faults = [fault for fault in history.faults() if not fault.get("missed")]
    worker_faults = [fault for fault in faults if fault.get("action") in WRONG_KEY_WORKER_ACTIONS]
    handshake_faults = [fault for fault in faults if fault.get("action") in BAD_HANDSHAKE_ACTIONS]
    names = set(wrong_key_workers)
    names.update(str(fault.get("target")) for fault in worker_faults if fault.get("target"))
    wrong_key_faults = [f for f in worker_faults if f.get("action") == "wrong_key_worker"]
    needed = max(len(set(wrong_key_workers)), sum(map(_count, wrong_key_faults)))
    needed += sum(map(_count, handshake_faults))
    if not names and not needed and not any(f.get("action") == "idle_sockets" for f in faults):
        message = "no wrong-key attempt was made: nothing showed that a wrong key is refused"
        return [Violation(check, message, severity="unknown")]
    found: list[Violation] = []
    idle = [fault for fault in faults if fault.get("action") == "idle_sockets"]
    # Past its first few refusals of one address the master logs counts (``count``).
    # An idle socket past its address's share of handshakes is turned away as busy.
    timeouts = history.select(contract.HANDSHAKE_TIMEOUT, src=MASTER)
    busy = [
        e for e in history.select(contract.AUTH_REJECTED, src=MASTER) if e.get("kind") == "busy"
    ]
    timed_out = sum(map(_count, timeouts)) + sum(map(_count, busy))
    if sum(map(_count, idle)) > timed_out:
        message = (
            f"{sum(map(_count, idle))} idle socket(s) but only {timed_out} handshake_timeout "
            "or busy refusal"
        )
        found.append(Violation(check, message, (), tuple(f.line for f in idle)))
    rejections = history.select(contract.AUTH_REJECTED, src=MASTER)
    rejected = sum(map(_count, rejections))
    if rejected < needed:
        message = f"{needed} wrong-key attempt(s) but only {rejected} auth_rejected"
        attempts = (*wrong_key_faults, *handshake_faults)
        lines = (*(fault.line for fault in attempts), *(event.line for event in rejections))
        found.append(Violation(check, message, (), lines))
    for name in sorted(names):
        served = [
            event
            for event in history
            if (event.src == MASTER and event.get("worker") == name)
            or (event.src == name and event.ev in _SERVED_WORKER_EVENTS)
        ]
        if served:
            jobs = sorted({event.job for event in served if event.job is not None})
            message = f"wrong-key worker {name!r} was served: {served[0].ev} at t={served[0].t:g}"
            found.append(Violation(check, message, tuple(jobs), tuple(e.line for e in served)))
    return found


def _count(event: HistoryEvent) -> int:
    """A fault's ``count``, or how many refusals a master's summary line stands for."""
    count = event.get("count", 1)
    return count if isinstance(count, int) and count > 0 else 1


# -- liveness ----------------------------------------------------------------------------

#: Faults that kill the master: ``kill`` aimed at it by name, or ``kill_master``.
MASTER_KILL_ACTIONS = frozenset({"kill", "kill_master"})
#: Faults aimed at the master without naming it as their target.
_MASTER_ACTIONS = frozenset({"kill_master", "restart_master"})


def liveness(
    history: History, /, *, master_killed: bool | None = None, **_: Any
) -> list[Violation]:
    """The run finished within its bound and the master stopped by itself.

    Uses the harness's ``run_finished`` (``elapsed_s``, ``bound_s``, ``timed_out``).
    ``master_killed`` says whether the master was killed on purpose (no ``master_stopped``
    expected); by default it is read from the harness faults that target the master.
    """
    check = "liveness"
    terminals = history.terminals()
    unfinished = tuple(sorted(job for job in history.submitted() if job not in terminals))
    # For each unfinished job, the last thing the master recorded about it.
    last_line = {event.job: event.line for event in history.select(src=MASTER)}
    last_seen = [last_line[job] for job in unfinished]
    suffix = f"; {len(unfinished)} job(s) unfinished" if unfinished else ""
    found: list[Violation] = []
    timed_out = False
    finished = history.select(contract.RUN_FINISHED, src=HARNESS)
    if not finished:
        message = "no run_finished event from the harness: the time bound was not recorded"
        found.append(Violation(check, message, unfinished, tuple(last_seen), "unknown"))
    else:
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
        if fault.get("target") == MASTER or action in _MASTER_ACTIONS:
            killed = action in MASTER_KILL_ACTIONS
    return killed


# -- fault_coverage ----------------------------------------------------------------------


def fault_coverage(
    history: History, /, *, faults_planned: int | None = None, **_: Any
) -> list[Violation]:
    """Each fault fired and hit its window; a miss is ``unknown``, never a pass.

    A fault event with ``missed`` did not fire. ``expect = "holder"``: the target held a
    lease when the fault struck. ``expect = "outlast_lease"``: a lease of the target
    expired after the fault and before the target's next ``resume`` (or the end of the
    run). ``faults_planned``: how many faults the scenario planned (indices 0..n-1); a
    planned fault with no event never triggered.
    """
    check = "fault_coverage"
    faults = history.faults()
    found: list[Violation] = []
    if faults_planned is not None:
        fired = {fault.get("fault") for fault in faults if not fault.get("scheduled")}
        silent = [index for index in range(faults_planned) if index not in fired]
        if silent:
            message = f"planned faults {_ids(silent)} never triggered"
            found.append(Violation(check, message, severity="unknown"))
    found.extend(_toxic_coverage(history))
    for fault in faults:
        target = str(fault.get("target") or fault.get("expect") or "-")
        label = f"fault {fault.get('fault', '?')} ({fault.get('action')} {target})"
        expect = fault.get("expect")
        if fault.get("missed"):
            message = f"{label} did not fire: {fault.get('missed')}"
            found.append(Violation(check, message, (), (fault.line,), "unknown"))
        elif fault.get("action") in contract.MASTER_ACTIONS and _master_finished(history, fault.t):
            message = f"{label} struck a master that had already finished its work"
            found.append(Violation(check, message, (), (fault.line,), "unknown"))
        elif expect is None:
            continue
        elif expect == "holder":
            if not history.jobs_held_by(target, fault.t) and not _running(history, target, fault.t):
                message = f"{label} expected {target} to hold a lease, it held none"
                lines = (fault.line, *_nearest_leases(history, target, fault.t))
                found.append(Violation(check, message, (), lines, "unknown"))
        elif expect == "outlast_lease":
            end_t = _resume_t(faults, fault)
            expired = [
                event
                for event in history.select(contract.LEASE_EXPIRED, src=MASTER, worker=target)
                if fault.t < event.t <= end_t
            ]
            if not expired:
                held = sorted(history.jobs_held_by(target, fault.t))
                why = f"it held jobs {_ids(held)}" if held else "it held no lease"
                message = f"{label} expected a lease of {target} to expire before resume ({why})"
                found.append(Violation(check, message, tuple(held), (fault.line,), "unknown"))
        else:
            message = f"{label} has an unknown expect {expect!r} (holder, outlast_lease)"
            found.append(Violation(check, message, (), (fault.line,), "unknown"))
    return found


def _master_finished(history: History, t: float) -> bool:
    """Whether the master's latest incarnation before ``t`` had already stopped."""
    finished = False
    for event in history.select((contract.MASTER_READY, contract.MASTER_STOPPED), src=MASTER):
        if event.t > t:
            break
        finished = event.ev == contract.MASTER_STOPPED
    return finished


def _running(history: History, worker: str, t: float) -> bool:
    """Whether ``worker`` had started a job it had not finished at ``t`` (for systems whose
    master grants no leases: the workers' own started/completed events)."""
    open_jobs: set[int] = set()
    for event in history.select((contract.STARTED, contract.COMPLETED), src=worker):
        if event.t > t:
            break
        if event.job is not None:
            (open_jobs.add if event.ev == contract.STARTED else open_jobs.discard)(event.job)
    return bool(open_jobs)


def _toxic_coverage(history: History) -> list[Violation]:
    """Every network toxic met a connection; a phased or cutting toxic really fired."""
    found: list[Violation] = []
    for added in history.select(contract.TOXIC_ADDED, src=HARNESS):
        proxy, toxic = added.get("proxy"), added.get("toxic")
        label = f"toxic {toxic!r} on {proxy}"
        met = [
            e
            for e in history.select(contract.TOXIC, src=HARNESS)
            if e.get("proxy") == proxy and e.get("toxic") == toxic
        ]
        applied = [e for e in met if e.get("decision") == "applied"]
        if not applied:
            why = "it met no connection" if not met else "every connection skipped it (probability)"
            found.append(
                Violation(
                    "fault_coverage", f"{label} never applied: {why}", (), (added.line,), "unknown"
                )
            )
            continue
        if added.get("after_frames") or added.get("kind") in ("reset", "limit_data"):
            fired = [
                e
                for e in history
                if e.src == HARNESS
                and e.ev in (contract.TOXIC_TRIGGERED, contract.TOXIC_FIRED)
                and e.get("proxy") == proxy
                and e.get("toxic") == toxic
            ]
            if not fired:
                message = f"{label} was applied but its phase never came (it never fired)"
                found.append(Violation("fault_coverage", message, (), (added.line,), "unknown"))
    return found


#: The action that ends each interrupting fault: a pause resumes, a partition heals.
_ENDS = {"pause": "resume", "partition": "heal"}


def _resume_t(faults: Sequence[HistoryEvent], pause: HistoryEvent) -> float:
    for fault in faults:
        if (
            fault.line > pause.line
            and fault.get("action") == _ENDS.get(str(pause.get("action")), "resume")
            and fault.get("target") == pause.get("target")
        ):
            return fault.t
    return math.inf


def _nearest_leases(history: History, worker: str, t: float) -> list[int]:
    """The lines of the worker's last lease that ended before ``t`` and its next one."""
    leases = [lease for lease in history.leases() if lease.worker == worker]
    before = [lease for lease in leases if lease.t_end is not None and lease.t_end <= t]
    after = [lease for lease in leases if lease.t_start > t]
    lines: list[int] = []
    if before:
        last = max(before, key=lambda lease: lease.t_end or 0.0)
        lines.extend((last.start_line, last.end_line or last.start_line))
    if after:
        lines.append(after[0].start_line)
    return lines


# -- the verdict -------------------------------------------------------------------------


def _arrived_after_the_end(history: History) -> set[str]:
    """Workers the master never saw join that exited after the master had stopped."""
    stopped = history.select(contract.MASTER_STOPPED, src=MASTER)
    if not stopped:
        return set()
    joined = {str(e.get("worker")) for e in history.select(contract.WORKER_JOINED, src=MASTER)}
    return {
        e.src
        for e in history.select(contract.WORKER_EXIT)
        if e.src not in joined and e.t > stopped[-1].t
    }


def clean_exits(
    history: History,
    /,
    *,
    exit_codes: Mapping[str, int | None] | None = None,
    logs: Mapping[str, str] | None = None,
    documented: ExitCodes | None = None,
    **_: Any,
) -> list[Violation]:
    """Every process ended on its own with its documented exit code, and no log holds a
    traceback. ``exit_codes`` and ``logs`` (name -> text) come from the harness,
    ``documented`` (what each code means) from the system under test.

    Expected: the master ``ok`` (unless a fault killed it: -9); workers ``ok``, or
    ``master_lost`` once the master was killed and not restarted; wrong-key workers
    ``auth_rejected``; empty-key workers ``usage``; a worker a fault SIGKILLed -9. A worker
    that never joined and gave up only after the master had stopped (it was still starting
    when the work ran out) may exit ``no_master`` or ``master_lost``: it cannot tell a
    finished master from a lost one. ``None`` means the harness had to kill it at
    teardown: it never exited.
    """
    check = "clean_exits"
    if exit_codes is None:
        return [Violation(check, "no exit codes were recorded", severity="unknown")]
    if documented is None:
        return [Violation(check, "the system documents no exit codes", severity="unknown")]

    def codes(*meanings: int | None) -> set[int]:
        return {code for code in meanings if code is not None}

    faults = [fault for fault in history.faults() if not fault.get("missed")]
    master_killed = any(f.get("action") == "kill_master" for f in faults) and not any(
        f.get("action") == "restart_master" for f in faults
    )
    killed = {str(f.get("target")) for f in faults if f.get("action") == "kill"}
    # A worker whose connection a network toxic cut lost its master (5); one whose
    # handshake was swallowed gave up on it (6). Both are documented, clean exits.
    cut = {str(e.get("proxy")) for e in history.select(contract.TOXIC_FIRED, src=HARNESS)}
    swallowed = {
        str(e.get("proxy"))
        for e in history.select(contract.TOXIC, src=HARNESS)
        if e.get("kind") == "blackhole" and e.get("decision") == "applied"
    }
    restarted = {str(f.get("target")) for f in faults if f.get("action") == "restart"}
    intruders = {str(f.get("target")) for f in faults if f.get("action") == "wrong_key_worker"}
    empty_keyed = {str(f.get("target")) for f in faults if f.get("action") == "empty_key_worker"}
    late = _arrived_after_the_end(history)
    found: list[Violation] = []
    fault_lines = tuple(f.line for f in faults)
    for name, code in sorted(exit_codes.items()):
        if name == MASTER:
            allowed = {-9} if master_killed else codes(documented.ok)
        elif name in intruders:
            allowed = codes(documented.auth_rejected)
        elif name in empty_keyed:
            allowed = codes(documented.usage)  # it refuses an empty key before connecting
        else:
            allowed = codes(documented.master_lost if master_killed else documented.ok)
            if name in killed and name not in restarted:
                allowed |= {-9}
            if name in cut:
                allowed |= codes(documented.master_lost)
            if name in swallowed:
                allowed |= codes(documented.master_lost, documented.handshake_timeout)
            if name in late:
                allowed |= codes(documented.no_master, documented.master_lost)
        if code is None:
            found.append(Violation(check, f"{name} never exited on its own", (), fault_lines))
        elif code not in allowed:
            want = " or ".join(str(c) for c in sorted(allowed))
            found.append(
                Violation(check, f"{name} exited with {code}, expected {want}", (), fault_lines)
            )
    for name, text in sorted((logs or {}).items()):
        if "Traceback (most recent call last)" in text:
            found.append(Violation(check, f"{name}'s log holds a traceback", (), ()))
    return found


CHECKS: Mapping[str, Checker] = {
    "exactly_once": exactly_once,
    "at_least_once": at_least_once,
    "correct_values": correct_values,
    "batch_barrier": batch_barrier,
    "auth": auth,
    "liveness": liveness,
    "fault_coverage": fault_coverage,
    "clean_exits": clean_exits,
    **SEMANTIC_CHECKS,
}


def judge(history: History, checks: Sequence[str], **context: Any) -> Verdict:
    """Run the named checks: fail on any violation, else unknown on any miss, else pass."""
    unknown_names = [name for name in checks if name not in CHECKS]
    if unknown_names:
        raise ValueError(f"unknown check {unknown_names[0]!r}; valid checks: {', '.join(CHECKS)}")
    found: dict[Severity, list[Violation]] = {"fail": [], "unknown": [], "note": []}
    for name in checks:
        for violation in CHECKS[name](history, **context):
            found[violation.severity].append(violation)
    violations, unknowns = found["fail"], found["unknown"]
    status: Status = "fail" if violations else "unknown" if unknowns else "pass"
    return Verdict(status, tuple(violations), tuple(unknowns), tuple(checks), tuple(found["note"]))


def known_bug_outcome(
    name: str, known: tuple[str, ...], verdict: Verdict
) -> tuple[Literal["pass", "fail", "unknown"], str]:
    """What a run means for a scenario whose ``expect_violation`` checks are ``known``.

    A known-bug reproduction passes only when every known violation is there, no other
    check failed and no check was left undecided: a fault that missed its window makes the
    reproduction unknown (the violation may have come from elsewhere), and a failure the
    scenario does not name is a failure.
    """
    shown = repr(list(known)) if len(known) > 1 else repr(known[0])
    missing = [check for check in known if not any(v.check == check for v in verdict.violations)]
    if missing:
        return "fail", (
            f"{name}: fail: expect_violation = {shown} but the run had no {missing[0]} "
            f"violation (verdict {verdict.status}); if the bug is fixed, remove expect_violation"
        )
    names = ", ".join(known)
    unexpected = sorted({v.check for v in verdict.violations} - set(known))
    if unexpected:
        return "fail", (
            f"{name}: fail: besides the known {names} violation the run failed "
            f"{', '.join(unexpected)}, which expect_violation = {shown} does not name"
        )
    if verdict.unknowns:
        first = verdict.unknowns[0]
        return "unknown", (
            f"{name}: unknown: the known {names} violation is there, but {first.check} "
            f"could not decide ({first.message}), so the run does not pin it to its cause"
        )
    return "pass", f"{name}: pass (the known {names} violation is still there)"
