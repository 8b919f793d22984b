"""``python -m harness explore`` end to end, on real processes: the search, the file it
writes, the reruns and its exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.gen.explore import Exploration
from harness.scenario import load_scenario
from tests.support import REPO

pytestmark = pytest.mark.processes

BASE = f"""scenario = 2
name = "a queue whose every value is off by one"
description = "tests/broken_distq.py all-wrong: fails with no fault at all"
seed = 1

[system]
command = ["python", "-m", "tests.broken_distq"]
env = {{ DISTQ_BROKEN = "all-wrong", PYTHONPATH = "{REPO}" }}

[cluster]
workers = 2

[jobs]
count = 4

[expect]
checks = ["exactly_once", "correct_values", "liveness"]
within_s = 20
"""


def explore(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "explore", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_explore_writes_the_smallest_failing_plan_and_reruns_it(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text(BASE, encoding="utf-8")
    out = tmp_path / "found"

    done = explore(base, "--examples", "3", "--reruns", "2", "--out", out, cwd=tmp_path)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "example 1: fail" in done.stdout
    written = out / "base-explored.toml"
    assert f"smallest failing plan: {written} (reproduced 2 of 2 reruns)" in done.stdout
    found = load_scenario(written)
    assert found.faults == []  # it fails with no fault: the smallest plan is none
    assert (found.cluster.workers, found.jobs.count) == (1, 1)
    assert "but accepted value 1" in found.description
    assert (tmp_path / "runs" / "explore-base" / "examples.db").is_dir()


def test_explore_of_an_unreadable_base_is_one_line_and_exit_2(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text("scenario = 2\n[cluster]\nworkers = 0\n", encoding="utf-8")
    done = explore(base, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(str(base))


def test_a_search_that_decided_little_proved_little() -> None:
    search = Exploration()
    assert search.too_little  # nothing ran
    search.verdicts.update({"unknown": 3, "pass": 1})
    assert search.too_little
    search.verdicts.update({"pass": 2})
    assert not search.too_little
    assert load_scenario(REPO / "scenarios" / "worker_death" / "kill_holder.toml")
