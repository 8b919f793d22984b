"""Delivery checks: every job has exactly one accepted result (or at least one), each result
is the right value, one terminal per job, the first result wins, and every result accepted
answers a lease of the master that accepted it.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from itertools import compress, repeat
from operator import is_
from typing import Any, cast

from harness import contract
from harness.checks.causes import lost_cause
from harness.checks.context import (
    NO_CONTEXT,
    CheckContext,
    Expect,
    ExpectedFailed,
    Satisfies,
)
from harness.checks.struck import (
    struck,
)
from harness.checks.violations import Violation, undecided
from harness.contract import MASTER, RESULTS
from harness.history import History, HistoryEvent, Submission

#: A worker reports a finished job within this long of being able to (its report
#: interval and tick are 0.02-0.2 s; the rest is room for a loaded machine).
_REPORT_MARGIN_S = 1.0


__all__ = [
    "at_least_once",
    "correct_values",
    "duplicate_executions",
    "exactly_once",
    "first_result_wins",
    "no_stale_results",
    "one_terminal",
]


def exactly_once(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """Every submitted job has exactly one terminal result; no terminal for unknown ids.

    A ``duplicate_dropped`` is dedup working and fine; two terminal events fail. When the
    master's results output is in the history, each job must appear there exactly once too.
    """
    executions_are_results = context.executions_are_results
    check = "exactly_once"
    if MASTER not in history.sources():
        return [Violation(check, "no events from the master: its log is missing or empty")]
    submitted = history.submitted()
    context.judged(len(submitted), "jobs")
    terminals = history.terminals()
    terminal_lines = history.terminal_lines()  # counted unbuilt: a soak run has millions
    found: list[Violation] = []
    # Most runs: each job has one terminal and no other job has any (set operations in C).
    clean = history.submission_lines().keys() == terminal_lines.keys() and not _any_repeated(
        terminal_lines
    )
    for job in () if clean else submitted:
        count = len(terminal_lines.get(job, ()))
        if count == 1:
            continue
        submission = submitted[job]
        ends = terminals.get(job, ())
        if not ends:
            cause = lost_cause(history, job)
            lines = (submission.line, *_lease_lines(history, job), *cause.lines)
            message = f"job {job} lost: no terminal result: {cause.clause}"
            found.append(
                Violation(check, message, (job,), tuple(dict.fromkeys(lines)), cause=cause.key)
            )
        else:
            kinds = ", ".join(f"{end.ev} (#{end.line})" for end in ends)
            lines = (submission.line, *(end.line for end in ends))
            found.append(
                Violation(
                    check, f"job {job} has {len(ends)} terminal results: {kinds}", (job,), lines
                )
            )
    for job, end_lines in () if clean else terminal_lines.items():
        if job not in submitted:
            found.append(
                Violation(
                    check,
                    f"job {job} was never submitted but has a terminal result",
                    (job,),
                    tuple(end_lines),
                )
            )
    found.extend(unseen_items(history, check))
    outputs = history.lines(contract.RESULT_OUTPUT, src=RESULTS)
    if outputs:
        found.extend(_output_once(history, outputs, _earlier_terminals(history)))
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


def at_least_once(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """Jepsen's total queue: every submitted job has a terminal result (lost fails);
    duplicates, of results or of executions, are allowed (the matrix counts them)."""
    check = "at_least_once"
    if MASTER not in history.sources():
        return [Violation(check, "no events from the master: its log is missing or empty")]
    terminals = history.terminals()
    context.judged(len(history.submitted()), "jobs")
    found: list[Violation] = []
    for job, submission in history.submitted().items():
        if not terminals.get(job):
            lines = (submission.line, *_lease_lines(history, job))
            found.append(Violation(check, f"job {job} lost: no terminal result", (job,), lines))
    found.extend(unseen_items(history, check))
    return found


def unseen_items(history: History, check: str) -> list[Violation]:
    """What an observer saw but could not tie to a job: a task item the job key does not
    name (a job the checks cannot follow), a result that answers no job."""
    found = []
    for event in history.select(contract.UNKEYED_ITEM):
        message = (
            f"task item {_short(event.get('item'))} (put or taken by {event.get('route')}) has no "
            f"job key {event.get('key')}: set job_key to what names its job, or skip it "
            "if it is a control item"
        )
        found.append(Violation(check, message, (), (event.line,)))
    why = (
        "a result the app invented, or a result_key that does not name its job"
        if history.submitted()
        else "no task was seen handed out at all (do [system] tasks and its take name how "
        "the app hands them out?)"
    )
    for event in history.select(contract.UNMATCHED_RESULT):
        message = (
            f"result {_short(event.get('value'))} ({event.get('how')} by {event.src}) answers no "
            f"job that was handed out: {why}"
        )
        found.append(Violation(check, message, (), (event.line,)))
    return found


def _earlier_terminals(history: History) -> Mapping[int, int]:
    """How many terminal events each job id had from the masters of earlier epochs (a
    master restarted afresh writes on after them in the same results output)."""
    last = history.epoch_at(history.end_t)
    if last == 0:
        return {}
    counts: dict[int, int] = {}
    for event in history.select(contract.TERMINAL_EVENTS, src=MASTER):
        if event.job is not None and history.epoch_at(event.t) < last:
            counts[event.job] = counts.get(event.job, 0) + 1
    return counts


def _output_once(
    history: History, outputs: Sequence[int], earlier: Mapping[int, int]
) -> list[Violation]:
    """Each job of the last epoch is in the results output once, besides the lines the
    masters before it may have written for the same id (``earlier``)."""
    check = "exactly_once"
    submitted = history.submission_lines()
    jobs = history.jobs_at(outputs)
    if len(jobs) == len(submitted) and submitted.keys() == set(jobs):
        return []  # each submitted job once, and nothing else
    by_job: dict[int | None, list[int]] = {}
    for job, line in zip(jobs, outputs, strict=True):
        seen = by_job.get(job)
        if seen is None:
            by_job[job] = [line]
        else:
            seen.append(line)
    found: list[Violation] = []
    for job, submission_line in submitted.items():
        lines = by_job.get(job, ())
        if not 1 <= len(lines) <= 1 + earlier.get(job, 0):
            what = "missing from" if not lines else f"{len(lines)} times in"
            found.append(
                Violation(
                    check,
                    f"job {job} is {what} the results output",
                    (job,),
                    (submission_line, *lines),
                )
            )
    for output_job, lines in by_job.items():
        if output_job not in submitted:
            named = () if output_job is None else (output_job,)
            found.append(
                Violation(
                    check,
                    f"results output has a line for job {output_job}, which was never submitted",
                    named,
                    tuple(lines),
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


def _disagreements(
    history: History, submission: Submission, report: HistoryEvent
) -> list[Violation]:
    """With no oracle, a job's value is judged by agreement: every successful execution a
    worker reported must have returned the accepted value (a task that is not idempotent
    under redelivery returns another)."""
    job, got = submission.job, report.get("value")
    for run in history.select(contract.COMPLETED):
        if run.src == MASTER or run.job != job or run.get("ok") is not True:
            continue
        if "value" in run.fields and not _same(run.get("value"), got):
            message = (
                f"job {job}: executions disagree: {run.src} returned {_short(run.get('value'))}, "
                f"accepted value {_short(got)}"
            )
            return [Violation("correct_values", message, (job,), (submission.line, run.line))]
    return []


def correct_values(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """Each accepted ok value (and each ok line of the results output) is the task's value.

    ``expected(task, args)`` comes from the system under test (its ``expected``) and may
    return :class:`Expect` members; a job it cannot say anything about is skipped. A failed
    job is never a violation here: a worker can die on any task.
    """
    expected = context.expected
    submitted = history.submitted()
    found: list[Violation] = []
    compared = 0
    raised: list[tuple[int, str]] = []  # (job, what expected raised on it)
    accepted = history.lines(contract.RESULT_ACCEPTED, src=MASTER)
    outputs = history.lines(contract.RESULT_OUTPUT, src=RESULTS)
    # Each kind's lines, their jobs and whether each is ok: read once, a kind at a time.
    kinds = [
        (lines, history.jobs_at(lines), history.values(lines, "ok", True))
        for lines in (accepted, outputs)
    ]
    want_of = _want_of(history, kinds, expected)
    if all(_all_exact(history, *kind, want_of) for kind in kinds):
        context.judged(len(accepted) + len(outputs), "values compared")  # a clean run
        return found
    reports = [*accepted, *outputs]
    (_, accepted_jobs, accepted_oks), (_, output_jobs, output_oks) = kinds
    jobs, oks = [*accepted_jobs, *output_jobs], [*accepted_oks, *output_oks]
    del kinds, accepted_jobs, accepted_oks, output_jobs, output_oks
    # Read a kind at a time: one kind's lines are read by C-level maps.
    gots = [*history.values(accepted, "value"), *history.values(outputs, "value")]
    wants = list(map(want_of.get, jobs, repeat(_NOTHING)))
    for line, job, ok, got, want in zip(reports, jobs, oks, gots, wants, strict=True):
        if want is _NOTHING or ok is not True:  # no job, a job never submitted, or not ok
            continue
        if type(want) is type(got) and type(want) in _EXACT and want == got:
            compared += 1  # the common case, answered as _same answers it
            continue
        if (
            type(want) in _PLAIN_VALUES or not isinstance(want, Expect | ExpectedFailed | Satisfies)
        ) and _same(_as_json(want), got):
            compared += 1
            continue  # right: the words below are for a violation (a soak run has millions)
        submission, report = submitted[cast(int, job)], history.event_at(line)
        if isinstance(want, ExpectedFailed):
            raised.append((submission.job, f"{_call(submission)}: {want.error}"))
            continue
        if want is Expect.UNKNOWN:
            continue
        if want is Expect.AGREE:
            compared += 1
            found.extend(_disagreements(history, submission, report))
            continue
        compared += 1
        where = "accepted" if report.ev == contract.RESULT_ACCEPTED else "results output"
        lines = (submission.line, report.line)
        call = _call(submission)
        if want is Expect.FAILURE:
            message = f"job {job}: {call} cannot succeed, yet {where} ok value {_short(got)}"
            found.append(Violation("correct_values", message, (submission.job,), lines))
        elif isinstance(want, Satisfies):
            try:
                right = bool(want.test(got))
            except Exception as exc:  # the user's predicate: it could not judge this one
                compared -= 1
                raised.append((submission.job, f"{call}: {type(exc).__name__}: {exc}"[:200]))
                continue
            if not right:
                message = f"job {job}: {call}: {where} value {_short(got)} fails {want.name}"
                found.append(Violation("correct_values", message, (submission.job,), lines))
        else:
            message = f"job {job}: {call} = {_short(want)}, but {where} value {_short(got)}"
            found.append(Violation("correct_values", message, (submission.job,), lines))
    context.judged(compared, "values compared")
    if raised:
        job, what = raised[0]
        message = (
            f"the expected-value function raised on {len(raised)} item(s), so their values "
            f"were not compared; first: job {job}: {what}"
        )
        found.append(Violation("correct_values", message, (job,), severity="unknown"))
    return found


_PLAIN_VALUES = frozenset({int, str, float, list, dict, type(None), bool})
_EXACT = frozenset({int, str})  # equal as JSON values exactly when equal as Python values


#: What a report is compared with when there is nothing to compare with (never a value).
_NOTHING = object()


def _want_of(
    history: History, kinds: Iterable[tuple[Sequence[int], list[Any], list[Any]]], expected: Any
) -> dict[Any, Any]:
    """The expected value of each job that has an ok report among the lines of ``kinds``
    and a submission: ``expected`` is asked once per job, however many reports it has (it
    says what a task returns for its arguments), with the task and arguments its
    submission gave."""
    asked: dict[Any, None] = {}
    for _lines, jobs, oks in kinds:
        asked.update(dict.fromkeys(compress(jobs, map(is_, oks, repeat(True)))))
    asked.pop(None, None)
    first = history.submission_lines()
    known = list(filter(first.__contains__, asked))
    del asked
    if expected is None:
        return dict.fromkeys(known, Expect.UNKNOWN)
    lines = array("q", map(first.__getitem__, known))  # an index: read twice
    tasks = map(str, history.values(lines, "task", ""))
    given = history.values(lines, "args", ())
    args: Iterable[tuple[Any, ...]] = (
        map(tuple, given)
        if set(map(type, given)) <= {list}
        else (tuple(value) if isinstance(value, list | tuple) else (value,) for value in given)
    )
    return dict(zip(known, map(expected, tasks, args), strict=True))


def _all_exact(
    history: History,
    lines: Sequence[int],
    jobs: list[Any],
    oks: list[Any],
    want_of: Mapping[Any, Any],
) -> bool:
    """Whether every report on ``lines`` (of ``jobs``) is ok and its value exactly its job's
    expected one, of a type whose equality is JSON equality (C-level passes; any doubt
    answers False)."""
    if oks.count(True) != len(oks) or not set(map(type, oks)) <= {bool}:
        return False
    wants = list(map(want_of.get, jobs, repeat(_NOTHING)))
    if not set(map(type, wants)) <= _EXACT:
        return False
    gots = history.values(lines, "value")
    return list(map(type, wants)) == list(map(type, gots)) and wants == gots


def _any_repeated(lines_by_job: Mapping[int, tuple[int, ...]]) -> bool:
    """Whether any job has more than one line."""
    return max(map(len, lines_by_job.values()), default=0) > 1


def _call(submission: Submission) -> str:
    return f"{submission.task}({', '.join(map(_short, submission.args))})"


def _as_json(value: Any) -> Any:
    """The value as it reads back from an event log (tuples become lists, and so on)."""
    if type(value) in (int, str, bool) or value is None:  # reads back as itself
        return value
    return json.loads(json.dumps(value, default=repr))


def _same(want: Any, got: Any) -> bool:
    """Equal as JSON values: ``true`` is not ``1`` and ``null`` is not ``0``, at any depth
    (Python's ``==`` says ``True == 1``); numbers compare by value, NaN equals NaN."""
    if isinstance(want, bool) or isinstance(got, bool) or want is None or got is None:
        return type(want) is type(got) and want == got
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(map(_same, want, got))
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(_same(want[k], got[k]) for k in want)
    if isinstance(want, float) and isinstance(got, float) and math.isnan(want):
        return math.isnan(got)
    return bool(want == got)


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def one_terminal(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """No job has two terminal events (accepted, dead) in the master's log, whatever the
    results output says. A resubmission (a restarted master) starts the job afresh."""
    check = "one_terminal"
    if MASTER not in history.sources():
        return undecided(check, "no events from the master: its log is missing or empty")
    context.judged(len(history.submitted()), "jobs")
    ends: dict[int, list[int]] = {}
    found: list[Violation] = []
    if not _any_repeated(history.terminal_lines()):
        return found  # no job has two terminal events at all
    lines = history.lines(
        (contract.JOB_SUBMITTED, contract.RESULT_ACCEPTED, contract.DEAD), src=MASTER
    )
    submitted = contract.JOB_SUBMITTED
    rows = zip(lines, history.evs_at(lines), history.jobs_at(lines), strict=True)
    for line, ev, job in rows:
        if job is None:
            continue
        if ev == submitted:
            ends[job] = []
            continue
        seen = ends.setdefault(job, [])
        seen.append(line)
        if len(seen) == 2:
            kinds = " then ".join(history.ev_at(end) for end in seen)
            message = f"job {job} has two terminal events: {kinds}"
            found.append(Violation(check, message, (job,), tuple(seen)))
    return found


def first_result_wins(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """A result that reaches the master before the job has a terminal result is accepted,
    even when the job is pending again (requeued): it is never dropped and the job never
    needs another run. From the master's log (a drop before any terminal) and from the
    workers' (a finished attempt that could report long before the job's terminal)."""
    check = "first_result_wins"
    completions = [e for e in history.select(contract.COMPLETED) if e.src != MASTER]
    if not completions:
        return undecided(check, "no worker logged a finished job")
    context.judged(len(completions), "finished attempts")
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
    faults = struck(history)
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


def no_stale_results(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """Every result the master accepted comes from an attempt it (or the incarnation whose
    journal it resumed) leased to that worker. A master started afresh numbers its jobs from
    the same ids: a result for "job 3" from a worker that held job 3 of the master before
    is the result of another job, whatever its value."""
    check = "no_stale_results"
    accepted = [
        event
        for event in history.select(contract.RESULT_ACCEPTED, src=MASTER)
        if event.job is not None and isinstance(event.get("worker"), str)
    ]
    if not accepted:
        return undecided(check, "the master accepted no result that names its worker")
    context.judged(len(accepted), "accepted results")
    found: list[Violation] = []
    for event in accepted:
        job, worker, attempt = event.job, event.get("worker"), event.get("attempt")
        assert job is not None
        epoch = history.epoch_at(event.t)
        own = [
            lease
            for lease in history.leases(job)
            if lease.epoch == epoch and lease.worker == worker and lease.attempt == attempt
        ]
        if own:
            continue
        earlier = [
            lease
            for lease in history.leases(job)
            if lease.worker == worker and lease.attempt == attempt and lease.epoch < epoch
        ]
        where = (
            f"it held job {job} of an earlier master (epoch {earlier[-1].epoch}), "
            "started afresh since"
            if earlier
            else "no such lease was granted"
        )
        message = (
            f"job {job} (epoch {epoch}): the master accepted attempt {attempt} from {worker}, "
            f"which this master never leased it: {where}"
        )
        lines = (*(lease.start_line for lease in earlier), event.line)
        found.append(Violation(check, message, (job,), lines))
    return found
