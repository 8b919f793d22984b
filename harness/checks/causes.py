"""Why a job was lost, from the whole history: the cause a lost-job violation names.

Pure, like the checks. Each cause is one of ``contract.LOST_CAUSES``: its holder was struck
by a fault that ends a process (the fault-action table says which), exited by itself (its
own exit code), lost its connection, or was cut off; the master shut down while it was held;
it was handed to a get whose caller was already dead (an orphaned server thread); its result
was put after the master shut down, or never reached the app, or was put but never taken;
it was held and no result came; or it was never handed out. Where the master writes no
leases (an engine's broker hands jobs out), the workers' own ``started`` stands for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.contract import (
    COMPLETED,
    FAULT,
    HARNESS,
    LEASED,
    MASTER,
    MASTER_STOPPED,
    PROCESS_DEATHS,
    RUN_FINISHED,
    STARTED,
    WORKER_EXIT,
    WORKER_LOST,
)
from harness.history import History, HistoryEvent

__all__ = ["LostCause", "lost_cause"]


@dataclass(frozen=True, slots=True)
class LostCause:
    """A cause from ``contract.LOST_CAUSES``, a clause that tells it, the lines behind it."""

    key: str
    clause: str
    lines: tuple[int, ...] = ()


def lost_cause(history: History, job: int) -> LostCause:
    """Why ``job`` has no terminal result."""
    holds = history.select(LEASED, src=MASTER, job=job) or tuple(
        event for event in history.select(STARTED, job=job) if event.src != MASTER
    )
    if not holds:
        return LostCause("never_handed_out", "it was never handed out")
    last = holds[-1]
    worker = str(last.get("worker") or last.src)
    if last.get("client_gone"):
        return LostCause(
            "handed_to_dead_get",
            f"it was handed to a get whose caller {worker} was already dead: the server "
            "thread left blocked in that get took it and wrote it to a closed connection",
            (last.line,),
        )
    reported = _reported(history, job)
    if reported is not None:
        return reported
    death = _death(history, worker, last)
    if death is None:
        held = "leased to" if last.ev == LEASED else "started on"
        return LostCause(
            "no_result",
            f"it was {held} {worker} (attempt {last.get('attempt')}) and no result came",
            (last.line,),
        )
    lines = (last.line, death.line)
    if death.ev == FAULT:
        return LostCause(
            "holder_killed",
            f"its holder {worker} died holding it (fault {death.get('action')} at t={death.t:g})",
            lines,
        )
    shut = [e for e in history.select(MASTER_STOPPED, src=MASTER) if e.t <= death.t]
    if shut:
        return LostCause(
            "master_shut_down",
            f"the master shut down while {worker} held it",
            (*lines, shut[0].line),
        )
    if death.get("closed_by") == "app":
        return LostCause(
            "connection_cut",
            f"{worker}'s connection was cut while it held it (at t={death.t:g})",
            lines,
        )
    exited = _own_exit(history, worker)
    if exited is not None:
        code, line = exited
        return LostCause(
            "holder_exited",
            f"its holder {worker} exited by itself (exit {code}) while it held it",
            (*lines, *((line,) if line is not None else ())),
        )
    return LostCause(
        "holder_lost",
        f"its holder {worker} went away holding it (its connection closed at t={death.t:g})",
        lines,
    )


def _reported(history: History, job: int) -> LostCause | None:
    reports = [event for event in history.select(COMPLETED, job=job) if event.src != MASTER]
    if not reports:
        return None
    report = reports[-1]
    stopped = history.select(MASTER_STOPPED, src=MASTER)
    if report.get("after_shutdown") or (stopped and report.t > stopped[0].t):
        lines = (report.line, *(event.line for event in stopped[:1]))
        return LostCause(
            "result_after_shutdown",
            f"its result was put by {report.src} after the master shut down",
            lines,
        )
    if report.get("unanswered") or report.get("refused"):
        return LostCause(
            "result_unanswered",
            f"its result was put by {report.src} but never reached the app (no answer "
            "came: the connection closed first)",
            (report.line,),
        )
    return LostCause(
        "result_not_taken",
        f"its result was put by {report.src} but the master never took it",
        (report.line,),
    )


def _death(history: History, worker: str, hold: HistoryEvent) -> HistoryEvent | None:
    """The first sign after ``hold`` that ``worker`` died or was cut off: a fault that ends
    a process (from the fault-action table) or the master's record that it was lost."""
    for event in history.events[hold.line + 1 :]:
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


def _own_exit(history: History, worker: str) -> tuple[int, int | None] | None:
    """``worker``'s exit code when it exited by itself (a code >= 0: no signal ended it),
    from its own ``worker_exit`` or the harness's record of the run's exit codes."""
    for event in history.select(WORKER_EXIT, src=worker):
        code = event.get("code")
        if isinstance(code, int) and code >= 0:
            return code, event.line
    for event in history.select(RUN_FINISHED, src=HARNESS):
        codes = event.get("exit_codes")
        code = codes.get(worker) if isinstance(codes, dict) else None
        if isinstance(code, int) and code >= 0:
            return code, event.line
    return None
