"""The verdict of a run: pass, fail (violations) or unknown (a check could not decide), and
its exit code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from harness.checks.violations import Violation
from harness.history import History

__all__ = [
    "EXIT_USAGE",
    "VERDICT_EXIT_CODES",
    "Outcome",
    "Pin",
    "Status",
    "Verdict",
    "task_text",
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
    #: What each check judged: (check, how many, of what), e.g. ("exactly_once", 30, "jobs").
    evidence: tuple[tuple[str, int, str], ...] = ()

    @property
    def exit_code(self) -> int:
        return VERDICT_EXIT_CODES[self.status]

    def checks_judged(self) -> str:
        """The checks with what each judged: "exactly_once: 30 jobs, liveness: 1 run"."""
        judged = {check: f"{count} {unit}" for check, count, unit in self.evidence}
        return ", ".join(
            f"{check}: {judged[check]}" if check in judged else check for check in self.checks
        )

    def report(self, history: History) -> str:
        """A readable report: each violation, its jobs, and the history lines behind it."""
        counts = f"{len(self.violations)} violation(s), {len(self.unknowns)} unknown"
        out = [f"verdict: {self.status} ({counts}; checks: {self.checks_judged() or '-'})"]
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
class Pin:
    """A known violation a known-bug scenario expects: of ``check``; with ``jobs``, exactly
    those jobs (none other of that check); with ``causes``, each for one of those causes.

    ``tasks`` names the jobs by what they were asked to do instead of by number, for apps
    whose jobs are numbered in the order they are seen taken (a deque two workers
    ``popleft()`` from concurrently: the second reply may pass the first on the wire). Each
    is a task as JSON text; ``on_jobs`` turns them into ``jobs`` once the run's submissions
    are known."""

    check: str
    jobs: tuple[int, ...] | None = None
    causes: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None

    def covers(self, violation: Violation) -> bool:
        return (
            violation.check == self.check
            and (self.jobs is None or set(violation.jobs) <= set(self.jobs))
            and (self.causes is None or violation.cause in self.causes)
        )

    def on_jobs(self, submitted: Iterable[tuple[int, Any]]) -> Pin:
        """This pin with ``jobs`` the jobs whose task is one of ``tasks``, from ``(job,
        args)`` pairs: a task matches a job of that one argument, or a list, the arguments
        themselves. Unchanged without ``tasks``."""
        if self.tasks is None:
            return self
        wanted = set(self.tasks)
        jobs = sorted(
            job
            for job, args in submitted
            if task_text(list(args)) in wanted or (len(args) == 1 and task_text(args[0]) in wanted)
        )
        return replace(self, jobs=tuple(jobs))

    def describe(self) -> str:
        if self.tasks is not None:
            numbers = "" if self.jobs is None else ", ".join(map(str, self.jobs)) or "none"
            jobs = f" of task(s) {', '.join(self.tasks)}"
            jobs += "" if self.jobs is None else f" (job(s) {numbers})"
        else:
            jobs = "" if self.jobs is None else f" of job(s) {', '.join(map(str, self.jobs))}"
        causes = "" if self.causes is None else f" ({' or '.join(self.causes)})"
        return f"{self.check}{jobs}{causes}"


def task_text(task: Any) -> str:
    """A task as compact JSON, tuples as lists (how a history states a job's arguments)."""
    return json.dumps(task, sort_keys=True, separators=(",", ":"), default=repr)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run means for its scenario. Usually the verdict itself; a known-bug scenario
    (``expect_violation``) passes when the run fails with the ``expected`` violations, and
    ``matched`` says which of them it found."""

    status: Status
    message: str
    expected: tuple[str, ...] = ()
    matched: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return VERDICT_EXIT_CODES[self.status]
