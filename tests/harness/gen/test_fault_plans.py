"""Fault plans drawn from a base scenario of any kind: only what its system supports,
plans that can finish, and shrinking toward the smallest plan. No processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, find, given, settings

from harness import systems
from harness.contract import fault_action
from harness.gen.strategies import fault_plans
from harness.scenario import Scenario, load_scenario
from tests.support import REPO

BASES = [
    "scenarios/worker_death/kill_holder.toml",
    "scenarios/apps/deque_jobs_kill.toml",
    "scenarios/apps/serve_forever.toml",
    "scenarios/network/partition_outlasts_lease.toml",
]


def base_of(name: str) -> Scenario:
    path = REPO / name
    if not path.exists():
        pytest.skip(f"{name} is not in the library")
    return load_scenario(path)


@pytest.mark.parametrize("name", BASES)
def test_every_plan_is_one_the_bases_system_supports_and_can_finish(name: str) -> None:
    base = base_of(name)
    kind, _config = systems.parse_table(base.system)
    facts = kind.facts

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(fault_plans(base))
    def plan_holds(scenario: Scenario) -> None:
        assert scenario.system == base.system
        assert scenario.expect.checks == base.expect.checks
        assert scenario.expect.expect_violation is None
        assert scenario.cluster.workers <= base.cluster.workers
        deaths = 0
        for fault in scenario.faults:
            assert fault.do in facts.actions
            trigger = fault.when.trigger()
            assert trigger.kind in facts.triggers
            if fault.target == "holder":
                assert trigger.kind in ("job_leased", "job_started")
            if fault_action(fault.do).network:
                assert base.network.proxy
            deaths += fault_action(fault.do).generated == "death"
            assert fault_action(fault.do).suspends == (fault.duration_s is not None)
        assert deaths <= scenario.cluster.workers - 1
        if kind.name == "managers":
            assert scenario.jobs.count == base.jobs.count  # the app decides its own work

    plan_holds()


def test_a_plan_shrinks_to_one_fault_the_fewest_workers_and_jobs_and_the_first_trigger() -> None:
    base = base_of("scenarios/worker_death/kill_holder.toml")

    smallest = find(
        fault_plans(base),
        lambda scenario: any(fault.do == "kill" for fault in scenario.faults),
        settings=settings(max_examples=500, suppress_health_check=list(HealthCheck)),
    )

    [fault] = smallest.faults
    assert (fault.do, fault.target) == ("kill", "holder")
    assert fault.when.trigger().record() == {"job_leased": 0}
    assert (smallest.cluster.workers, smallest.jobs.count) == (2, 1)  # a death spares one


def test_a_base_without_proxies_or_journal_gets_no_network_or_master_faults() -> None:
    base = base_of("scenarios/worker_death/kill_holder.toml")
    assert not base.network.proxy
    seen: set[str] = set()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(fault_plans(base))
    def collect(scenario: Scenario) -> None:
        seen.update(fault.do for fault in scenario.faults)

    collect()
    assert "kill" in seen
    assert not any(fault_action(action).network for action in seen)
    assert not any(fault_action(action).aims == "master" for action in seen)


def test_the_explore_regression_file_loads_and_says_how_to_rerun(tmp_path: Path) -> None:
    from harness.gen.explore import regression_text

    base_path = REPO / "scenarios" / "apps" / "deque_jobs.toml"
    base = load_scenario(base_path)
    out = tmp_path / "regressions" / "found.toml"
    out.parent.mkdir()
    out.write_text(regression_text(base, out, base_path, 7, "job 2 lost"), encoding="utf-8")

    again = load_scenario(out)
    assert again.system["cwd"] == base.system["cwd"]  # relative in the file, same place
    text = out.read_text(encoding="utf-8")
    assert f"python -m harness run {out} --repeat 5" in text
    assert f"python -m harness explore {base_path} --seed 7" in text
    assert "job 2 lost" in again.description
