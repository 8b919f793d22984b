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

from tests.support import wait_until

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


ENGINE_RUN = (
    HEADER.replace("scenario = 1", "scenario = 2")
    + """
[cluster]
workers = 1

[jobs]
task = "sleep"
args = [30]
count = 2

[system]
kind = "engine"
engine = "{engine}"
collect_s = 100

[expect]
checks = ["exactly_once"]
within_s = 120
"""
)


def _events(run_dir: Path, name: str) -> list[dict[str, Any]]:
    found = []
    for path in run_dir.glob(f"*/{name}.events.jsonl"):
        with suppress(OSError, ValueError):
            found += [json.loads(line) for line in path.read_text().splitlines() if line]
    return found


def _marked(mark: str, inside: Path | None = None) -> list[psutil.Process]:
    """The processes carrying the test's mark, and those working in ``inside`` (a broker
    overwrites its environment, mark included, for its process title: its working
    directory, the run directory, still says whose it is)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        with suppress(psutil.Error):
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            in_run = inside is not None and Path(proc.cwd()).is_relative_to(inside)
            if in_run or proc.environ().get(LEAK_ENV) == mark:
                found.append(proc)
    return found


def _paused(runs: Path) -> bool:
    return any(e.get("action") == "pause" for e in _events(runs, "harness"))


def _partitioned(runs: Path) -> bool:
    return any(e.get("action") == "partition" for e in _events(runs, "harness"))


def _master_ready(runs: Path) -> bool:
    return any(e.get("ev") == "master_ready" for e in _events(runs, "master"))


def _running(runs: Path) -> bool:
    return any(e.get("ev") == "started" for e in _events(runs, "worker-1"))


def _kill_harness_then_find_leftovers(
    tmp_path: Path, text: str, moment: Callable[[Path], bool]
) -> list[str]:
    """Run ``text``, SIGKILL the harness at ``moment``; what is left 5 s later, described
    (and killed, so the test leaks nothing either way)."""
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
        assert len(_marked(os.environ[LEAK_ENV], runs)) > 1  # the run's processes are up
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    deadline = time.monotonic() + 5.0
    left = _marked(os.environ[LEAK_ENV], runs)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _marked(os.environ[LEAK_ENV], runs)
    described = []
    for proc in left:
        with suppress(psutil.Error):
            described.append(f"{proc.pid} {proc.status()} {' '.join(proc.cmdline())[:100]}")
            proc.kill()
    return described


@pytest.mark.parametrize(
    ("text", "moment"),
    [(PAUSE, _paused), (PARTITION, _partitioned), (NO_WORKERS_YET, _master_ready)],
    ids=["during-a-pause", "during-a-partition", "before-workers-join"],
)
def test_sigkill_of_the_harness_leaves_no_process(
    tmp_path: Path, text: str, moment: Callable[[Path], bool]
) -> None:
    described = _kill_harness_then_find_leftovers(tmp_path, text, moment)
    assert not described, "left behind after SIGKILL of the harness:\n" + "\n".join(described)


@pytest.mark.engines
@pytest.mark.parametrize("engine", ["celery", "rq", "dramatiq", "huey"])
def test_sigkill_of_the_harness_leaves_no_broker_and_no_worker(tmp_path: Path, engine: str) -> None:
    """The broker (valkey-server erases its environment, the tag with it) and the engine's
    worker tree go too: the reaper sweeps the sessions the cluster spawned."""
    text = ENGINE_RUN.replace("{engine}", engine)
    described = _kill_harness_then_find_leftovers(tmp_path, text, _running)
    assert not described, "left behind after SIGKILL of the harness:\n" + "\n".join(described)


@pytest.mark.engines
def test_sigkill_of_the_harness_running_a_users_app_leaves_nothing(tmp_path: Path) -> None:
    """The same with a team's own Celery app (examples/engine_apps), loaded by the wrapper."""
    app = Path(__file__).resolve().parents[3] / "examples" / "engine_apps" / "celery_app"
    text = (
        ENGINE_RUN.replace("{engine}", "celery")
        .replace('task = "sleep"\nargs = [30]', 'args = ["{n}", 1, 30]')
        .replace(
            "collect_s = 100",
            f'collect_s = 100\napp = "proj.celery:app"\ntask = "proj.tasks.add"\ncwd = "{app}"',
        )
    )
    described = _kill_harness_then_find_leftovers(tmp_path, text, _running)
    assert not described, "left behind after SIGKILL of the harness:\n" + "\n".join(described)


def test_the_reaper_sweeps_a_watched_session_that_carries_no_tag() -> None:
    """A session leader and its child with an empty environment (nothing to find them by
    but their session): when the harness's end of the pipe closes without ``done``, both go.
    Another session, not watched, is left alone."""
    from harness.runtime.reaper import Reaper

    reaper = Reaper("DISTQ_HARNESS_TAG", "no-process-has-this-tag")
    argv = ["/bin/sh", "-c", "/bin/sleep 60 & exec /bin/sleep 60"]
    watched = subprocess.Popen(argv, env={}, start_new_session=True)
    other = subprocess.Popen(["/bin/sleep", "60"], start_new_session=True)
    members: list[psutil.Process] = []
    try:
        reaper.watch(watched.pid)
        leader = psutil.Process(watched.pid)
        wait_until(lambda: len(leader.children()) == 1, "the session's second process")
        members = [leader, *leader.children()]
        os.close(reaper._write_end)  # the harness died: the pipe closes, no "done" said
        reaper._write_end = -1
        wait_until(lambda: watched.poll() is not None, "the session leader's death")
        wait_until(lambda: all(_dead(p) for p in members), "the session member's death")
        assert watched.returncode == -signal.SIGKILL
        assert other.poll() is None
    finally:
        for member in members:
            with suppress(psutil.Error):
                member.kill()
        for proc in (watched, other):
            proc.kill()
            proc.wait()
        reaper._proc.wait(timeout=20)


def _dead(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
