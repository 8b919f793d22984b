"""Property checks for Hypothesis tests: run a generated scenario, and when it fails,
write it as a scenario file and fail with the one command that reruns it.

Hypothesis replays the shrunk example last, so the file written under a fixed label
ends up holding the minimal failing scenario. A property run whose every example was
``unknown`` proved nothing, and fails (``PropertyRun``).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import TracebackType

import pytest
from hypothesis import note

from harness.scenario import Scenario, run_scenario, write_regression

__all__ = ["PropertyRun", "assert_scenario_holds"]

_runs = itertools.count()


def assert_scenario_holds(
    scenario: Scenario, runs_dir: Path, regressions_dir: Path, label: str
) -> str:
    """Run ``scenario``; on a ``fail`` verdict write ``regressions_dir/label.toml`` and fail.

    An ``unknown`` verdict is not a failure of the system under test (a fault missed its
    window), so it does not fail the example; returns the verdict's status."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_dir = runs_dir / f"run-{next(_runs)}"
    outcome = run_scenario(scenario, run_dir)
    note(f"{outcome.status} in {outcome.result.elapsed_s:.1f} s, run directory {run_dir}")
    if outcome.result.verdict.status == "fail":
        why = "; ".join(v.message for v in outcome.result.verdict.violations)
        path = write_regression(scenario, regressions_dir / f"{label}.toml", why)
        pytest.fail(
            f"{outcome.result.report()}\n\nshrunk scenario written to {path}\nrerun it with: pytest {path}",
            pytrace=False,
        )
    return outcome.result.verdict.status


class PropertyRun:
    """One Hypothesis run of a scenario property, as a context manager around it.

    ``check(scenario)`` runs one example; leaving the block without an error fails the
    test when no example was decided (every one ``unknown``, or none ran).
    """

    def __init__(self, runs_dir: Path, regressions_dir: Path, label: str) -> None:
        self.runs_dir = runs_dir
        self.regressions_dir = regressions_dir
        self.label = label
        self.examples = 0
        self.decided = 0

    def check(self, scenario: Scenario) -> None:
        self.record(
            assert_scenario_holds(scenario, self.runs_dir, self.regressions_dir, self.label)
        )

    def record(self, status: str) -> None:
        self.examples += 1
        self.decided += status != "unknown"

    def __enter__(self) -> PropertyRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self.decided == 0:
            pytest.fail(
                f"{self.label}: none of {self.examples} example(s) was decided (every verdict "
                "unknown): the property proved nothing",
                pytrace=False,
            )
