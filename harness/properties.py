"""Property checks for Hypothesis tests: run a generated scenario, and when it fails,
write it as a scenario file and fail with the one command that reruns it.

Hypothesis replays the shrunk example last, so the file written under a fixed label
ends up holding the minimal failing scenario.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import note

from harness.scenario import Scenario, run_scenario, write_regression

__all__ = ["assert_scenario_holds"]

_runs = itertools.count()


def assert_scenario_holds(
    scenario: Scenario, runs_dir: Path, regressions_dir: Path, label: str
) -> None:
    """Run ``scenario``; on a ``fail`` verdict write ``regressions_dir/label.toml`` and fail.

    An ``unknown`` verdict is not a failure of the system under test (a fault missed its
    window), so it does not fail the property."""
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
