"""What a checker reports: a violation (a failure, an undecided check, or a measurement).

The first layer of the checks: every family of checkers reports with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Severity", "Violation", "job_ids", "undecided"]

#: ``fail``: the system broke a rule; ``unknown``: the run could not tell; ``note``: a
#: measurement reported in the verdict, never a failure.
Severity = Literal["fail", "unknown", "note"]


@dataclass(frozen=True, slots=True)
class Violation:
    """What a checker found, with the job ids and history lines behind it."""

    check: str
    message: str
    jobs: tuple[int, ...] = ()
    lines: tuple[int, ...] = ()
    severity: Severity = "fail"
    #: Why, from ``contract.LOST_CAUSES`` (a lost job's cause), or "".
    cause: str = ""


def undecided(check: str, message: str) -> list[Violation]:
    """The one violation of a check that could not decide, and why."""
    return [Violation(check, message, severity="unknown")]


def job_ids(jobs: Iterable[int]) -> str:
    """Job ids for a message: sorted, each once."""
    return ", ".join(map(str, sorted(set(jobs))))
