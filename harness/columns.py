"""A run's events as columns: a soak run holds millions, and a Python object per event
and per field is most of what it would cost.

Every event has its time, source, name and job in arrays (names as small ints). The
fields of the typed kinds (``logread``) sit in one list per field of their kind (strings
interned, so a worker's name is one object); any other event keeps its dict. Logs are read
a block at a time, thousands of lines per msgspec call; a block with any other line is
read a line at a time, as ``logread`` reads it.
"""

from __future__ import annotations

import os
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from itertools import compress, count, repeat
from operator import attrgetter
from typing import Any, cast

import msgspec

from harness import contract
from harness.logread import (
    LOGGED_KINDS,
    TAGS,
    ResultLine,
    TypedFields,
    decode_line,
    decode_logged,
    decode_logged_block,
    decode_result,
    decode_results_block,
    read_events,
    read_results,
)

__all__ = [
    "GENERIC",
    "JOB_ELSEWHERE",
    "NO_JOB",
    "Columns",
    "HistoryError",
    "KindTable",
    "Names",
    "add_all",
    "time_of",
]

#: The job column of an event that names no job (an int id, never a bool).
NO_JOB = -(2**63)
#: The job column of an event whose int job does not fit 64 bits (kept beside, by line).
JOB_ELSEWHERE = NO_JOB + 1
#: The kind column of an event whose fields are its own mapping (not a typed kind's row).
GENERIC = -1
_JOB_MAX = 2**63 - 1
_BLOCK_BYTES = 1 << 22
_LINES_PER_CALL = 2048
_KINDS: tuple[type[TypedFields], ...] = (*LOGGED_KINDS, ResultLine)
_get_t, _get_src, _get_job = attrgetter("t"), attrgetter("src"), attrgetter("job")


class Names(dict[str, int]):
    """Strings as small ints, numbered in the order they first appear."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __missing__(self, name: str) -> int:
        code = self[name] = len(self.names)
        self.names.append(sys.intern(name))
        return code


class KindTable:
    """The fields of one typed kind, beside the time, source and job: a column per field,
    an array of ints while every value is an int that fits 64 bits (a lease number, a
    square), else a list (strings interned)."""

    def __init__(self, kind: type[TypedFields]) -> None:
        self.kind = kind
        names = kind.__struct_fields__
        self.logged = "t" in names
        self.names = tuple(name for name in names if name not in ("t", "src", "job"))
        self.columns: list[Any] = [array("q") for _ in self.names]  # array or list
        self.column: dict[str, Any] = dict(zip(self.names, self.columns, strict=True))
        self._getters = [attrgetter(name) for name in self.names]

    def __len__(self) -> int:
        return len(self.columns[0])

    def extend(self, records: list[Any]) -> None:
        for index, get in enumerate(self._getters):
            column = self.columns[index]
            values = list(map(get, records))
            if type(column) is array:
                if set(map(type, values)) == {int}:  # exactly ints: no bool among them
                    try:
                        column.extend(array("q", values))
                        continue
                    except OverflowError:  # past 64 bits
                        pass
                column = self.columns[index] = self.column[self.names[index]] = list(column)
            with suppress(TypeError):  # not all strings
                values = list(map(sys.intern, values))  # a worker's name: one object
            column.extend(values)

    def record(self, row: int, t: float, src: str, job: int) -> TypedFields:
        """The typed record of one row, as it was read."""
        values = [column[row] for column in self.columns]
        if self.logged:
            return self.kind(t, src, job, *values)
        return self.kind(job, *values)

    def truncate(self, rows: int) -> None:
        for column in self.columns:
            del column[rows:]


class Columns:
    """Events in columns, in the order they are added; ``ordered`` sorts them by time."""

    def __init__(self) -> None:
        self.names = Names()
        self.t = array("d")
        self.src = array("I")
        self.ev = array("I")
        self.job = array("q")
        self.kind = array("b")  # GENERIC, or the index of the event's KindTable
        self.row = array("q")  # its row there, or its index in ``bodies``
        self.bodies: list[Mapping[str, Any]] = []
        self.tables = [KindTable(kind) for kind in _KINDS]
        self.big_jobs: dict[int, int] = {}  # position -> a job id past 64 bits
        self._table_of = {kind: index for index, kind in enumerate(_KINDS)}

    def __len__(self) -> int:
        return len(self.t)

    # -- adding --------------------------------------------------------------------------

    def add(self, t: float, src: str, ev: str, fields: Mapping[str, Any]) -> None:
        """One event with its own mapping of fields."""
        job = fields.get("job")
        if type(job) is not int:
            code = NO_JOB
        elif JOB_ELSEWHERE < job <= _JOB_MAX:
            code = job
        else:
            code = JOB_ELSEWHERE
            self.big_jobs[len(self.t)] = job
        names = self.names
        self.t.append(t)
        self.src.append(names[src])
        self.ev.append(names[ev])
        self.job.append(code)
        self.kind.append(GENERIC)
        self.row.append(len(self.bodies))
        self.bodies.append(fields)

    def add_typed(self, records: list[Any], results_t: float | None = None) -> None:
        """A block of typed records (``results_t``: of the results output, at that time)."""
        if not records:
            return
        jobs = list(map(_get_job, records))
        if max(jobs) > _JOB_MAX or min(jobs) <= JOB_ELSEWHERE:
            for record in records:  # an id past 64 bits: that record keeps its own fields
                self._add_record(record, results_t)
            return
        names, size = self.names, len(records)
        if results_t is None:
            self.t.extend(map(_get_t, records))
            self.src.extend(map(names.__getitem__, map(_get_src, records)))
            kinds = list(map(self._table_of.__getitem__, map(type, records)))
            self.ev.extend(map(names.__getitem__, map(TAGS.__getitem__, map(type, records))))
        else:
            self.t.extend(repeat(results_t, size))
            self.src.extend(repeat(names[contract.RESULTS], size))
            self.ev.extend(repeat(names[contract.RESULT_OUTPUT], size))
            kinds = [len(_KINDS) - 1] * size
        self.job.extend(jobs)
        self.kind.extend(kinds)
        tables = self.tables
        next_row = [count(len(table)) for table in tables]  # each kind's rows, in turn
        self.row.extend(map(next, map(next_row.__getitem__, kinds)))
        for index in set(kinds):
            tables[index].extend(list(compress(records, map(index.__eq__, kinds))))

    def _add_record(self, record: Any, results_t: float | None) -> None:
        fields = dict(record.items())
        if results_t is None:
            self.add(record.t, record.src, TAGS[type(record)], fields)
        else:
            self.add(results_t, contract.RESULTS, contract.RESULT_OUTPUT, fields)

    def mark(self) -> tuple[int, int, list[int]]:
        return len(self.t), len(self.bodies), [len(table) for table in self.tables]

    def rollback(self, mark: tuple[int, int, list[int]]) -> None:
        """Forget every event added since ``mark``."""
        events, bodies, rows = mark
        for column in (self.t, self.src, self.ev, self.job, self.kind, self.row):
            del column[events:]
        del self.bodies[bodies:]
        for table, size in zip(self.tables, rows, strict=True):
            table.truncate(size)
        for position in [p for p in self.big_jobs if p >= events]:
            del self.big_jobs[position]

    # -- reading logs --------------------------------------------------------------------

    def read_log(self, path: str | os.PathLike[str], results_t: float | None = None) -> None:
        """Add the events of one log (``results_t``: the results output, at that time).

        The same events as ``logread`` reads: a torn last line is skipped, a corrupt one
        raises ``CorruptLog``; a log with a carriage return is read by the contract's reader.
        """
        mark = self.mark()
        block_decode = decode_logged_block if results_t is None else decode_results_block
        line_decode = decode_logged if results_t is None else decode_result
        number = 0
        carry = b""
        with open(path, "rb") as log:
            while block := log.read(_BLOCK_BYTES):
                if b"\r" in block:  # text mode splits there too: let the contract judge
                    self.rollback(mark)
                    self._read_plain(path, results_t)
                    return
                lines = (carry + block).split(b"\n")
                carry = lines.pop()  # the rest of a line the next block ends
                for start in range(0, len(lines), _LINES_PER_CALL):
                    chunk = lines[start : start + _LINES_PER_CALL]
                    self._add_chunk(
                        chunk, number + start, path, block_decode, line_decode, results_t
                    )
                number += len(lines)
        # ``carry`` now holds what follows the last newline: nothing, or a torn line.

    def _add_chunk(
        self,
        chunk: list[bytes],
        before: int,
        path: str | os.PathLike[str],
        block_decode: Any,
        line_decode: Any,
        results_t: float | None,
    ) -> None:
        """Lines ``before + 1`` on: in one call when all are typed, else halved until a line
        stands alone (a few lines of other kinds cost a few calls, not a call per line)."""
        if len(chunk) == 1:
            self._add_line(chunk[0], line_decode, path, before + 1, results_t)
            return
        try:
            records = block_decode(b"[" + b",".join(chunk) + b"]")
        except msgspec.DecodeError:  # a line of another kind, torn or corrupt
            records = None
        if records is not None and len(records) == len(chunk):
            self.add_typed(records, results_t)
            return
        half = len(chunk) // 2
        self._add_chunk(chunk[:half], before, path, block_decode, line_decode, results_t)
        self._add_chunk(chunk[half:], before + half, path, block_decode, line_decode, results_t)

    def values(self, lines: Iterable[int], name: str, default: Any = None) -> list[Any]:
        """One field of many events (as ``field`` gives it for each), in one pass."""
        kinds, rows, bodies, jobs = self.kind, self.row, self.bodies, self.job
        columns = [table.column.get(name) for table in self.tables]
        if not isinstance(lines, Sequence):
            lines = list(lines)
        present = set(map(kinds.__getitem__, lines))
        if len(present) == 1:  # one typed kind (a soak run's common case): read in C
            only = present.pop()
            column = None if only == GENERIC else columns[only]
            if column is not None:
                return list(map(column.__getitem__, map(rows.__getitem__, lines)))
        found: list[Any] = []
        append = found.append
        for line in lines:
            kind = kinds[line]
            if kind == GENERIC:
                append(bodies[rows[line]].get(name, default))
                continue
            column = columns[kind]
            if column is not None:
                append(column[rows[line]])
            else:
                append(jobs[line] if name == "job" else default)
        return found

    def _add_line(
        self,
        line: bytes,
        typed: Any,
        path: str | os.PathLike[str],
        number: int,
        results_t: float | None,
    ) -> None:
        event = decode_line(line, typed, path, number)
        if event is None:
            return
        if type(event) is not dict:
            self.add_typed([event], results_t)
        else:
            self.add_decoded(event, f"{path}: event {number}", results_t)

    def _read_plain(self, path: str | os.PathLike[str], results_t: float | None) -> None:
        if results_t is None:
            for number, event in enumerate(read_events(path), start=1):
                if type(event) is dict:
                    self.add_decoded(event, f"{path}: event {number}", None)
                else:
                    self.add_typed([event])
        else:
            for result in read_results(path):
                if type(result) is dict:
                    self.add_decoded(result, "", results_t)
                else:
                    self.add_typed([result], results_t)

    def add_decoded(self, event: dict[str, Any], where: str, results_t: float | None) -> None:
        """A line decoded as a dict: ``t``, ``src`` and ``ev`` taken out, the rest its fields
        (a results line carries none of them unless it says otherwise)."""
        if results_t is not None:
            if "t" not in event and "src" not in event and "ev" not in event:
                self.add(results_t, contract.RESULTS, contract.RESULT_OUTPUT, event)
                return
            event = {"t": results_t, "src": contract.RESULTS, "ev": contract.RESULT_OUTPUT, **event}
            where = f"event {len(self.t)}"
        t, ev = event.get("t"), event.get("ev")
        if (type(t) is not float and type(t) is not int) or type(ev) is not str:
            t = time_of(event, where)  # raises if bad
        src = event.pop("src", "?")
        del event["t"], event["ev"]
        self.add(float(t), src if type(src) is str else str(src), str(ev), event)

    # -- ordering ------------------------------------------------------------------------

    def ordered(self, settled: int | None = None) -> Columns:
        """The same events sorted by time (a stable sort: ties keep the order added); these
        columns are emptied as the sorted ones are made, so only one is held twice.

        ``settled``: the events from there on are known to come last, in order (the results
        output, at the time of the last logged event): only those before it are sorted.
        """
        size = len(self.t) if settled is None else settled
        order = array("q", sorted(range(size), key=self.t.__getitem__))
        order.extend(range(size, len(self.t)))
        done = Columns.__new__(Columns)
        done.names, done.bodies, done.tables = self.names, self.bodies, self.tables
        done._table_of = self._table_of
        for name in ("t", "src", "ev", "job", "kind", "row"):
            column: array[Any] = getattr(self, name)
            setattr(done, name, array(column.typecode, map(column.__getitem__, order)))
            setattr(self, name, array(column.typecode))  # one column's memory at a time
            del column
        if self.big_jobs:
            position = {old: new for new, old in enumerate(order) if old in self.big_jobs}
            done.big_jobs = {position[old]: job for old, job in self.big_jobs.items()}
        else:
            done.big_jobs = {}
        return done

    # -- reading back --------------------------------------------------------------------

    def job_at(self, line: int) -> int | None:
        job = self.job[line]
        if job == NO_JOB:
            return None
        return self.big_jobs[line] if job == JOB_ELSEWHERE else job

    def fields_at(self, line: int) -> Mapping[str, Any]:
        kind, row = self.kind[line], self.row[line]
        if kind == GENERIC:
            return self.bodies[row]
        record: Any = self.tables[kind].record(
            row, self.t[line], self.names.names[self.src[line]], self.job[line]
        )
        return cast(Mapping[str, Any], record)  # a TypedFields is registered as a Mapping

    def field(self, line: int, name: str, default: Any = None) -> Any:
        """One field of one event, without building the event."""
        kind, row = self.kind[line], self.row[line]
        if kind == GENERIC:
            return self.bodies[row].get(name, default)
        column = self.tables[kind].column.get(name)
        if column is not None:
            return column[row]
        return self.job[line] if name == "job" else default

    def code(self, name: str) -> int | None:
        """The small int of a source or event name (None if no event has it)."""
        return self.names.get(name)


def time_of(event: Mapping[str, Any], where: str) -> float:
    """The event's ``t``; a ValueError naming ``where`` when there is no usable ``t``/``ev``."""
    t = event.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise HistoryError(f"{where}: 't' must be a number of seconds, got {t!r}")
    if not isinstance(event.get("ev"), str):
        raise HistoryError(f"{where}: 'ev' must be an event name, got {event.get('ev')!r}")
    return float(t)


class HistoryError(ValueError):
    """An event that cannot be placed in a history (no numeric ``t``, no ``ev``), or a
    damaged log (a corrupt line before its end)."""


def add_all(columns: Columns, events: Iterable[Mapping[str, Any]]) -> None:
    """Events given as mappings (``t``, ``src``, ``ev`` among their keys), in order."""
    for order, event in enumerate(events):
        t = time_of(event, f"event {order}")
        fields = {key: value for key, value in event.items() if key not in contract.RESERVED_FIELDS}
        columns.add(t, str(event.get("src", "?")), str(event["ev"]), fields)
