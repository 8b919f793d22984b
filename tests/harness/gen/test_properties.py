"""Properties on real processes: whatever the job set, topology and fault plan, every
dispatched job yields exactly one correct result. A failure is shrunk and written out as
a scenario file, with the command that reruns it; a run where every example was unknown
fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from harness.gen import fault_plans
from harness.gen.properties import PropertyRun
from harness.gen.strategies import scenarios
from harness.scenario import Scenario, load_scenario
from tests.support import REPO


def _property_run(
    name: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> PropertyRun:
    runs = tmp_path_factory.getbasetemp() / f"property-runs-{name}"
    regressions = Path(request.config.getoption("--regressions-dir"))
    return PropertyRun(runs, regressions, name)


@pytest.mark.processes
def test_every_job_yields_exactly_one_correct_result(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    with _property_run("exactly_one_correct_result", tmp_path_factory, request) as prop:

        @given(scenario=scenarios())
        def holds(scenario: Scenario) -> None:
            prop.check(scenario)

        holds()


@pytest.mark.processes
def test_every_job_yields_exactly_one_correct_result_under_network_faults(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    with _property_run("exactly_one_correct_result_network", tmp_path_factory, request) as prop:

        @given(scenario=scenarios(network=True))
        def holds(scenario: Scenario) -> None:
            prop.check(scenario)

        holds()


@pytest.mark.processes
def test_every_job_yields_exactly_one_correct_result_across_master_restarts(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    with _property_run("exactly_one_correct_result_journal", tmp_path_factory, request) as prop:

        @given(scenario=scenarios(journal=True))
        def holds(scenario: Scenario) -> None:
            prop.check(scenario)

        holds()


def test_a_property_run_whose_every_example_was_unknown_fails(tmp_path: Path) -> None:
    unknown = PropertyRun(tmp_path, tmp_path, "p")
    # The failure is raised when the run ends (its __exit__), after the examples it counts.
    with pytest.raises(pytest.fail.Exception, match="none of 3 example"), unknown:  # noqa: PT012
        for _ in range(3):
            unknown.record("unknown")
    with (
        pytest.raises(pytest.fail.Exception, match="none of 0 example"),
        PropertyRun(tmp_path, tmp_path, "p"),
    ):
        pass
    with PropertyRun(tmp_path, tmp_path, "p") as prop:
        prop.record("unknown")
        prop.record("pass")


@pytest.mark.processes
# The fixture spans every example on purpose: it counts the decided ones across the search.
@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scenario=fault_plans(load_scenario(REPO / "scenarios" / "worker_death" / "kill_holder.toml"))
)
def test_searched_fault_plans_against_a_library_scenario_hold(
    scenario: Scenario, scenario_property: PropertyRun
) -> None:
    scenario_property.check(scenario)
