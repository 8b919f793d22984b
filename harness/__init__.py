"""The fault-injection harness: spawn a system under test, inject faults, record, check.

Layering, from the core outwards:
  contract    the history contract: event-log format and vocabulary (standard library only)
  explain     one line for a person from a validation error
  logread     event logs decoded by msgspec: typed records for the kinds written by the million
  columns     a run's events as columns: arrays and a list per field, not an object per event
  history     merge the event logs of a run into one ordered history, and query it
  follow      follow event logs while they are written
  net/        the fault proxy between a worker and its master, and its toxics
  checks/     pure checkers History -> violations, the registry of every check, the verdict
  report/     a run's timeline as SVG, Chrome trace and one HTML page
  wire/       relays that watch a BaseManager app: safe decoding, frames, history events
  systems/    the System protocol, the kinds, one adapter each (only systems/distq.py imports distq)
  runtime/    spawn a system as real processes, fault them, collect the history: one run
  scenario/   scenario files: format, validation, schema, writing, running one
  gen/        Hypothesis strategies that generate scenarios, and property runs
  run         the public name of runtime/run
  strategies  the public name of gen/strategies
  matrix      every scenario against every system: the guarantees table
  cli         python -m harness
  __main__    its entry point
  plugin      the pytest plugin (imports the harness only when a scenario file is collected)
Each imports only from the layers above it (tests/harness/test_harness_layering.py holds it, and
each folder to the layering its ``__init__`` states). ``history`` and ``checks`` import
nothing that spawns or signals; only ``runtime`` does. The data path: scenario file ->
run spec -> cluster -> faults -> history -> checks -> verdict -> report. The names below
load lazily, so ``import harness`` (as the pytest plugin does) costs nothing.
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
