"""The tutorial apps (examples/tutorial) run unmodified behind the wire relays of
``kind = "managers"``: what the history shows, and the cause each lost job is given."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.checks import CheckContext, Violation, correct_values, exactly_once
from harness.history import History
from harness.runtime.cluster import kill_tree
from harness.scenario import ScenarioError, ScenarioOutcome, load_scenario, run_scenario
from harness.systems.base import MASTER, WORKER, ProcessSpec, RunSetup
from harness.systems.managers import ManagersConfig, ManagersSystem
from harness.wire.relay import FRAMES_LOG
from tests.support import REPO, wait_until

pytestmark = pytest.mark.processes

REPO = REPO
TUTORIAL = REPO / "examples" / "tutorial"
AUTHKEY = b"tutorial-key"

TASK_APP = {
    "cwd": str(TUTORIAL),
    "tasks": "get_task_queue",
    "results": "get_result_queue",
    "expected": "examples.tutorial.tasks:square",
}
BATCH_APP = {
    "cwd": str(TUTORIAL),
    "master": ["{python}", "batch_master.py", "{port}", "{authkey}", "3", "3"],
    "worker": ["{python}", "batch_worker.py", "127.0.0.1", "{port}", "{authkey}"],
    "tasks": "get_dispatch_queue",
    "results": "get_result_queue",
    "job_key": "job_id",
    "result_key": "job_id",
    "batch_size": 10,
    "expected": "examples.tutorial.tasks:square",
}


@dataclass
class AppRun:
    """A tutorial app under the relays: spawn, watch the history as it is written, judge."""

    system: ManagersSystem
    setup: RunSetup
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, role: str, authkey: bytes = AUTHKEY) -> subprocess.Popen[bytes]:
        addresses = {} if role == MASTER else {MASTER: f"127.0.0.1:{self.system.app_port}"}
        spec = ProcessSpec(role, name, self.setup.run_dir / f"{name}.x", addresses, authkey)
        launch = self.system.launch(spec, self.setup)
        with open(self.setup.run_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                launch.argv,
                cwd=launch.cwd,
                env={**os.environ, **launch.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        if role == MASTER:
            self.wait(lambda: self.system.ready(_Proc(name, role, proc.pid), []) is not None)
        return proc

    def events(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.setup.run_dir.glob("*.events.jsonl")):
            lines = path.read_text(encoding="utf-8").splitlines()
            found += [json.loads(line) for line in lines if line.strip()]
        return found

    def seen(self, ev: str, **fields: Any) -> bool:
        return any(
            e["ev"] == ev and all(e.get(k) == v for k, v in fields.items()) for e in self.events()
        )

    @staticmethod
    def wait(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
        wait_until(condition, str(condition), timeout_s)

    def finish(self, timeout_s: float = 60.0) -> History:
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            proc.wait(max(0.1, deadline - time.monotonic()))
        # Every process is gone; a relay still reading a closing connection has frames
        # (and events) to write yet: wait until each relay has closed all of its own.
        recorder = self.system.recorder
        relays = [] if recorder is None else list(recorder.relays.values())
        self.wait(lambda: all(relay.open_connections == 0 for relay in relays), timeout_s)
        return History(self.events())

    def log(self, name: str) -> str:
        return (self.setup.run_dir / f"{name}.log").read_text(errors="replace")


@dataclass
class _Proc:
    name: str
    role: str
    pid: int
    events_path: Path = Path()
    log_path: Path = Path()

    def alive(self) -> bool:
        return True


@contextmanager
def app(tmp_path: Path, **config: Any) -> Iterator[AppRun]:
    system = ManagersSystem(ManagersConfig(**config))
    setup = RunSetup(run_dir=tmp_path, jobs_path=None, authkey=AUTHKEY)
    system.observers(setup, lambda ev, **fields: None)
    run = AppRun(system, setup)
    try:
        yield run
    finally:
        for proc in run.procs.values():
            if proc.poll() is None:
                kill_tree(proc.pid)
            proc.wait(10)
        system.close()
    assert system.recorder is not None
    assert not system.recorder.callback_errors


def task_app(pause_s: float, count: int, get_timeout_s: float, work_s: float) -> dict[str, Any]:
    master = ["{python}", "task_master.py", "{port}", "{authkey}", str(count), str(pause_s), "3"]
    worker = ["{python}", "task_worker.py", "127.0.0.1", "{port}", "{authkey}"]
    return {
        **TASK_APP,
        "master": master,
        "worker": [*worker, str(get_timeout_s), str(work_s)],
    }


def test_a_clean_task_app_run_has_one_correct_result_per_job(tmp_path: Path) -> None:
    with app(tmp_path, **task_app(0.0, 8, 1.0, 0.0)) as run:
        run.spawn("master", MASTER)
        run.spawn("worker-1", WORKER)
        run.spawn("worker-2", WORKER)
        history = run.finish()
        expected = run.system.expected

    assert len(history.submitted()) == 8
    assert exactly_once(history) == []
    assert correct_values(history, CheckContext(expected=expected)) == []
    assert history.select("master_stopped")
    assert len(history.select("result_accepted")) == 8


def test_a_hostile_pickle_in_a_task_is_decoded_as_a_record_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pids-that-ran-the-pickle"
    with app(
        tmp_path,
        **{
            **TASK_APP,
            "cwd": str(REPO / "tests" / "apps"),
            "master": ["{python}", "hostile_master.py", "{port}", "{authkey}", str(marker)],
            "worker": ["{python}", "-c", "pass"],
        },
    ) as run:
        run.spawn("master", MASTER)
        history = run.finish()

    call = {"$call": "posix.system", "args": [f"echo $PPID >> {marker}"]}
    assert [e.get("args") for e in history.select("job_submitted")] == [[call]]
    lines = (tmp_path / FRAMES_LOG).read_text(encoding="utf-8").splitlines()
    requests = [json.loads(line).get("value") for line in lines]
    assert [r[2] for r in requests if isinstance(r, list) and r[1:2] == ["put"]] == [[call]]
    ran = marker.read_text().split()  # the app's own server unpickled it: the payload is live
    assert ran
    assert str(os.getpid()) not in ran


def test_bad_handshakes_go_through_a_relay_and_are_seen_refused(tmp_path: Path) -> None:
    with app(tmp_path, **task_app(0.5, 2, 1.0, 0.0)) as run:
        run.spawn("master", MASTER)
        address = f"127.0.0.1:{run.system.app_port}"
        run.system.attack_handshake(address, 2, random.Random(0))
        run.spawn("worker-1", WORKER)
        history = run.finish()

    rejected = history.select("auth_rejected")
    assert [e.get("route") for e in rejected] == ["handshake-attack"] * 2
    assert exactly_once(history) == []


def test_an_xmlrpclib_app_is_decoded_too(tmp_path: Path) -> None:
    with app(
        tmp_path,
        **{
            **TASK_APP,
            "cwd": str(REPO / "tests" / "apps"),
            "master": ["{python}", "xmlrpc_master.py", "{port}", "{authkey}"],
            "worker": ["{python}", "-c", "pass"],
            "job_key": "path",
        },
    ) as run:
        run.spawn("master", MASTER)
        history = run.finish()

    paths = [e.get("args") for e in history.select("job_submitted")]
    assert paths == [[{"path": f"/data/{name}.csv"}] for name in "abc"]
    assert [e.job for e in history.select("leased")] == [0, 1, 2]
    assert history.select("master_stopped")


def outcome_of(name: str, tmp_path: Path) -> ScenarioOutcome:
    return run_scenario(load_scenario(REPO / "scenarios" / "tutorial" / name), tmp_path)


def lost_jobs(outcome: ScenarioOutcome) -> list[Violation]:
    return [v for v in outcome.result.verdict.violations if v.check == "exactly_once"]


def test_a_worker_killed_after_get_loses_its_job_and_the_cause_names_its_death(
    tmp_path: Path,
) -> None:
    outcome = outcome_of("kill_after_get.toml", tmp_path)

    assert outcome.status == "pass", outcome.report()
    lost = lost_jobs(outcome)
    assert [v.jobs for v in lost] == [(1,)]
    assert "its holder worker-1 died holding it (fault kill" in lost[0].message


def test_a_worker_killed_while_blocked_in_get_makes_the_next_job_vanish(tmp_path: Path) -> None:
    outcome = outcome_of("kill_blocked_in_get.toml", tmp_path)

    assert outcome.status == "pass", outcome.report()
    lost = lost_jobs(outcome)
    # The job put right after the kill (job 2, or a later one when the second worker took
    # more than a put's interval to start and the first ran job 2): handed to the dead get.
    assert len(lost) == 1, outcome.report()
    [job] = lost[0].jobs
    assert "handed to a get whose caller worker-1 was already dead" in lost[0].message
    leased = outcome.result.history.select("leased", job=job)
    assert [e.get("client_gone") for e in leased] == [True]
    kill_t = min(e.t for e in outcome.result.history.select("fault") if e.get("action") == "kill")
    assert all(
        e.t < kill_t
        for e in outcome.result.history.select("leased")
        if e.job is not None and e.job < job
    )


def test_the_batch_loop_breaks_the_barrier_and_leaves_results_uncollected(
    tmp_path: Path,
) -> None:
    outcome = outcome_of("batch_loop.toml", tmp_path)

    assert outcome.status == "pass", outcome.report()
    barrier = [v for v in outcome.result.verdict.violations if v.check == "batch_barrier"]
    # Which batch goes out first while the one before still runs is a race (under load
    # batch 0 may finish before batch 1 is put): some batch does.
    assert any(
        re.search(r"of batch \d+ leased before batch \d+ closed", v.message) for v in barrier
    )
    lost = lost_jobs(outcome)
    assert lost
    assert all("its result was put by worker-" in v.message for v in lost)
    assert (tmp_path / FRAMES_LOG).stat().st_size > 0  # the frames every violation cites


def test_a_wrong_key_worker_is_refused_on_the_wire(tmp_path: Path) -> None:
    outcome = outcome_of("wrong_key.toml", tmp_path)

    assert outcome.status == "pass", outcome.report()
    history = outcome.result.history
    assert [e.get("route") for e in history.select("auth_rejected")] == ["intruder-1"]
    assert not history.select("worker_joined", worker="intruder-1")
    checks = {v.check for v in outcome.result.verdict.violations}
    assert checks == {"clean_exits"}  # auth and exactly_once hold: the key was refused


def test_toxics_work_on_the_watched_routes(tmp_path: Path) -> None:
    outcome = outcome_of("reset_after_get.toml", tmp_path)

    assert outcome.status == "pass", outcome.report()
    fired = outcome.result.history.select("toxic_fired")
    assert [(e.get("proxy"), e.get("action")) for e in fired] == [("worker-1", "reset")]
    lost = lost_jobs(outcome)
    assert [v.jobs for v in lost] == [(0,)]
    # Cut right after the hand-out: before the job reached the worker, or after (its result
    # then never reaches the app). Either way the violation says so, never "never taken".
    causes = ("worker-1's connection was cut while it held it", "never reached the app")
    assert any(cause in lost[0].message for cause in causes), lost[0].message


def test_the_same_fault_shapes_pass_against_distq(tmp_path: Path) -> None:
    for name in ("distq_kill_after_get.toml", "distq_kill_waiting_worker.toml"):
        outcome = outcome_of(name, tmp_path / name)
        assert outcome.result.verdict.status == "pass", outcome.report()


def test_job_started_is_refused_for_an_app_observed_on_the_wire(tmp_path: Path) -> None:
    text = (REPO / "scenarios" / "tutorial" / "kill_after_get.toml").read_text()
    path = tmp_path / "started.toml"
    path.write_text(
        text.replace(
            'when = { job_leased = 1 }\ndo = "kill"', 'when = { job_started = 1 }\ndo = "kill"', 1
        )
    )

    with pytest.raises(ScenarioError) as refused:
        load_scenario(path)

    message = str(refused.value)
    assert "\n" not in message
    assert "faults[0].when: 'job_started' is not supported by system kind 'managers'" in message
