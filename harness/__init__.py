"""The fault-injection harness: spawn a system under test, inject faults, record, check.

Layering, from the core outwards (each imports only what is above it):
  contract  the history contract: event-log format and vocabulary (standard library only)
  history   merge the event logs of a run into one ordered history, and query it
  checks    pure checkers History -> violations, and the verdict (pass / fail / unknown)
  systems   the System protocol and one adapter per kind (systems/distq.py: the only
            module that imports distq)
  cluster   spawn a system's processes as real processes; tear them down
  faults    fault actions and their triggers
  run       one run: cluster + faults + history + checks
  scenario  scenario files; strategies and properties generate them; cli and plugin run them
``history`` and ``checks`` import nothing that spawns or signals. The names below load
lazily, so ``import harness`` (as the pytest plugin does) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.checks import CHECKS, Verdict, Violation, judge
    from harness.history import History, HistoryEvent, Lease

__all__ = ["CHECKS", "History", "HistoryEvent", "Lease", "Verdict", "Violation", "judge"]

_HOMES = {
    "CHECKS": "harness.checks",
    "Verdict": "harness.checks",
    "Violation": "harness.checks",
    "judge": "harness.checks",
    "History": "harness.history",
    "HistoryEvent": "harness.history",
    "Lease": "harness.history",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
