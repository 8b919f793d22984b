"""What the harness did to each worker, read from the history's fault events (with the
fault-action facts of the contract): deaths, SIGTERMs, kills, suspensions, network faults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness import contract
from harness.contract import HARNESS, MASTER, RESULTS
from harness.history import History, HistoryEvent

__all__ = ["Struck", "action_facts", "master_events", "struck"]


def master_events(history: History) -> Sequence[HistoryEvent]:
    return history.select(src=MASTER)


@dataclass(frozen=True, slots=True)
class Struck:
    """Per worker: when a fault ended its process, and when it was suspended."""

    gone: Mapping[str, float]  # first kill / terminate / restart
    sigterm: Mapping[str, float]  # first terminate / restart
    killed: Mapping[str, float]  # first SIGKILL
    suspended: Mapping[str, tuple[tuple[float, float], ...]]  # pause / partition windows
    network: Mapping[str, float]  # first toxic or partition on its proxy

    def suspended_during(self, worker: str, start: float, end: float) -> bool:
        return any(a < end and start < b for a, b in self.suspended.get(worker, ()))

    def resumed_after(self, worker: str, t: float) -> float:
        """``t``, or the end of the suspension that covers ``t``."""
        for a, b in self.suspended.get(worker, ()):
            if a <= t < b:
                return b
        return t

    def disturbed(self, worker: str, start: float, end: float) -> bool:
        """Killed, stopped, suspended or on a toxic network somewhere in [start, end]."""
        return (
            self.gone.get(worker, math.inf) <= end
            or self.network.get(worker, math.inf) <= end
            or self.suspended_during(worker, start, end)
        )


def struck(history: History) -> Struck:
    gone: dict[str, float] = {}
    sigterm: dict[str, float] = {}
    killed: dict[str, float] = {}
    network: dict[str, float] = {}
    windows: dict[str, list[tuple[float, float]]] = {}
    opened: dict[tuple[str, str], float] = {}  # (worker, action) -> start
    for fault in history.faults():
        if fault.get("missed"):
            continue
        action, target = str(fault.get("action")), str(fault.get("target"))
        facts = contract.fault_action(action)
        if action in contract.PROCESS_DEATHS:
            gone.setdefault(target, fault.t)
        if facts.ends == "graceful":  # SIGTERM: the worker may hand its work back
            sigterm.setdefault(target, fault.t)
        if facts.ends == "abrupt" and facts.aims == "process":
            killed.setdefault(target, fault.t)
        if (facts.network or facts.kernel) and facts.ended_by:  # a toxic, a cut, a loss begins
            network.setdefault(target, fault.t)
        if facts.suspends:
            opened[(target, action)] = fault.t
        for start_action, end_action in contract.SUSPENDS.items():
            if action == end_action and (target, start_action) in opened:
                windows.setdefault(target, []).append((opened.pop((target, start_action)), fault.t))
    for (target, _action), start in opened.items():
        windows.setdefault(target, []).append((start, math.inf))
    for event in history.select((contract.TOXIC_ADDED, contract.PARTITION), src=HARNESS):
        network.setdefault(str(event.get("proxy")), event.t)
    if "all" in network:
        for name in {e.src for e in history if e.src not in (MASTER, HARNESS, RESULTS)}:
            network.setdefault(name, network["all"])
    return Struck(gone, sigterm, killed, {k: tuple(v) for k, v in windows.items()}, network)


def action_facts(fault: HistoryEvent) -> contract.FaultAction:
    return contract.fault_action(fault.get("action"))
