"""What correct means: pure checkers from a History to violations, and the verdict.

Layering, from the core outwards:
  violations what a checker reports (a failure, an undecided check, a measurement)
  causes     why a lost job was lost, from the history
  context    what a check is told besides the history (CheckContext), exit-code tables
  verdict    pass / fail / unknown, and the exit code of each
  struck     what the harness did to each worker, from the faults and their facts
  delivery   exactly_once, at_least_once, correct_values, one_terminal, first_result_wins,
             no_stale_results
  batches    batch_barrier, batch_shape
  auth       auth, admitted
  liveness   liveness, recovery_latency, no_spurious_expiry, time_limits
  attempts   attempts_bounded, prefetch_bounded, no_overlap
  coverage   fault_coverage
  exits      clean_exits
  reached    reached: the events a scenario says its run must show
  submissions acknowledged: what a producer was promised about its submissions
  outputs    outputs_kept: what a master owes its results when it cannot write an output
  registry   the registry of every check; judge; the known-bug outcome
Each imports only from the layers above it and from the harness's core (contract,
history). Nothing here spawns, signals or does I/O: a check is a pure function of the
history and a typed ``CheckContext``.
"""

from __future__ import annotations

from harness.checks.attempts import (
    attempts_bounded,
    no_overlap,
    prefetch_bounded,
)
from harness.checks.auth import (
    BAD_HANDSHAKE_ACTIONS,
    WRONG_KEY_WORKER_ACTIONS,
    admitted,
    auth,
)
from harness.checks.batches import (
    batch_barrier,
    batch_shape,
)
from harness.checks.causes import (
    lost_cause,
)
from harness.checks.context import (
    NO_CONTEXT,
    CheckContext,
    ExitCodes,
    Expect,
    ExpectedFailed,
    ExpectedFn,
    Reach,
    Satisfies,
    Tally,
)
from harness.checks.coverage import (
    fault_coverage,
)
from harness.checks.delivery import (
    at_least_once,
    correct_values,
    duplicate_executions,
    exactly_once,
    first_result_wins,
    no_stale_results,
    one_terminal,
)
from harness.checks.exits import (
    clean_exits,
)
from harness.checks.liveness import (
    DEFAULT_RECOVERY_BOUND_S,
    DEFAULT_TIME_LIMIT_SLACK_S,
    MASTER_KILL_ACTIONS,
    liveness,
    no_spurious_expiry,
    recovery_latency,
    time_limits,
)
from harness.checks.reached import reached
from harness.checks.registry import (
    CHECKS,
    Checker,
    judge,
    known_bug_outcome,
)
from harness.checks.struck import (
    Struck,
    action_facts,
    master_events,
    struck,
)
from harness.checks.submissions import acknowledged
from harness.checks.verdict import (
    EXIT_USAGE,
    VERDICT_EXIT_CODES,
    Outcome,
    Pin,
    Status,
    Verdict,
)
from harness.checks.violations import (
    Severity,
    Violation,
    job_ids,
    undecided,
)

__all__ = [
    "BAD_HANDSHAKE_ACTIONS",
    "CHECKS",
    "DEFAULT_RECOVERY_BOUND_S",
    "DEFAULT_TIME_LIMIT_SLACK_S",
    "EXIT_USAGE",
    "MASTER_KILL_ACTIONS",
    "NO_CONTEXT",
    "VERDICT_EXIT_CODES",
    "WRONG_KEY_WORKER_ACTIONS",
    "CheckContext",
    "Checker",
    "ExitCodes",
    "Expect",
    "ExpectedFailed",
    "ExpectedFn",
    "Outcome",
    "Pin",
    "Reach",
    "Satisfies",
    "Severity",
    "Status",
    "Struck",
    "Tally",
    "Verdict",
    "Violation",
    "acknowledged",
    "action_facts",
    "admitted",
    "at_least_once",
    "attempts_bounded",
    "auth",
    "batch_barrier",
    "batch_shape",
    "clean_exits",
    "correct_values",
    "duplicate_executions",
    "exactly_once",
    "fault_coverage",
    "first_result_wins",
    "job_ids",
    "judge",
    "known_bug_outcome",
    "liveness",
    "lost_cause",
    "master_events",
    "no_overlap",
    "no_spurious_expiry",
    "no_stale_results",
    "one_terminal",
    "prefetch_bounded",
    "reached",
    "recovery_latency",
    "struck",
    "time_limits",
    "undecided",
]
