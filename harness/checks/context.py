"""What a check is told besides the history: the typed context, the exit-code table a
system documents, and the expected-value function.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NO_CONTEXT",
    "CheckContext",
    "ExitCodes",
    "Expect",
    "ExpectedFailed",
    "ExpectedFn",
    "Reach",
    "Satisfies",
    "Tally",
]


@dataclass(frozen=True, slots=True)
class ExitCodes:
    """A system's documented exit codes by meaning; None: the system does not document one.

    Given by the system under test (``harness.systems``), read by ``clean_exits``.

    ``clean_exits`` allows a code only when the run gave its process that reason.
    """

    ok: int = 0
    usage: int | None = None  # bad option or key (an empty key refused before connecting)
    auth_rejected: int | None = None  # the master refused the key
    no_master: int | None = None  # nothing accepted a connection
    master_lost: int | None = None  # the master went away mid-run
    handshake_timeout: int | None = None  # the handshake was never answered
    interrupted: int | None = None  # Ctrl-C
    output_failed: int | None = None  # the master could not write an output (a full disk)


class Expect(enum.Enum):
    """What an ``expected`` function returns when it has no single value to offer."""

    UNKNOWN = "unknown"  # cannot say: skip the job
    FAILURE = "failure"  # the task cannot succeed on these args: an ok result is wrong
    AGREE = "agree"  # no oracle: every successful execution of the job returned one value


ExpectedFn = Callable[[str, tuple[Any, ...]], Any]


class Tally:
    """Where a check counts what it judged ("30 jobs"): ``judge`` reads it, and a check
    that judged nothing is unknown, never a pass."""

    __slots__ = ("count", "unit")

    def __init__(self) -> None:
        self.count: int | None = None
        self.unit = ""


@dataclass(frozen=True, slots=True)
class Satisfies:
    """What an expected function offers for results it cannot compute but can judge (a
    timing or pid field): ``test(value)`` says whether a result is right."""

    test: Callable[[Any], Any]
    name: str = "the expected predicate"


@dataclass(frozen=True, slots=True)
class ExpectedFailed:
    """The expected-value function raised on an item: there is nothing to compare with."""

    error: str


@dataclass(frozen=True, slots=True)
class Reach:
    """An event the run must show at least once: of kind ``event``; from ``src``, about
    ``job`` or ``worker`` when given; with ``during``, while a fault of that action was in
    force (from the fault to the action that ends it, or to the end of the run)."""

    event: str
    src: str | None = None
    job: int | None = None
    worker: str | None = None
    during: str | None = None

    def describe(self) -> str:
        parts = [self.event]
        parts += [
            f"{key} {value}"
            for key, value in (("from", self.src), ("job", self.job), ("worker", self.worker))
            if value is not None
        ]
        if self.during is not None:
            parts.append(f"during a {self.during}")
        return " ".join(map(str, parts))


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckContext:
    """Everything a check is told besides the history, each field read by the checks named
    beside it. A field nobody gave is None (or empty): the check falls back to what the
    history itself states, or says ``unknown``. A misspelt field is a TypeError."""

    #: The value ``task(*args)`` should yield (correct_values); from the system under test.
    expected: ExpectedFn | None = None
    #: An engine has no master that accepts results: a worker's ``completed`` is the
    #: result (exactly_once).
    executions_are_results: bool = False
    #: Workers started with a wrong key, beyond those the history's faults name (auth).
    wrong_key_workers: tuple[str, ...] = ()
    #: Whether the master was killed on purpose; None: read from the faults (liveness).
    master_killed: bool | None = None
    #: How many faults the scenario planned (fault_coverage).
    faults_planned: int | None = None
    #: Each process's exit code, None if the harness had to kill it (clean_exits).
    exit_codes: Mapping[str, int | None] | None = None
    #: Each process's log text (clean_exits looks for tracebacks).
    logs: Mapping[str, str] | None = None
    #: The system's documented exit codes (clean_exits).
    documented: ExitCodes | None = None
    #: The exit code the scenario expects of a process, by name, instead (clean_exits).
    expected_exits: Mapping[str, int] = field(default_factory=dict)
    #: What the scenario states: attempts_bounded, batch_shape, recovery_latency,
    #: no_spurious_expiry, time_limits.
    max_attempts: int | None = None
    #: The most jobs one lease may hold (prefetch_bounded); from the system's settings.
    prefetch: int | None = None
    batch_size: int | None = None
    lease_timeout_s: float | None = None
    recovery_bound_s: float | None = None
    heartbeat_interval_s: float | None = None
    time_limit_slack_s: float | None = None
    #: The events the scenario says the run must reach (reached).
    reached: tuple[Reach, ...] = ()
    #: Where the check counts its evidence (``judge`` gives each check one).
    tally: Tally | None = field(default=None, compare=False)

    def judged(self, count: int, unit: str) -> None:
        """Say how many things the check judged, and what they are ("jobs")."""
        if self.tally is not None:
            self.tally.count, self.tally.unit = count, unit


#: The context of a check told nothing.
NO_CONTEXT = CheckContext()
