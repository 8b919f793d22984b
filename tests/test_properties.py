"""Properties on real processes: whatever the job set, topology and fault plan, every
dispatched job yields exactly one correct result. A failure is shrunk and written out as
a scenario file, with the command that reruns it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given

from harness.properties import assert_scenario_holds
from harness.scenario import Scenario
from harness.strategies import scenarios

pytestmark = pytest.mark.processes


@given(scenario=scenarios())
def test_every_job_yields_exactly_one_correct_result(
    scenario: Scenario, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    runs = tmp_path_factory.getbasetemp() / "property-runs"
    regressions = Path(request.config.getoption("--regressions-dir"))
    assert_scenario_holds(scenario, runs, regressions, "exactly_one_correct_result")


@given(scenario=scenarios(network=True))
def test_every_job_yields_exactly_one_correct_result_under_network_faults(
    scenario: Scenario, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    runs = tmp_path_factory.getbasetemp() / "property-runs-network"
    regressions = Path(request.config.getoption("--regressions-dir"))
    assert_scenario_holds(scenario, runs, regressions, "exactly_one_correct_result_network")
