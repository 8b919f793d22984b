"""Event logs read at the speed of msgspec, as compact as their lines allow.

The kinds a run writes by the million (a job submitted, leased, started, completed,
accepted; a line of the results output) decode straight into typed records, when a line
has exactly their keys, with exactly their types; such a record is a read-only mapping of
the event's fields. Any other line decodes into a dict. Lines are read as
``contract.read_log`` reads them: the same events, the same torn and corrupt lines.
"""

from __future__ import annotations

import os
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from pathlib import Path
from typing import Any, ClassVar, cast

import msgspec

from harness import contract
from harness.contract import TORN_MARK, CorruptLog

__all__ = [
    "LOGGED_KINDS",
    "TAGS",
    "ResultLine",
    "TypedFields",
    "decode_line",
    "decode_logged",
    "decode_logged_block",
    "decode_result",
    "decode_results_block",
    "read_events",
    "read_results",
]


class TypedFields(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """The fields of one event, in slots: a read-only mapping of them in the order its
    writer writes them (``t`` and ``src``, which a log line carries, are not fields)."""

    keys_: ClassVar[tuple[str, ...]] = ()
    key_set: ClassVar[frozenset[str]] = frozenset()

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.key_set else default

    def __getitem__(self, key: str) -> Any:
        if key in self.key_set:
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self.key_set

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_)

    def __len__(self) -> int:
        return len(self.keys_)

    def keys(self) -> KeysView[str]:
        return KeysView(self)

    def items(self) -> ItemsView[str, Any]:
        return ItemsView(self)

    def values(self) -> ValuesView[Any]:
        return ValuesView(self)


Mapping.register(TypedFields)


class _Logged(TypedFields, frozen=True, gc=False, tag_field="ev"):
    t: float
    src: str


class _Submitted(_Logged, frozen=True, gc=False, tag=contract.JOB_SUBMITTED):
    job: int
    task: Any
    args: Any
    batch: Any
    time_limit_s: Any


class _Leased(_Logged, frozen=True, gc=False, tag=contract.LEASED):
    job: int
    attempt: Any
    lease: Any
    worker: Any
    batch: Any


class _Started(_Logged, frozen=True, gc=False, tag=contract.STARTED):
    job: int
    attempt: Any
    worker: Any


class _Completed(_Logged, frozen=True, gc=False, tag=contract.COMPLETED):
    job: int
    attempt: Any
    worker: Any
    ok: Any


class _Accepted(_Logged, frozen=True, gc=False, tag=contract.RESULT_ACCEPTED):
    job: int
    attempt: Any
    worker: Any
    ok: Any
    value: Any


class ResultLine(TypedFields, frozen=True, gc=False):
    """A line of the results output (it carries no time, source or event name)."""

    job: int
    ok: Any
    value: Any
    error: Any
    worker: Any
    attempt: Any


_LOGGED = (_Submitted, _Leased, _Started, _Completed, _Accepted)
for _kind in (*_LOGGED, ResultLine):
    _kind.keys_ = tuple(name for name in _kind.__struct_fields__ if name not in ("t", "src"))
    _kind.key_set = frozenset(_kind.keys_)
#: The event name of each kind of typed log line.
TAGS: dict[type, str] = {kind: str(kind.__struct_config__.tag) for kind in _LOGGED}
_decode_logged = msgspec.json.Decoder(_Submitted | _Leased | _Started | _Completed | _Accepted)
_decode_result = msgspec.json.Decoder(ResultLine)
#: The typed kinds of event-log lines, in a fixed order.
LOGGED_KINDS: tuple[type[TypedFields], ...] = _LOGGED
#: A block of lines as one JSON array: one call for thousands of lines of the typed kinds.
decode_logged_block = msgspec.json.Decoder(
    list[_Submitted | _Leased | _Started | _Completed | _Accepted]
).decode
decode_results_block = msgspec.json.Decoder(list[ResultLine]).decode
#: One line as a typed kind (raises ``msgspec.DecodeError`` for any other line).
decode_logged = _decode_logged.decode
decode_result = _decode_result.decode
_decode_any = msgspec.json.Decoder()

Decoded = dict[str, Any] | TypedFields


def read_events(path: str | os.PathLike[str]) -> list[Decoded]:
    """The events of one log, in file order: typed where a line fits a kind, else dicts."""
    return _read(path, _decode_logged.decode)


def read_results(path: str | os.PathLike[str]) -> list[Decoded]:
    """The lines of a results output, in file order: typed where a line fits, else dicts."""
    return _read(path, _decode_result.decode)


def _read(path: str | os.PathLike[str], typed: Any) -> list[Decoded]:
    data = Path(path).read_bytes()
    if b"\r" in data:  # text mode would split there too: let the contract's reader judge
        return list(contract.read_log(path))
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or a torn line
    events: list[Decoded] = []
    append = events.append
    for number, line in enumerate(lines, start=1):
        event = decode_line(line, typed, path, number)
        if event is not None:
            append(event)
    return events


def decode_line(
    line: bytes, typed: Any, path: str | os.PathLike[str], number: int
) -> Decoded | None:
    """One line of a log: a typed record where ``typed`` decodes it, else a dict; None for
    a blank or torn line; :class:`CorruptLog` (naming file and line) for anything else."""
    try:
        decoded: Decoded = typed(line)
        return decoded
    except msgspec.DecodeError:  # not one of the kinds (or not JSON at all)
        pass
    try:
        event = _decode_any.decode(line)
    except msgspec.DecodeError:
        event = None
    if type(event) is not dict:
        text = line.decode("utf-8", errors="replace")
        if not text.strip() or text.endswith(TORN_MARK):
            return None
        event = contract.parse_line(text)
        if event is None:
            shown = text.strip()
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise CorruptLog(f"{path}:{number}: not a JSON event object: {shown}")
    return cast(dict[str, Any], event)
