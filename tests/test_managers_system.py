"""kind = "managers": its [system] table, what it launches, and the master's sitecustomize."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from multiprocessing.connection import Listener
from pathlib import Path

import pytest

from harness import systems
from harness.scenario import ScenarioError, load_scenario
from harness.systems.base import MASTER, WORKER, ProcessSpec, RunSetup
from harness.systems.managers import (
    REDIRECT_ENV,
    SITE_DIR,
    STACKS_ENV,
    STACKS_SIGNAL,
    ManagersSystem,
)

TABLE = {
    "kind": "managers",
    "cwd": "/somewhere",
    "master": ["{python}", "m.py", "{port}", "{authkey}"],
    "worker": ["{python}", "w.py", "127.0.0.1", "{port}", "{authkey}"],
    "tasks": "get_task_queue",
    "results": "get_result_queue",
}


def test_a_misspelt_key_is_one_line_naming_it() -> None:
    with pytest.raises(systems.SystemConfigError) as caught:
        systems.parse_table({**TABLE, "job_keys": "job_id"})
    assert str(caught.value).startswith("unknown key system.job_keys for kind 'managers'")


def test_an_exit_code_of_no_known_meaning_is_refused() -> None:
    with pytest.raises(systems.SystemConfigError) as caught:
        systems.parse_table({**TABLE, "exit_codes": {"fine": 0}})
    assert "exit_codes: unknown meaning 'fine'" in str(caught.value)


def test_the_master_runs_with_the_hook_and_a_worker_through_its_own_relay(tmp_path: Path) -> None:
    system = systems.build({**TABLE, "exit_codes": {"auth_rejected": 1}})
    assert isinstance(system, ManagersSystem)
    setup = RunSetup(run_dir=tmp_path, jobs_path=None, authkey=b"k3y", epoch=0.0)
    try:
        system.observers(setup, lambda ev, **fields: None)
        master = system.launch(ProcessSpec(MASTER, MASTER, tmp_path / "m", {}, b"k3y"), setup)
        app = f"127.0.0.1:{system.app_port}"
        worker = system.launch(
            ProcessSpec(WORKER, "worker-1", tmp_path / "w", {MASTER: app}, b"wrong"), setup
        )
        assert system.recorder is not None
        relays = system.recorder.relays
    finally:
        system.close()

    assert master.argv == (sys.executable, "m.py", str(system.app_port), "k3y")
    assert master.cwd == Path("/somewhere")
    assert master.env["PYTHONPATH"].split(os.pathsep)[0] == str(SITE_DIR)
    relay_port = relays[MASTER].address[1]
    assert master.env[REDIRECT_ENV] == f"{system.app_port}=127.0.0.1:{relay_port}"
    assert worker.argv[3:] == (str(relays["worker-1"].address[1]), "wrong")
    assert REDIRECT_ENV not in worker.env and STACKS_ENV in worker.env
    assert system.exit_codes.auth_rejected == 1


@pytest.mark.processes
def test_the_hook_redirects_client_connections_to_the_app_port_and_chains(
    tmp_path: Path,
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("print('the earlier sitecustomize ran')\n")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        app_port = unused.getsockname()[1]  # nothing listens here: only the redirect works
    with Listener(("127.0.0.1", 0), authkey=b"k") as relay:
        child = f"""
from multiprocessing.connection import Client
conn = Client(("0.0.0.0", {app_port}), authkey=b"k")
conn.send("through the relay")
conn.close()
import os, signal
os.kill(os.getpid(), {int(STACKS_SIGNAL)})  # faulthandler writes the stacks, the process goes on
print("still here")
"""
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SITE_DIR), str(other)]),
            REDIRECT_ENV: f"{app_port}=127.0.0.1:{relay.address[1]}",
            STACKS_ENV: str(int(STACKS_SIGNAL)),
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", child],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with relay.accept() as conn:
            received = conn.recv()
        out, err = proc.communicate(timeout=30)

    assert received == "through the relay"
    assert proc.returncode == 0
    assert out == "the earlier sitecustomize ran\nstill here\n"
    assert 'File "<string>"' in err  # the stack dump on the harness's stacks signal


def test_the_readme_scenario_loads_and_is_the_pinned_kill_after_get(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    readme = (repo / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Testing a BaseManager app", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "examples").symlink_to(repo / "examples")  # cwd is relative to the file
    path = tmp_path / "scenarios" / "mine" / "readme.toml"
    path.parent.mkdir(parents=True)
    path.write_text(block, encoding="utf-8")

    copied = load_scenario(path)
    pinned = load_scenario(repo / "scenarios" / "tutorial" / "kill_after_get.toml")

    assert copied.system == pinned.system
    assert (copied.cluster, copied.faults) == (pinned.cluster, pinned.faults)
    assert copied.expect.checks == pinned.expect.checks
    assert pinned.expect.expect_violation == "exactly_once"  # the README's run fails: the bug


def test_expect_violation_takes_one_check_or_a_list(tmp_path: Path) -> None:
    base = Path(__file__).resolve().parent.parent / "scenarios" / "tutorial" / "batch_loop.toml"
    text = base.read_text(encoding="utf-8").replace('cwd = "../../examples/tutorial"', "")
    one = tmp_path / "one.toml"
    one.write_text(text.replace('["batch_barrier", "exactly_once"]', '"batch_barrier"'))
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('"exactly_once"]', '"exactly_twice"]'))

    assert load_scenario(base).expect.known_violations == ("batch_barrier", "exactly_once")
    assert load_scenario(one).expect.known_violations == ("batch_barrier",)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(bad)
    assert "\n" not in str(caught.value)
    assert "expect.expect_violation[1]: got 'exactly_twice', expected one of: exactly_once" in str(
        caught.value
    )
