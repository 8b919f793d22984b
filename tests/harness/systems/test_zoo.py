"""The zoo of reported bugs (scenarios/zoo): each file cites its report and pins what it
reproduces, each fixed counterpart stands beside its bug, and a pin fails once the bug is
gone (the Huey SIGTERM report, run with the setting that fixes it)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from harness import systems
from harness.scenario import Scenario, load_scenario, run_scenario
from harness.systems.engine import worker_argv
from tests.support import REPO

ZOO = REPO / "scenarios" / "zoo"
#: A report as the descriptions cite it: owner/repository#number.
REPORT = re.compile(r"\b[\w.-]+/[\w.-]+#\d+")


@pytest.mark.engines
def test_every_zoo_file_cites_its_report_and_pins_or_passes() -> None:
    files = sorted(ZOO.glob("*.toml"))
    assert len(files) >= 12
    for path in files:
        scenario = load_scenario(path)
        assert REPORT.search(scenario.description), path.name
        fixed = path.stem.endswith("_fixed")
        pinned = bool(scenario.expect.known_violations)
        if fixed:
            bug = path.with_name(path.stem.removesuffix("_fixed") + ".toml")
            assert bug.exists(), f"{path.name} has no bug file beside it"
            assert not pinned, path.name
            assert load_scenario(bug).expect.known_violations, bug.name
        elif pinned:
            assert "Pinned:" in scenario.description, path.name
        else:  # a report the pinned version no longer shows
            assert "Not reproduced on the pinned version" in scenario.description, path.name


@pytest.mark.engines
def test_huey_takes_the_graceful_signal_of_its_consumer() -> None:
    _, config = systems.parse_table({"kind": "engine", "engine": "huey"})
    argv = worker_argv(config.settings(), "worker-1", "redis://127.0.0.1:1/0")  # type: ignore[attr-defined]
    assert argv[argv.index("--graceful-signal") + 1] == "INT"
    _, config = systems.parse_table({"kind": "engine", "engine": "huey", "graceful_signal": "TERM"})
    argv = worker_argv(config.settings(), "worker-1", "redis://127.0.0.1:1/0")  # type: ignore[attr-defined]
    assert argv[argv.index("--graceful-signal") + 1] == "TERM"
    with pytest.raises(systems.SystemConfigError, match="graceful_signal"):
        systems.parse_table({"kind": "engine", "engine": "huey", "graceful_signal": "KILL"})


@pytest.mark.processes
@pytest.mark.engines
def test_a_zoo_pin_fails_once_the_bug_is_fixed(tmp_path: Path) -> None:
    # The SIGTERM report's pin (job 0 lost with its holder), with the setting that fixes it:
    # the consumer lets job 0 finish, so the pinned violation is missing and the file fails.
    raw = tomllib.loads((ZOO / "huey_796_sigterm_loses_task.toml").read_text())
    raw["system"] = {**raw["system"], "graceful_signal": "TERM"}
    outcome = run_scenario(msgspec.convert(raw, Scenario), tmp_path / "run")
    assert outcome.status == "fail", outcome.report()
    assert "no such violation" in outcome.report(), outcome.report()
