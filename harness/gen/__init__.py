"""Generated scenarios: Hypothesis strategies, and running them as properties.

Layering, from the core outwards:
  strategies  Hypothesis strategies that generate scenarios
  properties  run generated scenarios as properties
  explore     search fault plans against a base scenario, hand back the smallest failure
Each imports only from the layers above it, and from the scenario folder and below.
"""

from harness.gen.properties import PropertyRun, assert_scenario_holds
from harness.gen.strategies import fault_plans, scenarios

__all__ = ["PropertyRun", "assert_scenario_holds", "fault_plans", "scenarios"]
