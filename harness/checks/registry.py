"""The registry of every check, and judging a history with the checks a scenario names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from harness.checks.attempts import attempts_bounded
from harness.checks.auth import auth
from harness.checks.batches import batch_barrier, batch_shape
from harness.checks.context import NO_CONTEXT, CheckContext
from harness.checks.coverage import fault_coverage
from harness.checks.delivery import (
    at_least_once,
    correct_values,
    exactly_once,
    first_result_wins,
    one_terminal,
)
from harness.checks.exits import clean_exits
from harness.checks.liveness import liveness, no_spurious_expiry, recovery_latency, time_limits
from harness.checks.verdict import Outcome, Status, Verdict
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
}


def judge(history: History, checks: Sequence[str], context: CheckContext = NO_CONTEXT) -> Verdict:
    """Run the named checks: fail on any violation, else unknown on any miss, else pass."""
    unknown_names = [name for name in checks if name not in CHECKS]
    if unknown_names:
        raise ValueError(f"unknown check {unknown_names[0]!r}; valid checks: {', '.join(CHECKS)}")
    found: dict[Severity, list[Violation]] = {"fail": [], "unknown": [], "note": []}
    for name in checks:
        for violation in CHECKS[name](history, context):
            found[violation.severity].append(violation)
    violations, unknowns = found["fail"], found["unknown"]
    status: Status = "fail" if violations else "unknown" if unknowns else "pass"
    return Verdict(status, tuple(violations), tuple(unknowns), tuple(checks), tuple(found["note"]))


def known_bug_outcome(name: str, known: tuple[str, ...], verdict: Verdict) -> Outcome:
    """What a run means for a scenario whose ``expect_violation`` checks are ``known``.

    A known-bug reproduction passes only when every known violation is there, no other
    check failed and no check was left undecided: a fault that missed its window makes the
    reproduction unknown (the violation may have come from elsewhere), and a failure the
    scenario does not name is a failure.
    """
    status, message = _known_bug(name, known, verdict)
    return Outcome(status, message, known)


def _known_bug(name: str, known: tuple[str, ...], verdict: Verdict) -> tuple[Status, str]:
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
