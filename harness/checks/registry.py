"""The registry of every check, and judging a history with the checks a scenario names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from harness import contract
from harness.checks.attempts import attempts_bounded, no_overlap, prefetch_bounded
from harness.checks.auth import admitted, auth
from harness.checks.batches import batch_barrier, batch_shape
from harness.checks.context import NO_CONTEXT, CheckContext, Tally
from harness.checks.coverage import fault_coverage
from harness.checks.delivery import (
    at_least_once,
    correct_values,
    exactly_once,
    first_result_wins,
    no_stale_results,
    one_terminal,
)
from harness.checks.exits import clean_exits
from harness.checks.liveness import liveness, no_spurious_expiry, recovery_latency, time_limits
from harness.checks.outputs import outputs_kept
from harness.checks.reached import reached
from harness.checks.submissions import acknowledged
from harness.checks.verdict import Outcome, Pin, Status, Verdict
from harness.checks.violations import Severity, Violation
from harness.history import History

__all__ = ["CHECKS", "Checker", "judge", "known_bug_outcome"]


class Checker(Protocol):
    """A check: the violations it finds in a history, told ``context`` besides."""

    def __call__(self, history: History, context: CheckContext = ..., /) -> list[Violation]: ...


CHECKS: Mapping[str, Checker] = {
    "exactly_once": exactly_once,
    "at_least_once": at_least_once,
    "correct_values": correct_values,
    "batch_barrier": batch_barrier,
    "auth": auth,
    "liveness": liveness,
    "fault_coverage": fault_coverage,
    "clean_exits": clean_exits,
    "attempts_bounded": attempts_bounded,
    "one_terminal": one_terminal,
    "batch_shape": batch_shape,
    "recovery_latency": recovery_latency,
    "no_spurious_expiry": no_spurious_expiry,
    "first_result_wins": first_result_wins,
    "time_limits": time_limits,
    "reached": reached,
    "acknowledged": acknowledged,
    "prefetch_bounded": prefetch_bounded,
    "admitted": admitted,
    "no_overlap": no_overlap,
    "no_stale_results": no_stale_results,
    "outputs_kept": outputs_kept,
}


def judge(history: History, checks: Sequence[str], context: CheckContext = NO_CONTEXT) -> Verdict:
    """Run the named checks: fail on any violation, else unknown on any miss, else pass."""
    unknown_names = [name for name in checks if name not in CHECKS]
    if unknown_names:
        raise ValueError(f"unknown check {unknown_names[0]!r}; valid checks: {', '.join(CHECKS)}")
    found: dict[Severity, list[Violation]] = {"fail": [], "unknown": [], "note": []}
    evidence: list[tuple[str, int, str]] = []
    for name in checks:
        tally = Tally()
        said = CHECKS[name](history, replace(context, tally=tally))
        for violation in said:
            found[violation.severity].append(violation)
        if tally.count is None:
            continue
        evidence.append((name, tally.count, tally.unit))
        if tally.count == 0 and not any(v.severity != "note" for v in said):
            # Nothing to judge is no pass: the run did not show what the check is for.
            message = f"judged nothing: the run had no {tally.unit} to check"
            found["unknown"].append(Violation(name, message, severity="unknown"))
    blockers = _setup_blockers(history)
    found["unknown"][:0] = blockers
    violations, unknowns = found["fail"], found["unknown"]
    status: Status = (
        "unknown" if blockers else "fail" if violations else "unknown" if unknowns else "pass"
    )
    return Verdict(
        status,
        tuple(violations),
        tuple(unknowns),
        tuple(checks),
        tuple(found["note"]),
        tuple(evidence),
    )


#: The check named by what makes a whole run unjudgeable (a misread scenario, not a rule).
SETUP = "setup"


def _setup_blockers(history: History) -> list[Violation]:
    """What makes every verdict of this run a misreading: a task or result typeid the
    scenario names that the app never created."""
    blockers = []
    for event in history.select(contract.TYPEID_UNSEEN):
        created = ", ".join(map(repr, event.get("created") or ())) or "none"
        message = (
            f"[system] {event.get('role')} = {event.get('typeid')!r}, but the app never created "
            f"such a proxy (typeids it created: {created}); nothing about its jobs was seen"
        )
        blockers.append(Violation(SETUP, message, lines=(event.line,), severity="unknown"))
    return blockers


def known_bug_outcome(name: str, pins: Sequence[Pin], verdict: Verdict) -> Outcome:
    """What a run means for a known-bug scenario whose ``expect_violation`` is ``pins``.

    It passes only when every pin is matched (a pin with ``jobs``: by violations of exactly
    those jobs), every failure is one a pin covers, and no check was left undecided: a
    fault that missed its window makes the reproduction unknown (the violation may have
    come from elsewhere), and a failure no pin names is a failure.
    """
    checks = tuple(dict.fromkeys(pin.check for pin in pins))
    shown = ", ".join(pin.describe() for pin in pins)
    blocker = next((v for v in verdict.unknowns if v.check == SETUP), None)
    if blocker is not None:
        return Outcome("unknown", f"{name}: unknown: {blocker.message}", checks)
    for pin in pins:
        if pin.tasks is not None and not pin.jobs:  # else any violation without jobs matches
            return Outcome(
                "fail",
                f"{name}: fail: expect_violation names {pin.describe()}, but no job of this "
                f"run had such a task (verdict {verdict.status}); name a task the run submits",
                checks,
            )
    covered = {pin: [v for v in verdict.violations if pin.covers(v)] for pin in pins}
    for pin, found in covered.items():
        got = sorted({job for v in found for job in v.jobs})
        if not found or (pin.jobs is not None and got != sorted(pin.jobs)):
            what = "no such violation" if not found else f"it for job(s) {', '.join(map(str, got))}"
            return Outcome(
                "fail",
                f"{name}: fail: expect_violation names {pin.describe()} but the run had {what} "
                f"(verdict {verdict.status}); if the bug is fixed, remove expect_violation",
                checks,
            )
    stray = [v for v in verdict.violations if not any(pin.covers(v) for pin in pins)]
    if stray:
        first = stray[0]
        return Outcome(
            "fail",
            f"{name}: fail: besides the known {shown} the run failed {first.check}: "
            f"{first.message}{f' [{first.cause}]' if first.cause else ''}, which "
            "expect_violation does not name",
            checks,
        )
    matched = tuple(
        f"{v.check}: {v.message}" for v in verdict.violations if any(p.covers(v) for p in pins)
    )
    if verdict.unknowns:
        first = verdict.unknowns[0]
        return Outcome(
            "unknown",
            f"{name}: unknown: the known {shown} is there, but {first.check} could not decide "
            f"({first.message}), so the run does not pin it to its cause",
            checks,
            matched,
        )
    return Outcome("pass", f"{name}: pass (the known {shown} is still there)", checks, matched)
