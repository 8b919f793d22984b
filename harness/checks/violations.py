"""What a checker reports: a violation (a failure, an undecided check, or a measurement).

Its own module so that every family of checkers (``checks``, ``semantics``) can use it and
``checks`` can register them all without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Severity", "Violation"]

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
