"""kind = "managers": its [system] table, what it launches, and the master's sitecustomize."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Listener
from pathlib import Path

import pytest

from harness import systems
from harness.checks import ExpectedFailed, Pin, Satisfies
from harness.scenario import ScenarioError, load_scenario
from harness.systems.base import MASTER, WORKER, ProcessSpec, RunSetup
from harness.systems.managers import (
    REDIRECT_ENV,
    SITE_DIR,
    STACKS_ENV,
    STACKS_SIGNAL,
    ManagersSystem,
)
from tests.support import REPO

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
    assert REDIRECT_ENV not in worker.env
    assert STACKS_ENV in worker.env
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
    repo = REPO
    readme = (repo / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Testing a BaseManager app", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "examples").symlink_to(repo / "examples")  # cwd is relative to the file
    path = tmp_path / "scenarios" / "mine" / "readme.toml"
    path.parent.mkdir(parents=True)
    path.write_text(block, encoding="utf-8")

    copied = load_scenario(path)
    pinned = load_scenario(repo / "scenarios" / "tutorial" / "kill_after_get.toml")

    def app(system: dict[str, object]) -> dict[str, object]:  # where the file lies aside
        return {key: value for key, value in system.items() if key != "scenario_dir"}

    assert app(copied.system) == app(pinned.system)
    assert (copied.cluster, copied.faults) == (pinned.cluster, pinned.faults)
    assert copied.expect.checks == pinned.expect.checks
    # the README's run fails: the bug, pinned to the job and its cause
    assert pinned.expect.known_violations == (Pin("exactly_once", (1,), ("holder_killed",)),)


def test_expect_violation_takes_one_check_a_list_or_pins(tmp_path: Path) -> None:
    base = REPO / "scenarios" / "tutorial" / "batch_loop.toml"
    text = base.read_text(encoding="utf-8").replace('cwd = "../../examples/tutorial"', "")
    text = re.sub(r"^expect_violation = \[.*?^\]\n", "", text, flags=re.M | re.S)

    def variant(name: str, line: str) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(text.replace("[expect]\n", f"[expect]\n{line}\n"))
        return path

    assert load_scenario(base).expect.known_checks == ("batch_barrier", "exactly_once")
    one = variant("one", 'expect_violation = "batch_barrier"')
    assert load_scenario(one).expect.known_violations == (Pin("batch_barrier"),)
    pinned = variant(
        "pinned",
        'expect_violation = ["batch_barrier", '
        '{ check = "exactly_once", jobs = [29, 28], cause = "no_result" }]',
    )
    assert load_scenario(pinned).expect.known_violations == (
        Pin("batch_barrier"),
        Pin("exactly_once", (28, 29), ("no_result",)),
    )
    bad = variant("bad", 'expect_violation = ["batch_barrier", "exactly_twice"]')
    with pytest.raises(ScenarioError) as caught:
        load_scenario(bad)
    assert "\n" not in str(caught.value)
    assert "expect.expect_violation" in str(caught.value)
    assert "exactly_twice" in str(caught.value)
    cause = variant("cause", 'expect_violation = { check = "exactly_once", cause = "bad_luck" }')
    with pytest.raises(ScenarioError, match="bad_luck"):
        load_scenario(cause)
    by_task = variant("task", 'expect_violation = { check = "exactly_once", tasks = [7, [1, 2]] }')
    assert load_scenario(by_task).expect.known_violations == (
        Pin("exactly_once", tasks=("7", "[1,2]")),
    )
    both = variant("both", 'expect_violation = { check = "exactly_once", jobs = [7], tasks = [7] }')
    with pytest.raises(ScenarioError, match="by jobs or by tasks, not both"):
        load_scenario(both)


def _app_scenario(directory: Path, expected: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "s.toml"
    path.write_text(
        'scenario = 2\nname = "app"\ndescription = "an app"\n\n[system]\nkind = "managers"\n'
        'master = ["{python}", "m.py"]\nworker = ["{python}", "w.py"]\n'
        f'tasks = "get_task_queue"\nresults = "get_result_queue"\nexpected = "{expected}"\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("files", "expected", "message"),
    [
        ({}, "nowhere:square", "expected: 'nowhere:square' cannot be imported"),
        (
            {"expect.py": "def cube(n):\n    return n ** 3\n"},
            "expect:square",
            "expect has no function 'square'",
        ),
        (
            {"expect.py": "raise RuntimeError('boom')\n"},
            "expect:square",
            "loading it raised RuntimeError: boom",
        ),
    ],
)
def test_an_expected_function_that_cannot_be_had_is_refused_at_load(
    tmp_path: Path, files: dict[str, str], expected: str, message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    path = _app_scenario(tmp_path, expected)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_two_apps_with_an_expect_module_each_are_judged_by_their_own(tmp_path: Path) -> None:
    systems_built = []
    for name, body in (("one", "n * n"), ("two", "n + 1")):
        app = tmp_path / name
        app.mkdir()
        (app / "expect.py").write_text(f"def value(n):\n    return {body}\n", encoding="utf-8")
        scenario = load_scenario(_app_scenario(app, "expect:value"))
        systems_built.append(systems.build(scenario.system))
    assert [system.expected("t", (3,)) for system in systems_built] == [9, 4]


def test_an_expected_function_that_raises_is_reported_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "expect.py").write_text("def value(n):\n    return 1 / n\n", encoding="utf-8")
    system = systems.build(load_scenario(_app_scenario(tmp_path, "expect:value")).system)
    assert system.expected("t", (0,)) == ExpectedFailed("ZeroDivisionError: division by zero")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"results": True}, "results: true is not a typeid"),
        ({"results": False, "result_key": "id"}, "result_key: the app has no results"),
        ({"skip": "not a function"}, "skip: got 'not a function', expected a list of values"),
        ({"job_key": []}, "job_key: an empty path names nothing"),
        ({"tasks": {"typeid": "q", "take": "grab"}}, "system.tasks"),
        ({"results": {"typeid": "r", "as": "set"}}, "system.results"),
    ],
)
def test_a_wrong_shape_key_is_one_line_naming_it(change: dict[str, object], message: str) -> None:
    with pytest.raises(systems.SystemConfigError) as caught:
        systems.parse_table({**TABLE, **change})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_correct_values_is_refused_for_an_app_without_results(tmp_path: Path) -> None:
    path = _app_scenario(tmp_path, "expect:value")
    (tmp_path / "expect.py").write_text("def value(n):\n    return n\n", encoding="utf-8")
    text = path.read_text(encoding="utf-8").replace(
        'results = "get_result_queue"', "results = false"
    )
    path.write_text(text + '\n[expect]\nchecks = ["exactly_once", "correct_values"]\n')
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert "'correct_values' cannot judge it: results = false" in str(raised.value)


def test_modules_beside_the_scenario_are_found_before_the_apps_own(tmp_path: Path) -> None:
    app, scenarios = tmp_path / "app", tmp_path / "scenarios"
    app.mkdir()
    (app / "expect.py").write_text("def value(n):\n    return 'the app'\n", encoding="utf-8")
    path = _app_scenario(scenarios, "expect:value")
    path.write_text(path.read_text(encoding="utf-8") + 'cwd = "../app"\n', encoding="utf-8")
    assert systems.build(load_scenario(path).system).expected("t", (1,)) == "the app"

    (scenarios / "expect.py").write_text("def value(n):\n    return 'beside'\n", encoding="utf-8")
    assert systems.build(load_scenario(path).system).expected("t", (1,)) == "beside"


def test_a_key_function_or_predicate_is_loaded_and_used(tmp_path: Path) -> None:
    (tmp_path / "keys.py").write_text(
        "import json\n\ndef inner(payload):\n    return json.loads(payload)['id']\n\n"
        "def right(n, result):\n    return result['square'] == n * n\n",
        encoding="utf-8",
    )
    path = _app_scenario(tmp_path, "keys:right")
    path.write_text(path.read_text(encoding="utf-8") + 'job_key = "keys:inner"\n', encoding="utf-8")
    system = systems.build(load_scenario(path).system)
    assert isinstance(system, ManagersSystem)
    assert system.names.job_key({"$bytes": '{"id": 4}'}) == "4"
    judged = system.expected("t", (3,))
    assert isinstance(judged, Satisfies)
    assert judged.test({"square": 9}) is True
    assert judged.test({"square": 8}) is False


def test_the_apps_env_is_merged_with_what_the_harness_sets(tmp_path: Path) -> None:
    from harness.runtime.cluster import TAG_ENV
    from harness.systems.managers import HARNESS_ENV

    assert TAG_ENV in HARNESS_ENV
    with pytest.raises(systems.SystemConfigError) as caught:
        systems.parse_table({**TABLE, "env": {REDIRECT_ENV: "x"}})
    assert f"env: {REDIRECT_ENV} is set by the harness" in str(caught.value)

    system = systems.build({**TABLE, "env": {"PYTHONPATH": "/app/lib", "MODE": "test"}})
    spec = ProcessSpec(MASTER, MASTER, tmp_path / "m.jsonl", {}, b"k")
    launch = system.launch(spec, RunSetup(tmp_path, None))
    assert launch.env["PYTHONPATH"].split(os.pathsep)[:2] == [str(SITE_DIR), "/app/lib"]
    assert launch.env["MODE"] == "test"
    assert isinstance(system, ManagersSystem)
    system.close()


def test_server_and_producer_roles_start_in_order_and_the_server_is_stopped_with_sigint() -> None:
    plain = systems.build(TABLE)
    assert getattr(plain, "run_roles", None) == (MASTER, WORKER)
    full = systems.build(
        {**TABLE, "server": ["{python}", "s.py", "{port}"], "producer": ["{python}", "p.py"]}
    )
    assert isinstance(full, ManagersSystem)
    assert full.run_roles == ("server", MASTER, "producer", WORKER)
    assert full.stop_signals == {"server": signal.SIGINT}
    assert full.names.submitters == {MASTER, "server", "producer"}
    sigterm = systems.build({**TABLE, "stop": "sigterm"})
    assert isinstance(sigterm, ManagersSystem)
    assert sigterm.stop_signals == {MASTER: signal.SIGTERM}
