"""File faults: tearing the last line of an output while the master is down."""

from __future__ import annotations

from pathlib import Path

from harness import contract
from harness.runtime.faults import tear_last_line


def test_the_last_line_is_cut_in_its_middle_and_the_earlier_ones_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    whole = b'{"job": 0}\n{"job": 1, "ok": true}\n'
    path.write_bytes(whole)
    cut = tear_last_line(path)
    data = path.read_bytes()
    assert data.startswith(b'{"job": 0}\n{"job": 1')
    assert not data.endswith(b"\n")
    assert cut == len(whole) - len(data)
    assert len(list(contract.read_log(path))) == 1  # a reader skips the torn last line


def test_a_torn_line_is_torn_further_and_an_empty_file_has_nothing_to_tear(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2')
    assert tear_last_line(path) > 0
    assert path.read_bytes().startswith(b'{"a": 1}\n{')
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert tear_last_line(empty) == 0
    assert tear_last_line(tmp_path / "missing") == 0


def test_the_tearing_actions_restart_the_master_and_name_their_output() -> None:
    tearing = contract.actions_where(lambda row: row.tears != "")
    assert {contract.FAULT_ACTIONS[name].tears for name in tearing} == {"results", "events"}
    for name in tearing:
        row = contract.FAULT_ACTIONS[name]
        assert row.aims == "master"
        assert row.comes_back
        assert not row.takes_target
