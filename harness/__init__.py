"""The fault-injection harness: spawn a system under test, inject faults, record, check.

Layering, from the core outwards:
  contract    the history contract: event-log format and vocabulary (standard library only)
  detect      tell a scenario file from other TOML (standard library only)
  explain     one line for a person from a validation error
  limits      what a scenario may ask for: finite numbers, bounded totals, reachable references
  toxics      network toxics: what a fault proxy does to the bytes
  history     merge the event logs of a run into one ordered history, and query it
  causes      why a lost job was lost, from the history (pure)
  violations  what a checker reports (a failure, an undecided check, a measurement)
  semantics   checkers of the queue's stated semantics (attempts, leases, limits...)
  checks      pure checkers History -> violations, the registry of every check, the verdict
  timeline    a run as lanes, attempts, faults and batches, from its history and verdict
  trace       the timeline as Chrome trace events (trace.json)
  chart       the timeline as SVG
  report      report.html of a run: summary, chart, model and history in one file
  proxy       the fault proxy between a worker and its master
  wire        relays that watch a BaseManager app: safe decoding, frames, history events
  systems     the System protocol, the kinds, one adapter each (only systems/distq.py imports distq)
  follow      follow event logs while they are written
  reaper      a lifeline process: kills a run's processes when the harness dies, SIGKILL too
  cluster     spawn a system's processes as real processes; tear them down
  faults      fault actions, their triggers, the injector
  run         one run: cluster + faults + history + checks
  scenario    scenario files: format, validation, schema, running one
  strategies  Hypothesis strategies that generate scenarios
  properties  run generated scenarios as properties
  matrix      every scenario against every system: the guarantees table
  cli         python -m harness
  __main__    its entry point
  plugin      the pytest plugin (imports the harness only when a scenario file is collected)
Each imports only from the layers above it (tests/test_harness_layering.py holds it).
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
