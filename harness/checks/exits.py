"""Clean exits: every process ended on its own with its documented exit code, no traceback."""

from __future__ import annotations

from harness import contract
from harness.checks.context import (
    NO_CONTEXT,
    CheckContext,
)
from harness.checks.struck import (
    action_facts,
)
from harness.checks.violations import Violation
from harness.contract import HARNESS, MASTER
from harness.history import History

__all__ = ["clean_exits"]


def _arrived_after_the_end(history: History) -> set[str]:
    """Workers the master never saw join that exited after the master had stopped."""
    stopped = history.select(contract.MASTER_STOPPED, src=MASTER)
    if not stopped:
        return set()
    joined = {str(e.get("worker")) for e in history.select(contract.WORKER_JOINED, src=MASTER)}
    return {
        e.src
        for e in history.select(contract.WORKER_EXIT)
        if e.src not in joined and e.t > stopped[-1].t
    }


def clean_exits(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """Every process ended on its own with its documented exit code, and no log holds a
    traceback. ``exit_codes`` and ``logs`` (name -> text) come from the harness,
    ``documented`` (what each code means) from the system under test.

    Expected: the master ``ok`` (unless a fault killed it: -9); workers ``ok``, or
    ``master_lost`` once the master was killed and not restarted, or restarted afresh (no
    journal: another master, to the workers of the one before); wrong-key workers
    ``auth_rejected``; empty-key workers ``usage``; a worker a fault SIGKILLed -9. A worker
    that never joined and gave up only after the master had stopped (it was still starting
    when the work ran out) may exit ``no_master`` or ``master_lost``: it cannot tell a
    finished master from a lost one. A producer (when the system judges its exit) ``ok``.
    A process the scenario names in ``expected_exits`` must end with that code instead.
    ``None`` means the harness had to kill it at teardown: it never exited.
    """
    exit_codes = context.exit_codes
    logs = context.logs
    documented = context.documented
    check = "clean_exits"
    if exit_codes is None:
        return [Violation(check, "no exit codes were recorded", severity="unknown")]
    if documented is None:
        return [Violation(check, "the system documents no exit codes", severity="unknown")]

    def codes(*meanings: int | None) -> set[int]:
        return {code for code in meanings if code is not None}

    faults = [fault for fault in history.faults() if not fault.get("missed")]
    master_faults = [f for f in faults if f.get("action") in contract.MASTER_ACTIONS]
    master_killed = bool(master_faults) and not any(
        action_facts(f).comes_back for f in master_faults
    )
    killed = {
        str(f.get("target"))
        for f in faults
        if action_facts(f).ends == "abrupt" and action_facts(f).aims == "process"
    }
    # A worker whose connection a network toxic cut lost its master (5); one whose
    # handshake was swallowed gave up on it (6). Both are documented, clean exits.
    cut = {str(e.get("proxy")) for e in history.select(contract.TOXIC_FIRED, src=HARNESS)}
    swallowed = {
        str(e.get("proxy"))
        for e in history.select(contract.TOXIC, src=HARNESS)
        if e.get("kind") == "blackhole" and e.get("decision") == "applied"
    }
    restarted = {
        str(f.get("target"))
        for f in faults
        if action_facts(f).comes_back and action_facts(f).aims == "process"
    }
    intruders = {str(f.get("target")) for f in faults if f.get("action") == "wrong_key_worker"}
    empty_keyed = {str(f.get("target")) for f in faults if f.get("action") == "empty_key_worker"}
    late = _arrived_after_the_end(history)
    # A master started afresh is another master with the same address: a worker of the one
    # before (it joined that one) that finds it there has lost its master (5).
    fresh = [inc.t_start for inc in history.incarnations()[1:] if not inc.resumed]
    orphaned = {
        str(e.get("worker"))
        for e in history.select((contract.WORKER_JOINED, contract.WORKER_REJOINED), src=MASTER)
        if fresh and e.t < fresh[-1]
    }
    found: list[Violation] = []
    fault_lines = tuple(f.line for f in faults)
    context.judged(len(exit_codes), "exits")
    for name, code in sorted(exit_codes.items()):
        if name == MASTER:
            allowed = {-9} if master_killed else codes(documented.ok)
        elif name in intruders:
            allowed = codes(documented.auth_rejected)
        elif name in empty_keyed:
            allowed = codes(documented.usage)  # it refuses an empty key before connecting
        else:
            allowed = codes(documented.master_lost if master_killed else documented.ok)
            if name in killed and name not in restarted:
                allowed |= {-9}
            if name in cut:
                allowed |= codes(documented.master_lost)
            if name in swallowed:
                allowed |= codes(documented.master_lost, documented.handshake_timeout)
            if name in late:
                allowed |= codes(documented.no_master, documented.master_lost)
            if name in orphaned:
                allowed |= codes(documented.master_lost)
        if name in context.expected_exits:  # the scenario says how it ends
            allowed = {context.expected_exits[name]}
        if code is None:
            found.append(Violation(check, f"{name} never exited on its own", (), fault_lines))
        elif code not in allowed:
            want = " or ".join(str(c) for c in sorted(allowed))
            found.append(
                Violation(check, f"{name} exited with {code}, expected {want}", (), fault_lines)
            )
    for name, text in sorted((logs or {}).items()):
        if "Traceback (most recent call last)" in text:
            found.append(Violation(check, f"{name}'s log holds a traceback", (), ()))
    return found
