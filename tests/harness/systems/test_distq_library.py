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


#: scenario file -> (the broken variant it must catch, the check that catches it). On
#: distq each passes: ``pytest scenarios`` runs the file itself.
CAUGHT_BY_CHECK = {
    "door/forty_workers_at_once.toml": ("thirty-two-workers", "admitted"),
    "door/busy_door_retried.toml": ("busy-gives-up", "admitted"),
    "network/rejoin_leased_ahead.toml": ("lost-keeps-leases", "no_overlap"),
    "master/fresh_restart_away_worker.toml": ("any-master", "no_stale_results"),
    "outputs/disk_full_results.toml": ("forget-unwritten", "outputs_kept"),
    "outputs/truncate_results_half.toml": ("trust-checkpoint", "exactly_once"),
    "outputs/truncate_events_at_line.toml": ("trust-checkpoint", "exactly_once"),
    "producers/abandons_as_completed.toml": ("drop-abandoned", "acknowledged"),
    "producers/paused_mid_window.toml": ("expire-silent-sessions", "clean_exits"),
}
#: A broken variant that leaves the run hanging (its producer cannot close submissions)
#: fails on liveness too: a shorter bound keeps the output and producer tests short.
BROKEN_WITHIN_S = 6.0
BOUNDED = ("outputs/", "producers/")


def _against(path: str, variant: str, run_dir: Path) -> ScenarioOutcome:
    """The library's scenario at ``path`` on distq broken as ``variant`` (its producer's
    program on the broken client too)."""
    scenario = load_scenario(SCENARIOS / path)
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    system = {
        **scenario.system,
        "command": ["python", "-m", "tests.broken_distq"],
        "env": {"DISTQ_BROKEN": variant, "PYTHONPATH": pythonpath},
    }
    producer = scenario.system.get("producer")
    if producer:
        system["producer"] = [producer[0], "-m", "tests.broken_distq", "script", *producer[1:]]
    expect = scenario.expect
    if path.startswith(BOUNDED):
        expect = msgspec.structs.replace(expect, within_s=min(expect.within_s, BROKEN_WITHIN_S))
    return run_scenario(msgspec.structs.replace(scenario, system=system, expect=expect), run_dir)


@pytest.mark.parametrize(
    ("path", "variant", "check"), [(p, *v) for p, v in sorted(CAUGHT_BY_CHECK.items())]
)
def test_each_later_promise_fails_by_its_check_on_its_broken_variant(
    path: str, variant: str, check: str, tmp_path: Path
) -> None:
    """Broken in its promise, the scenario fails, and by the check written for it."""
    if path.startswith("outputs/disk_full"):
        from harness.runtime.disks import disks_unavailable

        if (missing := disks_unavailable()) is not None:
            pytest.skip(missing)
    broken = _against(path, variant, tmp_path / "broken")
    verdict = broken.result.verdict
    assert verdict.status == "fail", broken.report()
    assert check in {v.check for v in verdict.violations}, broken.report()
