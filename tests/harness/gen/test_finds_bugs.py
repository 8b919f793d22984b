"""The property machinery finds a real bug, shrinks it and hands over a scenario file.

Against a deliberately broken queue (tests/broken_distq.py: workers report a wrong value
for job 7) the property fails, Hypothesis shrinks the plan toward fewer jobs, workers and
faults, and the shrunk example is written as a scenario file. That file fails the same
way under ``pytest`` and passes once pointed at the real queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from harness.gen.properties import assert_scenario_holds
from harness.gen.strategies import scenarios
from harness.scenario import load_scenario, write_regression
from tests.support import REPO

pytestmark = pytest.mark.processes

BROKEN = {"command": ["python", "-m", "tests.broken_distq"], "env": {"DISTQ_BROKEN": "wrong-value"}}


def pytest_file(path: Path, runs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(path),
            "-p",
            "no:cacheprovider",
            "--runs-dir",
            str(runs),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        cwd=REPO,
    )


def test_a_broken_queue_is_caught_shrunk_and_written_as_a_scenario(tmp_path: Path) -> None:
    regressions = tmp_path / "regressions"

    @settings(
        max_examples=20,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(scenarios(max_jobs=10, max_workers=2, max_faults=1, faulty_jobs=False, system=BROKEN))
    def prop(scenario):  # type: ignore[no-untyped-def]
        assert_scenario_holds(scenario, tmp_path / "runs", regressions, "wrong_value")

    with pytest.raises(pytest.fail.Exception) as failure:
        prop()
    path = regressions / "wrong_value.toml"
    assert f"rerun it with: pytest {path}" in str(failure.value)

    shrunk = load_scenario(path)
    assert shrunk.jobs.count == 8, "shrinks to the fewest jobs that include job 7"
    assert shrunk.faults == []
    assert shrunk.cluster.workers == 1
    assert {key: shrunk.system[key] for key in BROKEN} == BROKEN  # and distq's own knobs

    failing = pytest_file(path, tmp_path / "rerun-broken")
    assert failing.returncode == 1, failing.stdout
    assert "correct_values" in failing.stdout
    assert "job 7" in failing.stdout

    fixed = write_regression(
        msgspec.structs.replace(shrunk, system={}), tmp_path / "fixed.toml", "real queue"
    )
    passing = pytest_file(fixed, tmp_path / "rerun-real")
    assert passing.returncode == 0, passing.stdout
