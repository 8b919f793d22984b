"""No process outlives the harness, however it dies: ``python -m harness run`` SIGKILLed
at several moments of a run leaves nothing behind within a few seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil
import pytest

LEAK_ENV = "DISTQ_TEST_MARK"  # set per test by the autouse fixture in conftest.py

pytestmark = pytest.mark.processes

BOUND_S = 60.0

HEADER = """\
scenario = 1
name = "{name}"
description = "the harness is killed in the middle of this"
seed = 1
"""

PAUSE = (
    HEADER
    + """
[cluster]
workers = 1
lease_timeout_s = 30

[jobs]
task = "sleep"
args = [0.5]
count = 4

[[faults]]
when = { job_started = 0 }
do = "pause"
target = "holder"
duration_s = 60

[expect]
within_s = 120
"""
)

PARTITION = (
    HEADER
    + """
[cluster]
workers = 1
lease_timeout_s = 30

[jobs]
task = "sleep"
args = [0.5]
count = 4

[network]
proxy = true

[[faults]]
when = { job_started = 0 }
do = "partition"
target = "holder"
duration_s = 60

[expect]
within_s = 120
"""
)

NO_WORKERS_YET = (
    HEADER
    + """
[cluster]
workers = 0

[jobs]
count = 4

[[faults]]
when = { after_s = 60 }
do = "add_worker"

[expect]
within_s = 120
"""
)


def _events(run_dir: Path, name: str) -> list[dict[str, Any]]:
    found = []
    for path in run_dir.glob(f"*/{name}.events.jsonl"):
        with suppress(OSError, ValueError):
            found += [json.loads(line) for line in path.read_text().splitlines() if line]
    return found


def _marked(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        with suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get(LEAK_ENV) == mark:
                found.append(proc)
    return found


def _paused(runs: Path) -> bool:
    return any(e.get("action") == "pause" for e in _events(runs, "harness"))


def _partitioned(runs: Path) -> bool:
    return any(e.get("action") == "partition" for e in _events(runs, "harness"))


def _master_ready(runs: Path) -> bool:
    return any(e.get("ev") == "master_ready" for e in _events(runs, "master"))


@pytest.mark.parametrize(
    ("text", "moment"),
    [(PAUSE, _paused), (PARTITION, _partitioned), (NO_WORKERS_YET, _master_ready)],
    ids=["during-a-pause", "during-a-partition", "before-workers-join"],
)
def test_sigkill_of_the_harness_leaves_no_process(
    tmp_path: Path, text: str, moment: Callable[[Path], bool]
) -> None:
    scenario = tmp_path / "killed.toml"
    scenario.write_text(text.replace("{name}", "killed"))
    runs = tmp_path / "runs"
    harness = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(scenario), "--runs-dir", str(runs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + BOUND_S
        while not moment(runs):
            assert harness.poll() is None, "the run ended before the moment to kill it"
            assert time.monotonic() < deadline, "the moment to kill the harness never came"
            time.sleep(0.05)
        assert len(_marked(os.environ[LEAK_ENV])) > 1  # the run's processes are up
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    deadline = time.monotonic() + 5.0
    left = _marked(os.environ[LEAK_ENV])
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _marked(os.environ[LEAK_ENV])
    described = []
    for proc in left:
        with suppress(psutil.Error):
            described.append(f"{proc.pid} {proc.status()} {' '.join(proc.cmdline())[:100]}")
            proc.kill()
    assert not described, "left behind after SIGKILL of the harness:\n" + "\n".join(described)
