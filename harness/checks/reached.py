"""What the run must have reached: a scenario's "sometimes" assertions.

A scenario whose point is a window (a lease that expires while its holder is paused, a
duplicate dropped, a batch closed while a worker is stopped) names the events that window
produces in ``[expect] reached``; a run that never reached one of them proved nothing about
it, whatever the other checks say, and its verdict is unknown.
"""

from __future__ import annotations

from harness import contract
from harness.checks.context import NO_CONTEXT, CheckContext, Reach
from harness.checks.violations import Violation
from harness.history import History, HistoryEvent

__all__ = ["reached"]


def _windows(history: History, action: str) -> list[tuple[float, float]]:
    """Each span a fault of ``action`` was in force: from it to the fault that ends it on
    the same target (a resume, a heal), else to the end of the run."""
    ender = contract.WINDOW_ENDS.get(action)
    faults = [f for f in history.faults() if not f.get("missed")]
    spans = []
    for fault in faults:
        if fault.get("action") != action:
            continue
        end = next(
            (
                later.t
                for later in faults
                if ender is not None
                and later.line > fault.line
                and later.get("action") == ender
                and later.get("target") == fault.get("target")
            ),
            history.end_t,
        )
        spans.append((fault.t, end))
    return spans


def _matches(event: HistoryEvent, reach: Reach) -> bool:
    return (
        event.ev == reach.event
        and (reach.src is None or event.src == reach.src)
        and (reach.job is None or event.job == reach.job)
        and (reach.worker is None or event.get("worker") == reach.worker)
    )


def reached(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """Each of the scenario's ``reached`` events happened at least once (in its window)."""
    check = "reached"
    context.judged(len(context.reached), "assertions")
    found = []
    for reach in context.reached:
        spans = None if reach.during is None else _windows(history, reach.during)
        hits = [
            event
            for event in history.select(reach.event)
            if _matches(event, reach)
            and (spans is None or any(start <= event.t <= end for start, end in spans))
        ]
        if not hits:
            message = f"never reached: {reach.describe()}; the run did not show what it is for"
            found.append(Violation(check, message, severity="unknown"))
    return found
