"""Scenario files: the format, loading and validating them, writing them, running one.

Layering, from the core outwards:
  detect   tell a scenario file from other TOML (standard library only)
  limits   what a scenario may ask for: finite numbers, bounded totals, reachable references
  model    the format as typed structures: every table, key, default and bound
  schema   its JSON Schema, for editors
  writer   a scenario back to TOML (a shrunk failure becomes a file)
  loader   a file to a validated Scenario, or one line saying what is wrong and where
  upgrade  a file of an older format rewritten in the current one, comments kept
  running  a scenario as a run spec; running it; its outcome
Each imports only from the layers above it, and from everything below the scenario
layer (core, checks, systems, runtime). The names below load lazily, so the pytest plugin
can import ``detect`` without loading msgspec.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.contract import ActionName
    from harness.scenario.detect import (
        is_scenario_file,
    )
    from harness.scenario.loader import (
        load_scenario,
    )
    from harness.scenario.model import (
        CHECK_NAMES,
        FORMAT_VERSION,
        CheckName,
        ClusterSpec,
        ExpectSpec,
        ExtraJob,
        FaultSpec,
        Flow,
        JobId,
        JobsSpec,
        NetworkSpec,
        NonNegative,
        NonNegativeFloat,
        PositiveFloat,
        Scenario,
        ScenarioError,
        ToxicKind,
        ToxicSpec,
        WhenSpec,
    )
    from harness.scenario.running import (
        ScenarioOutcome,
        run_scenario,
        to_run_spec,
    )
    from harness.scenario.schema import (
        scenario_schema,
    )
    from harness.scenario.writer import (
        dump_scenario,
        write_regression,
    )

__all__ = [
    "CHECK_NAMES",
    "FORMAT_VERSION",
    "ActionName",
    "CheckName",
    "ClusterSpec",
    "ExpectSpec",
    "ExtraJob",
    "FaultSpec",
    "Flow",
    "JobId",
    "JobsSpec",
    "NetworkSpec",
    "NonNegative",
    "NonNegativeFloat",
    "PositiveFloat",
    "Scenario",
    "ScenarioError",
    "ScenarioOutcome",
    "ToxicKind",
    "ToxicSpec",
    "WhenSpec",
    "dump_scenario",
    "is_scenario_file",
    "load_scenario",
    "run_scenario",
    "scenario_schema",
    "to_run_spec",
    "write_regression",
]

_HOMES = {
    "ActionName": "harness.contract",
    "CHECK_NAMES": "harness.scenario.model",
    "CheckName": "harness.scenario.model",
    "ClusterSpec": "harness.scenario.model",
    "ExpectSpec": "harness.scenario.model",
    "ExtraJob": "harness.scenario.model",
    "FORMAT_VERSION": "harness.scenario.model",
    "FaultSpec": "harness.scenario.model",
    "Flow": "harness.scenario.model",
    "JobId": "harness.scenario.model",
    "JobsSpec": "harness.scenario.model",
    "NetworkSpec": "harness.scenario.model",
    "NonNegative": "harness.scenario.model",
    "NonNegativeFloat": "harness.scenario.model",
    "PositiveFloat": "harness.scenario.model",
    "Scenario": "harness.scenario.model",
    "ScenarioError": "harness.scenario.model",
    "ScenarioOutcome": "harness.scenario.running",
    "ToxicKind": "harness.scenario.model",
    "ToxicSpec": "harness.scenario.model",
    "WhenSpec": "harness.scenario.model",
    "dump_scenario": "harness.scenario.writer",
    "is_scenario_file": "harness.scenario.detect",
    "load_scenario": "harness.scenario.loader",
    "run_scenario": "harness.scenario.running",
    "scenario_schema": "harness.scenario.schema",
    "to_run_spec": "harness.scenario.running",
    "write_regression": "harness.scenario.writer",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'harness.scenario' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
