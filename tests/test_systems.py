"""The seam: the systems registry, the history contract, and distq held to that contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from distq.events import EPOCH_ENV, EVENT_NAMES
from harness import contract, systems
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
    assert not contract.SYSTEM_EVENTS & contract.HARNESS_EVENTS


def test_a_corrupt_line_in_the_middle_of_a_log_is_an_error(tmp_path: Path) -> None:
    log = tmp_path / "master.events.jsonl"
    log.write_text('{"t":0.1,"src":"master","ev":"leased"}\n{"t":0.2,"sr\n{"t":0.3}\n')
    with pytest.raises(contract.CorruptLog, match=r"master.events.jsonl:2: not a JSON event"):
        list(contract.read_log(log))


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
    assert list(first)[:3] == ["t", "src", "ev"] and first["src"] == "harness"
    assert second == {"t": 1.5, "src": "x", "ev": "hang"}
