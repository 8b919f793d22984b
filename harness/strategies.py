"""``harness.strategies``: Hypothesis strategies for scenarios (home: ``harness.gen.strategies``)."""

from __future__ import annotations

from harness.gen.strategies import (
    distq_fault_plans,
    fault_plans,
    job_sets,
    scenarios,
    topologies,
)

__all__ = ["distq_fault_plans", "fault_plans", "job_sets", "scenarios", "topologies"]
