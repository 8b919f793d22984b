"""The seam is real: a manager/worker system that is not distq (tests/toy_queue.py, plugged
in by tests/toy_system.py) runs a scenario with a kill fault through the same harness and
passes exactly_once; its broken copy, which forgets a dead worker's job, fails it."""

from __future__ import annotations

import signal
import socket
import struct
import sys
from pathlib import Path

import psutil
import pytest

from harness.contract import EVENTS_ENV, PROCESS_ENV
from harness.runtime.cluster import Cluster
from harness.scenario import load_scenario, run_scenario
from tests.toy_system import ToyConfig, ToySystem

pytestmark = pytest.mark.processes

SCENARIO = """\
scenario = 1
name = "toy: a holder killed mid-job"
description = "the toy queue puts a killed worker's job back"
seed = 3

[system]
kind = "tests.toy_system:KIND"
{extra}

[cluster]
workers = 2

[jobs]
count = 12
delay_s = 0.2

[[faults]]
when = {{ job_leased = 4 }}
do = "kill"
target = "holder"

[expect]
checks = ["exactly_once", "correct_values", "liveness", "fault_coverage", "clean_exits"]
within_s = {within_s}
"""


def write(tmp_path: Path, extra: str = "", within_s: float = 20) -> Path:
    path = tmp_path / "toy.toml"
    path.write_text(SCENARIO.format(extra=extra, within_s=within_s))
    return path


def test_the_toy_queue_survives_a_killed_holder(tmp_path: Path) -> None:
    outcome = run_scenario(load_scenario(write(tmp_path)), tmp_path / "run")
    report = outcome.report()
    assert outcome.status == "pass", report
    history = outcome.result.history
    [kill] = history.faults()
    assert kill.get("action") == "kill"
    assert kill.get("expect") == "holder"
    assert outcome.result.exit_codes[str(kill.get("target"))] == -9
    assert len(history.select("result_accepted")) == 12
    assert any(e.get("jobs") for e in history.select("worker_lost")), "the job went back"


def test_python_in_a_systems_argv_is_the_running_interpreter_and_it_knows_its_name(
    tmp_path: Path,
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"task": "square", "args": [3]}\n')
    with Cluster(tmp_path / "run", system=ToySystem(ToyConfig()), jobs_path=jobs) as cluster:
        assert cluster.master is not None
        assert cluster.master.argv[:3] == [sys.executable, "-m", "tests.toy_queue"]
        # Code running inside a process finds its name and event log in its environment.
        env = psutil.Process(cluster.master.pid).environ()
        assert env[PROCESS_ENV] == "master"
        assert env[EVENTS_ENV] == str(cluster.events_path("master"))
        cluster.add_worker()
        assert cluster.wait_master(30) == 0


def test_a_system_may_run_a_broker_first_and_leave_its_exit_to_the_harness(
    tmp_path: Path,
) -> None:
    outcome = run_scenario(load_scenario(write(tmp_path, "broker = true")), tmp_path / "run")
    assert outcome.status == "pass", outcome.report()  # clean_exits judges master and workers
    # It ran until the teardown stopped it; that is not the system's exit to document.
    assert outcome.result.exit_codes["broker"] == -signal.SIGTERM
    assert (tmp_path / "run" / "broker.log").exists()


def test_the_broken_toy_queue_loses_the_killed_holders_job(tmp_path: Path) -> None:
    # It never finishes (a job is gone): a short bound, since liveness waits it out.
    broken = write(tmp_path, "forget_lost = true", within_s=8)
    outcome = run_scenario(load_scenario(broken), tmp_path / "run")
    assert outcome.status == "fail", outcome.report()
    lost = [v for v in outcome.result.verdict.violations if v.check == "exactly_once"]
    assert lost, outcome.report()
    assert "lost: no terminal result" in lost[0].message, outcome.report()


def test_a_worker_whose_connection_ends_in_a_reset_is_lost_and_its_job_goes_back(
    tmp_path: Path,
) -> None:
    # A worker SIGKILLed with the master's reply still unread in its socket leaves a reset,
    # not a close (what a kill right after a lease does): its job must go back all the same.
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"task": "square", "args": [3]}\n')
    with Cluster(tmp_path / "run", system=ToySystem(ToyConfig()), jobs_path=jobs) as cluster:
        assert cluster.address is not None
        host, _, port = cluster.address.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=30) as doomed:
            doomed.sendall(b'{"op": "hello", "name": "doomed"}\n{"op": "lease"}\n')
            cluster.master_events.wait_for(lambda e: e["ev"] == "leased", 30, "job 0 leased")
            doomed.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        cluster.add_worker()
        assert cluster.wait_master(30) == 0
        assert "Traceback" not in cluster.procs["master"].log_path.read_text()
