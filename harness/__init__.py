"""The distq fault-injection harness: spawn a cluster, inject faults, record, check.

Layering, from the core outwards:
  history  merge the event logs of a run into one ordered history, and query it
  checks   pure checkers History -> violations, and the verdict (pass / fail / unknown)
  cluster  spawn master and workers as real processes; tear them down
  faults   fault actions and their triggers
The harness talks to the system under test only through its CLI, its READY line and its
event log. ``history`` and ``checks`` import nothing that spawns or signals.
"""

from harness.checks import CHECKS, Verdict, Violation, judge
from harness.history import History, HistoryEvent, Lease

__all__ = ["CHECKS", "History", "HistoryEvent", "Lease", "Verdict", "Violation", "judge"]
