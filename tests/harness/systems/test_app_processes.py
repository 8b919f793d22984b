"""The apps of examples/apps, run for real, with their scenario misread on purpose: a
run that saw nothing it could judge says so and is never green."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario import ScenarioOutcome, load_scenario, run_scenario
from tests.support import REPO

pytestmark = pytest.mark.processes

APPS = REPO / "scenarios" / "apps"


def run_variant(tmp_path: Path, name: str, old: str, new: str) -> ScenarioOutcome:
    """``scenarios/apps/NAME`` with ``old`` replaced by ``new``, run once."""
    text = (APPS / name).read_text(encoding="utf-8")
    assert old in text
    path = APPS / f".variant-{tmp_path.name}.toml"  # beside the original: cwd is relative
    path.write_text(text.replace(old, new), encoding="utf-8")
    try:
        scenario = load_scenario(path)
    finally:
        path.unlink()
    return run_scenario(scenario, tmp_path / "run")


def test_a_results_typeid_the_app_never_created_is_unknown_naming_what_it_did(
    tmp_path: Path,
) -> None:
    outcome = run_variant(
        tmp_path, "deque_jobs.toml", 'results = "get_results"', 'results = "get_result"'
    )

    verdict = outcome.result.verdict
    assert outcome.status == "unknown", outcome.report()
    assert verdict.violations  # every job looks lost, and none of it counts
    assert "results = 'get_result', but the app never created" in verdict.unknowns[0].message
    assert "'get_jobs', 'get_results'" in verdict.unknowns[0].message


def test_a_run_that_saw_no_hand_out_fails_on_its_unmatched_results_saying_why(
    tmp_path: Path,
) -> None:
    # The app hands its jobs out with popleft: a scenario that says pop sees none of them.
    outcome = run_variant(tmp_path, "deque_jobs.toml", 'take = "popleft"', 'take = "pop"')

    verdict = outcome.result.verdict
    assert outcome.status == "fail", outcome.report()
    assert ("exactly_once", 0, "jobs") in verdict.evidence
    assert len(verdict.violations) == 24  # each of 12 results, as put and as taken
    assert "no task was seen handed out at all" in verdict.violations[0].message
