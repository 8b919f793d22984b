"""The scenario strategies: every example is a valid, finishable scenario file."""

from __future__ import annotations

import tomllib
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.gen.strategies import DEATHS, scenarios
from harness.scenario import Scenario, dump_scenario, to_run_spec


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_a_generated_scenario_round_trips_through_a_file(scenario: Scenario) -> None:
    text = dump_scenario(scenario, "a comment\nover two lines")
    assert msgspec.convert(tomllib.loads(text), Scenario) == scenario


@settings(max_examples=200, deadline=None)
@given(scenarios(network=True))
def test_a_generated_network_scenario_round_trips_through_a_file(scenario: Scenario) -> None:
    assert scenario.network.proxy
    text = dump_scenario(scenario)
    assert msgspec.convert(tomllib.loads(text), Scenario) == scenario


@settings(max_examples=300, deadline=None)
@given(st.booleans().flatmap(lambda network: scenarios(network=network)))
def test_a_generated_plan_can_always_finish(scenario: Scenario) -> None:
    total_jobs = scenario.jobs.count + sum(extra.count for extra in scenario.jobs.extra)
    deaths = [
        fault
        for fault in scenario.faults
        if fault.do in DEATHS or (fault.toxic is not None and fault.toxic.kind == "reset")
    ]
    assert len(deaths) <= scenario.cluster.workers - 1, "the last worker is never killed for good"
    for fault in scenario.faults:
        job = fault.when.trigger().job
        assert job is None or job < total_jobs, "job triggers name a job that exists"
        if fault.do == "pause":
            assert fault.duration_s is not None, "every pause resumes"
    if scenario.cluster.batch_size is not None:
        assert {"batch_barrier", "batch_shape"} <= set(scenario.expect.checks)
    assert {"exactly_once", "correct_values", "one_terminal", "liveness"} <= set(
        scenario.expect.checks
    )


@settings(max_examples=200, deadline=None)
@given(scenarios(journal=True, max_faults=6))
def test_journal_plans_may_restart_the_master_and_round_trip(scenario: Scenario) -> None:
    assert scenario.system["journal"]
    assert scenario.system["worker_reconnect_s"] > 0
    assert all(fault.do != "restart" for fault in scenario.faults)
    assert msgspec.convert(tomllib.loads(dump_scenario(scenario)), Scenario) == scenario


def test_journal_plans_restart_the_master_and_others_never_do() -> None:
    from hypothesis import find

    has_restart = find(
        scenarios(journal=True),
        lambda s: any(fault.do == "restart_master" for fault in s.faults),
        settings=settings(database=None, max_examples=500),
    )
    assert has_restart.system["journal"]

    @settings(max_examples=200, deadline=None)
    @given(scenarios())
    def never(scenario: Scenario) -> None:
        assert not scenario.system.get("journal")
        assert all(fault.do != "restart_master" for fault in scenario.faults)

    never()


def test_shrinking_heads_toward_fewer_faults_jobs_and_workers() -> None:
    from hypothesis import find

    smallest = find(scenarios(), lambda s: True, settings=settings(database=None, max_examples=50))
    assert smallest.faults == []
    assert smallest.jobs.count == 1
    assert smallest.jobs.extra == []
    assert smallest.cluster.workers == 1


@given(st.data())
def test_deaths_never_exceed_workers_minus_one_even_with_many_faults(data: st.DataObject) -> None:
    scenario = data.draw(scenarios(max_faults=8, max_workers=2))
    assert sum(fault.do in DEATHS for fault in scenario.faults) <= 1


@settings(max_examples=100, deadline=None)
@given(scenario=st.booleans().flatmap(lambda network: scenarios(network=network)))
def test_every_generated_scenario_translates_into_a_run(
    scenario: Scenario, tmp_path_factory: Any
) -> None:
    spec = to_run_spec(scenario, tmp_path_factory.mktemp("spec"))
    assert len(spec.faults) == len(scenario.faults)
    for fault, planned in zip(spec.faults, scenario.faults, strict=True):
        assert fault.do == planned.do
        assert (fault.toxic is None) == (planned.toxic is None)
    assert (spec.proxy_seed is not None) == scenario.network.proxy
