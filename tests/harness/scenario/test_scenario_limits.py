"""A scenario that could prove nothing, or that asks for the impossible, is refused with
one line; none is skipped without a word (harness.limits and the loader)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main as harness_main
from harness.scenario import Scenario, ScenarioError, load_scenario, to_run_spec

HEAD = 'scenario = 1\nname = "n"\ndescription = "d"\n'


def load(tmp_path: Path, body: str, head: str = HEAD) -> Scenario:
    path = tmp_path / "s.toml"
    path.write_text(head + body, encoding="utf-8")
    return load_scenario(path)


def refused(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load(tmp_path, body)
    message = str(caught.value)
    assert "\n" not in message, message
    assert expected in message, message


def test_faults_always_bring_fault_coverage_and_liveness(tmp_path: Path) -> None:
    scenario = load(
        tmp_path,
        '[[faults]]\nwhen = { after_s = 0 }\ndo = "kill"\ntarget = "worker-2"\n'
        '[expect]\nchecks = ["exactly_once"]\n',
    )
    assert set(to_run_spec(scenario, tmp_path).checks) == {
        "exactly_once",
        "fault_coverage",
        "liveness",
    }
    plain = load(tmp_path, '[expect]\nchecks = ["exactly_once"]\n')
    assert to_run_spec(plain, tmp_path).checks == ("exactly_once",)


def test_an_empty_check_list_is_invalid(tmp_path: Path) -> None:
    refused(tmp_path, "[expect]\nchecks = []\n", "expect.checks: got [], expected")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[network]\nproxy = true\n[[faults]]\nwhen = { after_s = 1 }\ndo = "remove_toxic"\n'
            'toxic_name = "never-added"\ntarget = "all"\n',
            "faults[0].toxic_name = 'never-added' names no toxic the scenario adds (it adds: none)",
        ),
        (
            "[cluster]\nbatch_size = 10\n[jobs]\ncount = 20\n"
            '[[faults]]\nwhen = { batch_closed = 2 }\ndo = "kill"\n',
            "faults[0].when.batch_closed = 2 can never happen: there are batches 0..1",
        ),
        (
            '[[faults]]\nwhen = { batch_closed = 0 }\ndo = "kill"\n',
            "there are no batches (no cluster.batch_size)",
        ),
        (
            '[cluster]\nworkers = 2\n[[faults]]\nwhen = { after_s = 1 }\ndo = "add_worker"\n'
            'count = 1\n[[faults]]\nwhen = { workers_joined = 4 }\ndo = "kill"\n',
            "faults[1].when.workers_joined = 4 can never happen: at most 3 workers join",
        ),
        (
            '[[faults]]\nwhen = { after_s = 1 }\ndo = "add_worker"\ncount = 1000\n'
            '[[faults]]\nwhen = { after_s = 1 }\ndo = "wrong_key_worker"\ncount = 1000\n',
            "the scenario starts 2002 workers in all",
        ),
        (
            '[[jobs.extra]]\ntask = "square"\ncount = 1000000000\n',
            "the scenario has 1000000020 jobs in all; at most 1000000",
        ),
        (
            "[cluster]\nhandshake_timeout_s = inf\n",
            "cluster.handshake_timeout_s: got inf, expected a finite number",
        ),
        ("[cluster]\nlease_timeout_s = 1e300\n", "cluster.lease_timeout_s: got 1e+300"),
        ("[jobs]\ndelay_s = nan\n", "jobs.delay_s: got nan"),
        ('[[jobs.extra]]\ntask = "echo"\nargs = [1, -inf]\n', "jobs.extra[0].args[1]: got -inf"),
        ("x = " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    ],
    ids=[
        "unknown-toxic",
        "batch-beyond-last",
        "batch-without-batches",
        "joins-unreachable",
        "too-many-workers",
        "too-many-jobs",
        "inf",
        "1e300",
        "nan",
        "inf-in-args",
        "deep-nesting",
    ],
)
def test_what_cannot_happen_is_refused_in_one_line(
    tmp_path: Path, body: str, expected: str
) -> None:
    refused(tmp_path, body, expected)


def test_a_byte_order_mark_or_a_quoted_key_still_reads(tmp_path: Path) -> None:
    assert load(tmp_path, "", head="\ufeff" + HEAD)
    assert load(tmp_path, "", head=HEAD.replace("scenario = 1", '"scenario" = 1'))


def test_check_lists_what_it_skipped_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bom.toml").write_text("\ufeff" + HEAD, encoding="utf-8")
    (tmp_path / "quoted.toml").write_text(HEAD.replace("scenario =", '"scenario" ='))
    (tmp_path / "typo.toml").write_text(HEAD.replace("scenario =", "scenaro ="))
    assert harness_main(["check", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"ok {tmp_path / 'bom.toml'}" in out
    assert f"ok {tmp_path / 'quoted.toml'}" in out
    assert f"skipped {tmp_path / 'typo.toml'}: no 'scenario = N' at its top level" in "\n".join(out)


@pytest.mark.processes
def test_pytest_on_a_file_without_the_marker_says_why(tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text(HEAD.replace("scenario =", "scenaro ="))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(typo)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTEST_ADDOPTS": ""},
        timeout=120,
    )
    assert done.returncode != 0
    assert "scenario: missing (a scenario file starts with scenario = 2" in done.stdout
    assert "not found" not in done.stdout


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[cluster]\nworkers = 3\n[[faults]]\nwhen = { job_started = 1 }\ndo = "kill"\n'
            'target = "worker-99"\n',
            "faults[0].target = 'worker-99' names no process of this run "
            "(it has: master, worker-1, worker-2, worker-3)",
        ),
        (
            '[cluster]\nworkers = 1\n[[faults]]\nwhen = { after_s = 1 }\ndo = "add_worker"\n'
            'count = 2\n[[faults]]\nwhen = { after_s = 2 }\ndo = "kill"\ntarget = "worker-4"\n',
            "faults[1].target = 'worker-4' names no process of this run",
        ),
        (
            '[network]\nproxy = true\n[[network.toxics]]\nname = "slow"\nkind = "latency"\n'
            'latency_ms = 5\nworkers = ["worker-7"]\n',
            "network.toxics[0].workers = 'worker-7' names no process of this run",
        ),
        (
            "[cluster]\nlease_timeout_s = 1e-300\n",
            "cluster.lease_timeout_s: got 1e-300, expected 0 or a duration of at least 0.001 s",
        ),
        ("[expect]\nwithin_s = 1e-300\n", "expect.within_s: got 1e-300"),
        ("seed = 18446744073709551616\n", "seed: got 18446744073709551616"),
        ("[cluster]\nworkerz = 2\n", "unknown key cluster.workerz"),
    ],
)
def test_what_the_run_can_never_have_is_refused_in_one_line(
    tmp_path: Path, body: str, expected: str
) -> None:
    refused(tmp_path, body, expected)


def test_a_fault_on_an_added_worker_or_an_intruder_is_accepted(tmp_path: Path) -> None:
    load(
        tmp_path,
        '[cluster]\nworkers = 1\n[[faults]]\nwhen = { after_s = 1 }\ndo = "add_worker"\n'
        '[[faults]]\nwhen = { after_s = 2 }\ndo = "kill"\ntarget = "worker-2"\n',
    )
