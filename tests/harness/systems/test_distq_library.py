"""Each scenario of the library that proves one of distq's promises fails on a distq
broken in exactly that promise (tests/broken_distq.py) and passes on distq.

The passing side is the scenario file itself, which ``pytest scenarios`` runs; here each
is run once more against its broken variant, whose verdict must be ``fail``.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from harness.scenario import ScenarioOutcome, load_scenario, run_scenario
from tests.support import REPO

pytestmark = pytest.mark.processes

SCENARIOS = REPO / "scenarios"

#: scenario file -> the broken variant of distq it must catch.
CAUGHT = {
    "producers/killed_after_flush.toml": "drop-orphans",
    "producers/several_producers.toml": "shared-ids",
    "producers/refusal_reported.toml": "silent-refusal",
    "producers/submit_window_smaller_than_jobs.toml": "window-refuses",
    "producers/journal_restart_under_producer.toml": "journal-forgets-submitted",
    "producers/submitted_job_gets_default_limit.toml": "no-default-limit",
    "values/every_json_type.toml": "bool-as-int",
    "master/journal_torn_results_line.toml": "keep-torn-lines",
    "master/journal_torn_event_line.toml": "keep-torn-lines",
    "worker_death/prefetch_one_kill_holder.toml": "prefetch-ignored",
}


@pytest.mark.parametrize(("path", "variant"), sorted(CAUGHT.items()))
def test_the_scenario_fails_on_a_distq_broken_in_its_promise(
    path: str, variant: str, tmp_path: Path
) -> None:
    scenario = load_scenario(SCENARIOS / path)
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    system = {
        **scenario.system,
        "command": ["python", "-m", "tests.broken_distq"],
        "env": {"DISTQ_BROKEN": variant, "PYTHONPATH": pythonpath},
    }
    broken = msgspec.structs.replace(scenario, system=system)
    outcome = run_scenario(broken, tmp_path / "run")
    assert outcome.result.verdict.status == "fail", outcome.report()


def test_every_scenario_named_here_is_in_the_library() -> None:
    assert all((SCENARIOS / path).is_file() for path in CAUGHT)


#: scenario file -> (the broken variant it must catch, the check that catches it).
CAUGHT_BY_CHECK = {
    "door/forty_workers_at_once.toml": ("thirty-two-workers", "admitted"),
    "door/busy_door_retried.toml": ("busy-gives-up", "admitted"),
    "network/rejoin_leased_ahead.toml": ("lost-keeps-leases", "no_overlap"),
    "master/fresh_restart_away_worker.toml": ("any-master", "no_stale_results"),
}


def _against(path: str, variant: str, run_dir: Path) -> ScenarioOutcome:
    scenario = load_scenario(SCENARIOS / path)
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    system = {
        **scenario.system,
        "command": ["python", "-m", "tests.broken_distq"],
        "env": {"DISTQ_BROKEN": variant, "PYTHONPATH": pythonpath},
    }
    return run_scenario(msgspec.structs.replace(scenario, system=system), run_dir)


@pytest.mark.parametrize(
    ("path", "variant", "check"), [(p, *v) for p, v in sorted(CAUGHT_BY_CHECK.items())]
)
def test_the_door_rejoin_and_restart_promises_fail_by_their_check(
    path: str, variant: str, check: str, tmp_path: Path
) -> None:
    """Broken in its promise, the scenario fails, and by the check written for it. (On
    distq it passes: ``pytest scenarios`` runs the file itself.)"""
    broken = _against(path, variant, tmp_path / "broken")
    verdict = broken.result.verdict
    assert verdict.status == "fail", broken.report()
    assert check in {v.check for v in verdict.violations}, broken.report()
