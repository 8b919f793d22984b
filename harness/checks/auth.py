"""The door checks: every wrong-key worker and bad handshake was refused, and none served
(auth); every worker with the right key got in, however crowded the door was (admitted).
"""

from __future__ import annotations

from harness import contract
from harness.checks.context import NO_CONTEXT, CheckContext
from harness.checks.violations import Violation, undecided
from harness.contract import MASTER
from harness.history import History, HistoryEvent

__all__ = ["BAD_HANDSHAKE_ACTIONS", "WRONG_KEY_WORKER_ACTIONS", "admitted", "auth"]


#: Harness faults that start a worker with a bad key, and ones that only handshake badly.
#: Workers started with a bad key, and connections that fail the handshake (each needs a
#: rejection).
WRONG_KEY_WORKER_ACTIONS = contract.actions_where(lambda row: row.attack == "intruder")

BAD_HANDSHAKE_ACTIONS = contract.actions_where(lambda row: row.attack == "handshake")

_SERVED_WORKER_EVENTS = frozenset({contract.CONNECTED, contract.STARTED, contract.COMPLETED})


def auth(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """Every wrong-key attempt was rejected, and no wrong-key worker was served.

    Wrong-key workers are named by ``wrong_key_workers`` (the harness knows the names it
    gave them) and by the ``target`` of ``wrong_key_worker`` / ``empty_key_worker`` faults.
    The master knows a rejected peer's address, not its name, so rejections are counted:
    each wrong-key worker and each of a ``bad_handshakes`` fault's ``count`` needs one
    ``auth_rejected``. An empty key is refused by the worker itself before it connects,
    so an ``empty_key_worker`` only has to stay unserved.
    """
    wrong_key_workers = context.wrong_key_workers
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
    context.judged(len(names) + needed + sum(map(_count, idle)), "wrong-key attempts")
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


_JOINS = frozenset({contract.WORKER_JOINED, contract.WORKER_REJOINED})


def admitted(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """Every worker started with the right key joined the master before the run ended.

    The workers are the processes whose exits the run recorded (``exit_codes``) besides
    the master, less the wrong-key ones (as ``auth`` names them). A "busy" answer from a
    crowded door is no refusal: the worker must try again until it is in, so a worker that
    gave up on one (or was refused for the crowd) fails here.
    """
    check = "admitted"
    if context.exit_codes is None:
        return undecided(check, "the run recorded no processes: nothing says which workers ran")
    faults = [fault for fault in history.faults() if not fault.get("missed")]
    intruders = set(context.wrong_key_workers)
    intruders.update(
        str(fault.get("target"))
        for fault in faults
        if fault.get("action") in WRONG_KEY_WORKER_ACTIONS and fault.get("target")
    )
    workers = sorted(
        name for name in context.exit_codes if name != MASTER and name not in intruders
    )
    context.judged(len(workers), "workers with the right key")
    joined = {str(event.get("worker")) for event in history.select(_JOINS, src=MASTER)}
    busy = sum(
        map(
            _count,
            (
                e
                for e in history.select(contract.AUTH_REJECTED, src=MASTER)
                if e.get("kind") == "busy"
            ),
        )
    )
    found: list[Violation] = []
    for name in workers:
        if name in joined:
            continue
        code = context.exit_codes[name]
        exits = history.select(contract.WORKER_EXIT, src=name)
        how = "was still out when the run ended" if code is None else f"exited {code}"
        reason = exits[-1].get("reason") if exits else None
        message = (
            f"{name}, started with the right key, never joined the master: it {how}"
            f"{f' ({reason})' if reason else ''}; the master answered busy {busy} time(s)"
        )
        found.append(Violation(check, message, (), tuple(e.line for e in exits)))
    return found


def _count(event: HistoryEvent) -> int:
    """A fault's ``count``, or how many refusals a master's summary line stands for."""
    count = event.get("count", 1)
    return count if isinstance(count, int) and count > 0 else 1
