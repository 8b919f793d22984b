"""logread: typed records only for lines that are exactly one of its kinds, and then the
same events, fields and values the contract's reader gives; dicts for everything else."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from harness import contract
from harness.contract import CorruptLog
from harness.history import History
from harness.logread import TAGS, TypedFields, read_events, read_results

_LEASED = {"t": 0.5, "src": "master", "ev": "leased", "job": 3, "attempt": 1, "lease": 7}
_LEASED |= {"worker": "worker-1", "batch": None}


def _log(tmp_path: Path, lines: list[str], name: str = "m.events.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _as_read(event: Any) -> dict[str, Any]:
    """An event as the contract's reader gives it: a typed record with its t, src and ev."""
    if isinstance(event, dict):
        return event
    return {"t": event.t, "src": event.src, "ev": TAGS[type(event)], **dict(event)}


@pytest.mark.parametrize(
    ("event", "typed"),
    [
        (_LEASED, True),
        ({**_LEASED, "extra": 1}, False),  # a key more
        ({k: v for k, v in _LEASED.items() if k != "batch"}, False),  # a key less
        ({**_LEASED, "job": True}, False),  # a bool is no job id
        ({**_LEASED, "job": 3.0}, False),  # nor a float
        ({**_LEASED, "t": 1}, True),  # an int time is a time
        ({**_LEASED, "t": True}, False),
        ({**_LEASED, "src": 5}, False),
        ({**_LEASED, "ev": "lease_expired"}, False),  # not one of the kinds
        ({**_LEASED, "worker": ["odd"], "attempt": "x"}, True),  # other fields: any value
    ],
)
def test_a_line_is_typed_only_when_it_is_exactly_a_kind(
    event: dict[str, Any], typed: bool, tmp_path: Path
) -> None:
    path = _log(tmp_path, [json.dumps(event)])
    [read] = read_events(path)
    assert isinstance(read, TypedFields) is typed
    assert _as_read(read) == next(contract.read_log(path))


def test_a_typed_record_is_a_read_only_mapping_of_its_fields(tmp_path: Path) -> None:
    [read] = read_events(_log(tmp_path, [json.dumps(_LEASED)]))
    assert isinstance(read, TypedFields)
    assert isinstance(read, Mapping)
    assert list(read) == ["job", "attempt", "lease", "worker", "batch"]  # the writer's order
    assert dict(read.items()) == {
        "job": 3,
        "attempt": 1,
        "lease": 7,
        "worker": "worker-1",
        "batch": None,
    }
    assert read.get("t") is None  # time and source are the event's, not fields
    assert read.get("reason", "none") == "none"
    assert "src" not in read
    with pytest.raises(KeyError):
        read["src"]
    with pytest.raises(AttributeError):
        setattr(read, "job", 4)  # noqa: B010 (frozen: assignment must fail)


def test_results_lines_and_torn_and_corrupt_lines_read_as_the_contract_reads_them(
    tmp_path: Path,
) -> None:
    result = {"job": 1, "ok": True, "value": 1, "error": None, "worker": "w", "attempt": 1}
    results = _log(tmp_path, [json.dumps(result), json.dumps({"job": 2, "ok": False})], "r.jsonl")
    typed, plain = read_results(results)
    assert isinstance(typed, TypedFields)
    assert dict(typed) == result
    assert plain == {"job": 2, "ok": False}
    torn = tmp_path / "torn.events.jsonl"
    torn.write_text(json.dumps(_LEASED) + "\n\n" + json.dumps(_LEASED)[:20], encoding="utf-8")
    assert [_as_read(e) for e in read_events(torn)] == list(contract.read_log(torn))
    corrupt = _log(tmp_path, ["{not json", json.dumps(_LEASED)], "bad.events.jsonl")
    with pytest.raises(CorruptLog, match=r"bad\.events\.jsonl:1: not a JSON event object"):
        read_events(corrupt)


def test_history_answers_the_same_from_typed_and_plain_fields(tmp_path: Path) -> None:
    path = _log(tmp_path, [json.dumps(_LEASED)])
    from_file, from_dicts = History.from_files([path]), History([dict(_LEASED)])
    [typed], [plain] = from_file.events, from_dicts.events
    assert isinstance(typed.fields, TypedFields)
    assert isinstance(plain.fields, dict)
    for key in ("job", "attempt", "worker", "batch", "t", "src", "ev", "missing"):
        assert typed.get(key, "default") == plain.get(key, "default")
    assert typed.render() == plain.render()
    assert from_file.leases() == from_dicts.leases()
