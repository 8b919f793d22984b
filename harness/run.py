"""``harness.run``: one run of a system under faults (its home is ``harness.runtime.run``)."""

from __future__ import annotations

from harness.runtime.run import RunResult, RunSpec, run

__all__ = ["RunResult", "RunSpec", "run"]
