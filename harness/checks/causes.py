"""Why a job was lost, from the history alone: the cause a lost-job violation names.

Pure, like the checks: its holder died, or its connection was cut, or the master shut down
while it was held; it was handed to a get whose caller was already dead (an orphaned server
thread); its result was put after the master shut down, or never reached the app, or was
put but never taken; or it was never handed out.
"""

from __future__ import annotations

from harness.contract import (
    COMPLETED,
    FAULT,
    HARNESS,
    LEASED,
    MASTER,
    MASTER_STOPPED,
    PROCESS_DEATHS,
    WORKER_LOST,
)
from harness.history import History, HistoryEvent

__all__ = ["lost_cause"]


def lost_cause(history: History, job: int) -> tuple[str, tuple[int, ...]]:
    """A clause naming why ``job`` has no terminal result, and the history lines behind it."""
    leases = history.select(LEASED, src=MASTER, job=job)
    if not leases:
        return "it was never handed out", ()
    last = leases[-1]
    worker = str(last.get("worker"))
    if last.get("client_gone"):
        return (
            f"it was handed to a get whose caller {worker} was already dead: the server "
            "thread left blocked in that get took it and wrote it to a closed connection",
            (last.line,),
        )
    reports = [event for event in history.select(COMPLETED, job=job) if event.src != MASTER]
    if reports:
        report = reports[-1]
        stopped = history.select(MASTER_STOPPED, src=MASTER)
        if report.get("after_shutdown") or (stopped and report.t > stopped[0].t):
            lines = (report.line, *(event.line for event in stopped[:1]))
            return f"its result was put by {report.src} after the master shut down", lines
        if report.get("unanswered") or report.get("refused"):
            return (
                f"its result was put by {report.src} but never reached the app (no answer "
                "came: the connection closed first)",
                (report.line,),
            )
        return f"its result was put by {report.src} but the master never took it", (report.line,)
    death = _death(history, worker, last)
    if death is None:
        return f"it was leased to {worker} (attempt {last.get('attempt')}) and no result came", (
            last.line,
        )
    lines = (last.line, death.line)
    if death.ev == FAULT:
        return (
            f"its holder {worker} died holding it (fault {death.get('action')} at t={death.t:g})",
            lines,
        )
    shut = [e for e in history.select(MASTER_STOPPED, src=MASTER) if e.t <= death.t]
    if shut:
        return f"the master shut down while {worker} held it", (*lines, shut[0].line)
    if death.get("closed_by") == "app":
        return f"{worker}'s connection was cut while it held it (at t={death.t:g})", lines
    return f"its holder {worker} died holding it (its connection closed at t={death.t:g})", lines


def _death(history: History, worker: str, lease: HistoryEvent) -> HistoryEvent | None:
    """The first sign after ``lease`` that ``worker`` died or was cut off."""
    for event in history.events[lease.line + 1 :]:
        if (
            event.src == HARNESS
            and event.ev == FAULT
            and event.get("target") == worker
            and event.get("action") in PROCESS_DEATHS
            and not event.get("missed")
        ):
            return event
        if event.src == MASTER and event.ev == WORKER_LOST and event.get("worker") == worker:
            return event
    return None
