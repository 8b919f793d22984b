"""acknowledged: what a producer was promised about its submissions.

A producer (``[system] producer``) writes ``flushed`` with the ids the master acknowledged
and, at its end, ``producer_done`` with its own tally. Every acknowledged id must be on the
master's record (a ``job_submitted``): exactly_once then holds it to one result. A producer
that was refused a well-formed job, was never told of a malformed one's refusal, got a
result twice or a wrong one, or never got one it collected for says so in its tally.
"""

from __future__ import annotations

from harness import contract
from harness.checks.context import NO_CONTEXT, CheckContext
from harness.checks.violations import Violation
from harness.history import History

__all__ = ["acknowledged"]

#: The tally fields of ``producer_done`` that must be zero, and what each means.
_TALLY = {
    "refused": "well-formed submissions refused by the master",
    "unreported": "malformed submissions whose refusal was never reported to it",
    "duplicates": "results it was handed twice",
    "wrong": "results with a wrong value",
    "missing": "results of its jobs it was never handed",
}


def acknowledged(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """Each job acknowledged to a producer is on the master's record; each producer's own
    tally counts no refusal of a well-formed job, no unreported refusal, no result twice and
    no wrong value."""
    check = "acknowledged"
    submitted = history.submitted()
    found: list[Violation] = []
    count = 0
    for flushed in history.select(contract.FLUSHED):
        for job in flushed.get("jobs") or ():
            count += 1
            if isinstance(job, int) and job not in submitted:
                message = (
                    f"job {job}: acknowledged to {flushed.src} (a flush returned), yet the "
                    "master never recorded its submission"
                )
                found.append(Violation(check, message, (job,), (flushed.line,)))
    for done in history.select(contract.PRODUCER_DONE):
        for field, meaning in _TALLY.items():
            value = done.get(field)
            if isinstance(value, int) and value > 0:
                message = f"{done.src} counted {value} {meaning}"
                found.append(Violation(check, message, (), (done.line,)))
    context.judged(count, "acknowledged submissions")
    return found
