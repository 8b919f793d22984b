"""The seam: the systems registry, the history contract, and distq held to that contract."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from distq.events import EPOCH_ENV, EVENT_NAMES, TORN_MARK
from harness import checks, contract, scenario, systems
from harness import cli as harness_cli
from harness.checks import CHECKS
from harness.net.toxics import TOXIC_KINDS
from harness.scenario.model import CauseName
from harness.systems.distq import DistqSystem


def test_the_default_kind_is_distq_and_takes_its_keys() -> None:
    system = systems.build({"command": ["python", "-m", "tests.broken_distq"], "env": {"A": "1"}})
    assert isinstance(system, DistqSystem)
    assert system.command == ("python", "-m", "tests.broken_distq")
    assert isinstance(systems.build({"kind": "distq"}), DistqSystem)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"kind": "celery-ish"}, "system.kind: got 'celery-ish', expected one of: distq"),
        ({"kind": 3}, "system.kind: got 3, expected a string"),
        ({"workers": 2}, "unknown key system.workers for kind 'distq' (expected one of: kind,"),
        ({"command": []}, "system.command: got [], expected a list of length >= 1"),
        ({"env": {"A": 1}}, "system.env.A: got 1, expected a string"),
        ({"kind": "no_such_package.mod:KIND"}, "system.kind: 'no_such_package.mod:KIND' cannot"),
        ({"kind": "harness.contract:MASTER"}, "is not a systems.Kind"),
    ],
)
def test_a_bad_system_table_is_one_line(table: dict[str, object], message: str) -> None:
    with pytest.raises(systems.SystemConfigError) as raised:
        systems.build(table)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_distq_writes_the_contract() -> None:
    # distq cannot import the harness: its vocabulary is held to the contract here.
    assert EVENT_NAMES - {contract.FAULT} <= contract.SYSTEM_EVENTS
    assert not contract.SYSTEM_EVENTS - EVENT_NAMES
    assert EPOCH_ENV == contract.EPOCH_ENV
    assert TORN_MARK == contract.TORN_MARK
    assert not contract.SYSTEM_EVENTS & contract.HARNESS_EVENTS


def test_a_corrupt_line_in_the_middle_of_a_log_is_an_error(tmp_path: Path) -> None:
    log = tmp_path / "master.events.jsonl"
    log.write_text('{"t":0.1,"src":"master","ev":"leased"}\n{"t":0.2,"sr\n{"t":0.3}\n')
    with pytest.raises(contract.CorruptLog, match=r"master.events.jsonl:2: not a JSON event"):
        list(contract.read_log(log))


def test_a_torn_line_a_resumed_writer_ended_is_skipped(tmp_path: Path) -> None:
    from distq.events import EventLog

    path = tmp_path / "master.events.jsonl"
    path.write_text('{"t":0.1,"src":"master","ev":"leased"}\n{"t":0.2,"src":"mas')
    log = EventLog(path, "master")
    log.end_torn_line()
    log.write("master_ready")
    log.close()
    assert [e["ev"] for e in contract.read_log(path)] == ["leased", "master_ready"]


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "worker-1.events.jsonl"
    log.write_text('{"t":0.1,"src":"worker-1","ev":"started"}\n\n{"t":0.2,"src":"wor')
    assert [event["ev"] for event in contract.read_log(log)] == ["started"]


def test_the_writer_writes_the_format(tmp_path: Path) -> None:
    path = tmp_path / "harness.events.jsonl"
    writer = contract.EventWriter(path, "harness", epoch=0.0)
    writer.write(contract.FAULT, fault=0, action="kill")
    writer.write_all([{"t": 1.5, "ev": contract.HANG, "src": "x"}])
    writer.close()
    first, second = contract.read_log(path)
    assert list(first)[:3] == ["t", "src", "ev"]
    assert first["src"] == "harness"
    assert second == {"t": 1.5, "src": "x", "ev": "hang"}


# -- one source of truth per vocabulary ----------------------------------------------------


def test_the_scenario_format_spells_out_the_registries() -> None:
    assert typing.get_args(scenario.CheckName) == tuple(CHECKS)
    assert set(typing.get_args(scenario.ToxicKind)) == set(TOXIC_KINDS)
    assert set(typing.get_args(scenario.ActionName)) == set(contract.ACTIONS)
    assert list(typing.get_args(CauseName)) == list(contract.LOST_CAUSES)
    triggers = set(scenario.WhenSpec.__struct_fields__) - {"attempt", "hold", "wait_s"}
    assert triggers == set(contract.TRIGGERS)
    assert set(contract.ACTIONS) >= checks.MASTER_KILL_ACTIONS | checks.WRONG_KEY_WORKER_ACTIONS
    assert set(contract.ACTIONS) >= checks.BAD_HANDSHAKE_ACTIONS


def test_distq_documents_every_exit_code_and_flag_the_harness_relies_on() -> None:
    codes = DistqSystem.exit_codes
    assert (codes.ok, codes.usage, codes.auth_rejected) == (0, 2, 3)
    assert (codes.no_master, codes.master_lost, codes.handshake_timeout) == (4, 5, 6)
    cluster_keys = set(scenario.ClusterSpec.__struct_fields__) - {"workers"}
    assert DistqSystem.cluster_keys == cluster_keys


# -- [system] in scenario files -------------------------------------------------------------

MINIMAL = 'scenario = 1\nname = "m"\ndescription = "d"\n'


def load(tmp_path: Path, text: str) -> scenario.Scenario:
    path = tmp_path / "s.toml"
    path.write_text(MINIMAL + text)
    return scenario.load_scenario(path)


def test_a_scenario_without_a_system_table_is_distq(tmp_path: Path) -> None:
    assert isinstance(systems.build(load(tmp_path, "").system), DistqSystem)
    assert isinstance(
        systems.build(load(tmp_path, '[system]\nkind = "distq"\n').system), DistqSystem
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[system]\nkind = "rq"\n', "s.toml: system.kind: got 'rq', expected one of: distq"),
        (
            '[system]\nkind = "distq"\nqueues = ["a"]\n',
            "s.toml: unknown key system.queues for kind 'distq' (expected one of: kind, command, env, handshake_timeout_s, prefetch, "
            "worker_idle_exit_s, worker_handshake_timeout_s, worker_reconnect_s, journal, "
            "worker_rpc_timeout_s, producer, cwd, submit_window)",
        ),
        (
            '[system]\nkind = "tests.toy_system:KIND"\n[expect]\nchecks = ["batch_barrier"]\n',
            "s.toml: expect.checks: 'batch_barrier' is not supported by system kind "
            "'tests.toy_system:KIND' (it supports: clean_exits, correct_values, exactly_once,",
        ),
        (
            '[system]\nkind = "tests.toy_system:KIND"\n[cluster]\nmax_attempts = 5\n',
            "s.toml: cluster.max_attempts: 'max_attempts' is not supported by system kind",
        ),
    ],
)
def test_a_bad_system_in_a_scenario_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(scenario.ScenarioError) as raised:
        load(tmp_path, text)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_python_m_harness_check_exits_2_on_an_unknown_kind(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(MINIMAL + '[system]\nkind = "celery"\n')
    assert harness_cli.main(["check", str(path)]) == 2


def test_distqs_help_lists_exactly_its_exit_codes() -> None:
    # distq/errors.py is the table; the CLI's help text spells it out, so hold the two equal.
    from distq import cli, errors

    listed = {
        int(line.split()[0]) for line in cli.EXIT_CODES_HELP.splitlines()[1:] if line[2:3].isdigit()
    }
    table = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert listed == table | {1}  # 1: an internal error, a bug (DistqError's default)
