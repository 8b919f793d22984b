"""The distq kind's producer role: how it is launched, when it runs, and what a scenario
may aim at it. No process is started here (the library's producer scenarios run them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario import ScenarioError, load_scenario
from harness.systems import MASTER, ProcessSpec, RunSetup
from harness.systems.distq import PRODUCER, DistqConfig, DistqSystem

HEAD = 'scenario = 2\nname = "n"\ndescription = "d"\n[jobs]\ncount = 0\n'


def spec(role: str) -> ProcessSpec:
    return ProcessSpec(role, role, Path("e.jsonl"), {MASTER: "127.0.0.1:4000"}, b"k" * 16)


def test_a_producer_runs_after_the_master_with_its_address_and_the_master_takes_submissions(
    tmp_path: Path,
) -> None:
    config = DistqConfig(producer=["python", "p.py", "{address}", "--count", "3"], cwd="/x")
    system = DistqSystem(config)
    assert system.run_roles == ("master", PRODUCER, "worker")
    setup = RunSetup(tmp_path, None)
    launch = system.launch(spec(PRODUCER), setup)
    assert launch.argv == ("python", "p.py", "127.0.0.1:4000", "--count", "3")
    assert launch.cwd == Path("/x")
    assert "DISTQ_AUTHKEY" in launch.env
    assert "--open" in system.launch(spec(MASTER), setup).argv
    assert system.ready(_Proc(), []) == "127.0.0.1:4000"


def test_without_a_producer_there_is_none_and_the_master_is_closed(tmp_path: Path) -> None:
    system = DistqSystem()
    assert system.run_roles == ("master", "worker")
    assert "--open" not in system.launch(spec(MASTER), RunSetup(tmp_path, None)).argv


def test_submit_window_is_the_masters_flag(tmp_path: Path) -> None:
    system = DistqSystem(DistqConfig(producer=["p"], submit_window=3))
    argv = system.launch(spec(MASTER), RunSetup(tmp_path, None)).argv
    assert argv[argv.index("--submit-window") + 1] == "3"


def test_a_fault_may_target_the_producer_only_when_the_run_has_one(tmp_path: Path) -> None:
    fault = '[[faults]]\nwhen = { results = 1 }\ndo = "restart"\ntarget = "producer"\n'
    with_producer = tmp_path / "with.toml"
    with_producer.write_text(HEAD + fault + '[system]\nproducer = ["p"]\ncwd = "."\n')
    loaded = load_scenario(with_producer)
    assert loaded.system["cwd"] == str(tmp_path)  # relative to the scenario
    without = tmp_path / "without.toml"
    without.write_text(HEAD + fault)
    with pytest.raises(ScenarioError, match="'producer' names no process of this run"):
        load_scenario(without)


class _Proc:
    name = role = PRODUCER
    pid = 1
    events_path = log_path = Path("x")

    def alive(self) -> bool:
        return True
