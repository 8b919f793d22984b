"""Fault coverage: each fault fired and hit its window; a miss is unknown, never a pass."""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness import contract
from harness.checks.context import NO_CONTEXT, CheckContext
from harness.checks.violations import Violation, job_ids
from harness.contract import HARNESS, MASTER
from harness.history import History, HistoryEvent

__all__ = ["fault_coverage"]


def fault_coverage(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """Each fault fired and hit its window; a miss is ``unknown``, never a pass.

    A fault event with ``missed`` did not fire. ``expect = "holder"``: the target held a
    lease when the fault struck. ``expect = "outlast_lease"``: a lease of the target
    expired after the fault and before the target's next ``resume`` (or the end of the
    run). ``faults_planned``: how many faults the scenario planned (indices 0..n-1); a
    planned fault with no event never triggered.
    """
    faults_planned = context.faults_planned
    check = "fault_coverage"
    faults = history.faults()
    toxics = history.select(contract.TOXIC_ADDED, src=HARNESS)
    context.judged(sum(not f.get("scheduled") for f in faults) + len(toxics), "faults and toxics")
    found: list[Violation] = []
    if faults_planned is not None:
        fired = {fault.get("fault") for fault in faults if not fault.get("scheduled")}
        silent = [index for index in range(faults_planned) if index not in fired]
        if silent:
            message = f"planned faults {job_ids(silent)} never triggered"
            found.append(Violation(check, message, severity="unknown"))
    found.extend(_toxic_coverage(history))
    found.extend(_effect_coverage(history))
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
                why = f"it held jobs {job_ids(held)}" if held else "it held no lease"
                message = f"{label} expected a lease of {target} to expire before resume ({why})"
                found.append(Violation(check, message, tuple(held), (fault.line,), "unknown"))
        else:
            message = f"{label} has an unknown expect {expect!r} (holder, outlast_lease)"
            found.append(Violation(check, message, (), (fault.line,), "unknown"))
    return found


def _effect_coverage(history: History) -> list[Violation]:
    """Each fault whose facts name an effect proved it (a ``fault_effect`` the injector
    measured), and the history agrees: a paused target wrote nothing of its own while
    stopped, a killed one nothing after it was gone (until something brought it back).
    With ``scope = "main"`` only the top process was struck: only events that name its
    pid count (its children were meant to go on)."""
    check = "fault_coverage"
    effects: dict[tuple[object, object], HistoryEvent] = {}
    for event in history.select(contract.FAULT_EFFECT, src=HARNESS):
        key = (event.get("fault"), event.get("action"))
        if key not in effects or event.get("verified") is not True:
            effects[key] = event  # one per link for target "all": any failure decides
    faults = history.faults()
    found: list[Violation] = []
    for fault in faults:
        facts = contract.fault_action(fault.get("action"))
        if fault.get("missed") or fault.get("scheduled") or not facts.effect:
            continue
        target = str(fault.get("target") or MASTER)
        label = f"fault {fault.get('fault', '?')} ({facts.name} {target})"
        effect = effects.get((fault.get("fault"), facts.name))
        if effect is None:
            message = f"{label}: its effect was never measured, so it proves nothing"
            found.append(Violation(check, message, (), (fault.line,), "unknown"))
            continue
        lines = (fault.line, effect.line)
        if effect.get("verified") is not True:
            message = f"{label} did not take effect: {effect.get('why', 'not verified')}"
            found.append(Violation(check, message, (), lines, "unknown"))
            continue
        if target == MASTER or facts.effect in ("cut", "ready", "dropped", "reset"):
            continue  # the master's record is written by observers too; a cut is measured
        if facts.effect == "stopped":
            start, end = float(effect.get("stopped_t", fault.t)), effect.t
            what = "while paused"
        else:
            start, end = effect.t, _next_strike(faults, fault, target)
            what = "after it was killed"
        own = [e for e in history.select(src=target) if _after(e, start) and e.t < end]
        if effect.get("scope") == "main":  # only its top process was struck: events it wrote
            own = [e for e in own if e.get("pid") == fault.get("target_pid")]
        if own:
            message = (
                f"{label} did not take effect: {target} wrote {len(own)} event(s) {what} "
                f"(first: {own[0].ev}); a process the fault did not reach went on working"
            )
            found.append(Violation(check, message, (), (*lines, own[0].line), "unknown"))
    return found


#: A relay stamps a frame when it reads it: one the process wrote just before it stopped
#: (its last request, in flight) is read a moment later. Far less than a working process's
#: next request takes, far more than a relay on loopback needs.
_IN_FLIGHT_S = 0.5


def _after(event: HistoryEvent, t: float) -> bool:
    """Whether ``event`` shows its process at work after ``t``: a process stamps its own
    events as it writes them; an event a relay derived from a frame (it names the frame)
    may have been sent up to ``_IN_FLIGHT_S`` before it was read."""
    return event.t > t + (_IN_FLIGHT_S if event.get("frame") is not None else 0.0)


def _next_strike(faults: Sequence[HistoryEvent], fault: HistoryEvent, target: str) -> float:
    """When the next fault aimed at ``target`` (a restart that brings it back) fired."""
    for later in faults:
        if later.line > fault.line and later.get("target") == target:
            return later.t
    return math.inf


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


#: The toxics that act on what flows (rather than by cutting), and the field of their
#: ``toxic_effect`` that shows they acted.
_ACTS_ON = {
    "latency": "bytes",
    "bandwidth": "bytes",
    "slicer": "bytes",
    "blackhole": "bytes",
    "slow_close": "closes",
}


def _toxic_coverage(history: History) -> list[Violation]:
    """Every network toxic met a connection; a phased or cutting toxic really fired; a
    toxic that acts on what flows acted on something (its ``toxic_effect`` events)."""
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
        kind = added.get("kind")
        if kind in _ACTS_ON:
            unit = _ACTS_ON[str(kind)]
            effects = [
                e
                for e in history.select(contract.TOXIC_EFFECT, src=HARNESS)
                if e.get("proxy") == proxy and e.get("toxic") == toxic
            ]
            if not effects:
                why = f"applied to {len(applied)} connection(s), its effect was never recorded"
            elif not any(e.get(unit) for e in effects):
                why = f"applied to {len(applied)} connection(s) that carried no {unit} through it"
            else:
                why = ""
            if why:
                message = f"{label} proved nothing: {why}"
                found.append(Violation("fault_coverage", message, (), (added.line,), "unknown"))
                continue
        if added.get("after_frames") or kind in ("reset", "limit_data"):
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


def _resume_t(faults: Sequence[HistoryEvent], pause: HistoryEvent) -> float:
    for fault in faults:
        if (
            fault.line > pause.line
            and fault.get("action") == contract.SUSPENDS.get(str(pause.get("action")), "resume")
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
