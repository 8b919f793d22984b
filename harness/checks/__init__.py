"""What correct means: pure checkers from a History to violations, and the verdict.

Layering, from the core outwards:
  violations  what a checker reports (a failure, an undecided check, a measurement)
  causes      why a lost job was lost, from the history
  semantics   checkers of the queue's stated semantics (attempts, leases, limits...)
  registry    the delivery, batch, auth, liveness, coverage and exit checkers; the registry
              of every check; the verdict
Each imports only from the layers above it and from the harness's core (contract,
history). Nothing here spawns, signals or does I/O: a check is a pure function.
"""

from __future__ import annotations

from harness.checks.registry import (
    BAD_HANDSHAKE_ACTIONS,
    CHECKS,
    EXIT_USAGE,
    MASTER_KILL_ACTIONS,
    VERDICT_EXIT_CODES,
    WRONG_KEY_WORKER_ACTIONS,
    Checker,
    ExitCodes,
    Expect,
    ExpectedFn,
    Status,
    Verdict,
    at_least_once,
    auth,
    batch_barrier,
    clean_exits,
    correct_values,
    duplicate_executions,
    exactly_once,
    fault_coverage,
    judge,
    known_bug_outcome,
    liveness,
)
from harness.checks.violations import Violation

__all__ = [
    "BAD_HANDSHAKE_ACTIONS",
    "CHECKS",
    "EXIT_USAGE",
    "MASTER_KILL_ACTIONS",
    "VERDICT_EXIT_CODES",
    "WRONG_KEY_WORKER_ACTIONS",
    "Checker",
    "ExitCodes",
    "Expect",
    "ExpectedFn",
    "Status",
    "Verdict",
    "Violation",
    "at_least_once",
    "auth",
    "batch_barrier",
    "clean_exits",
    "correct_values",
    "duplicate_executions",
    "exactly_once",
    "fault_coverage",
    "judge",
    "known_bug_outcome",
    "liveness",
]
