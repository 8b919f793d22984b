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
import pickle
import struct
import subprocess
import sys
import tempfile
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from itertools import compress, count, repeat
from operator import add, attrgetter, itemgetter
from typing import Any, cast

import msgspec

from harness import contract
from harness.contract import CorruptLog
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
    "PARALLEL_BYTES",
    "Columns",
    "HistoryError",
    "KindTable",
    "Names",
    "add_all",
    "bucketed",
    "read_run",
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
_LINE_COLUMNS = ("key", "t", "job", "row")  # a value per event
_ROWS_KEPT = 4  # how many indexes' rows ``values`` keeps
_SPANS_KEPT = 8  # how many indexes ``values`` knows to be a span of rows (it keeps them)
_EVENTS_SUFFIX = contract.EVENTS_GLOB.removeprefix("*")
_KINDS: tuple[type[TypedFields], ...] = (*LOGGED_KINDS, ResultLine)
_get_t, _get_src, _get_job = attrgetter("t"), attrgetter("src"), attrgetter("job")
#: Logs of at least this many bytes in all (a soak run's) are read by two processes: this
#: one reads the first files, a reader process the rest (about half the bytes), at once.
PARALLEL_BYTES = 96 << 20
#: The time a reader process gives the results output's lines: the time of the last logged
#: event is known only when every log is read. A NaN of its own bits: no JSON reader makes
#: it (``NaN`` reads as the usual one), so a line stating its own time is never taken for it.
_LATER_BITS = struct.pack("<Q", 0x7FF8_0000_0D15_7A00)
_RESULTS_T_LATER: float = struct.unpack("<d", _LATER_BITS)[0]


class Names(dict[str, int]):
    """Strings as small ints, numbered in the order they first appear."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __missing__(self, name: str) -> int:
        code = self[name] = len(self.names)
        self.names.append(sys.intern(name))
        return code

    @classmethod
    def known(cls, paths: Iterable[str | os.PathLike[str]]) -> Names:
        """The contract's event names and the sources the log files are named after,
        numbered as every process numbers them (so two readers' codes agree)."""
        names = cls()
        events = sorted(contract.SYSTEM_EVENTS | contract.HARNESS_EVENTS)
        for name in (*TAGS.values(), *events, contract.RESULTS):
            names[name]
        for path in paths:
            names[_source_of(path)]
        return names


def _source_of(path: str | os.PathLike[str]) -> str:
    """The process a log is named after (``worker-1.events.jsonl``: worker-1)."""
    return os.path.basename(path).removesuffix(_EVENTS_SUFFIX)


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

    def append_table(self, other: KindTable) -> None:
        """The rows of ``other`` (of the same kind) after these."""
        for index, theirs in enumerate(other.columns):
            column = self.columns[index]
            if type(column) is array and type(theirs) is not array:
                column = self.columns[index] = self.column[self.names[index]] = list(column)
            column.extend(theirs)


class Columns:
    """Events in columns, in the order they are added; ``ordered`` sorts them by time.

    An event's name, source and kind (GENERIC, or the index of its KindTable) are one small
    int, its ``key``: a history has few such triples, and one column moves faster than three.
    """

    def __init__(self) -> None:
        self.names = Names()
        self.t = array("d")
        self.key = array("I")  # the event's (name, source, kind), by ``key_of``
        self.job = array("q")
        self.row = array("q")  # its row in its kind's table, or its index in ``bodies``
        self.key_of: dict[tuple[int, int, int], int] = {}
        self.key_ev: list[int] = []  # each key's event name (its code in ``names``)
        self.key_src: list[int] = []  # each key's source
        self.key_kind: list[int] = []  # each key's kind
        # The lines of events with their own mapping (GENERIC), while reading (``append``
        # moves only these when two readers' columns agree on the rest); ``ordered`` drops it.
        self.odd = array("q")
        self.bodies: list[Mapping[str, Any]] = []
        self.tables = [KindTable(kind) for kind in _KINDS]
        self.big_jobs: dict[int, int] = {}  # position -> a job id past 64 bits
        # The last few indexes ``values`` was given, each with its one kind and its rows
        # (an int when they are that row and the ones after it, in order).
        self._rows_of: dict[int, tuple[array[int], int, array[int] | int]] = {}
        # The lines of each key, in order, when a helper found them (``ordered``).
        self.runs: dict[int, array[int]] | None = None
        self._table_of = {kind: index for index, kind in enumerate(_KINDS)}

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def prepared(cls, paths: Iterable[str | os.PathLike[str]]) -> Columns:
        """Empty columns with the names and keys a run's logs are expected to have (the
        typed kinds from each log's source), numbered as every process numbers them, so
        the columns of two readers agree but for odd events."""
        columns = cls()
        columns.names = names = Names.known(paths)
        for path in paths:
            src = names[_source_of(path)]
            for kind in LOGGED_KINDS:
                columns.key_for(names[TAGS[kind]], src, columns._table_of[kind])
        results = columns._table_of[ResultLine]
        columns.key_for(names[contract.RESULT_OUTPUT], names[contract.RESULTS], results)
        return columns

    def key_for(self, ev: int, src: int, kind: int) -> int:
        """The key of an event name, source and kind (numbered on first sight)."""
        key = self.key_of.get((ev, src, kind))
        if key is None:
            key = self.key_of[ev, src, kind] = len(self.key_ev)
            self.key_ev.append(ev)
            self.key_src.append(src)
            self.key_kind.append(kind)
        return key

    def ev_code(self, line: int) -> int:
        return self.key_ev[self.key[line]]

    def src_code(self, line: int) -> int:
        return self.key_src[self.key[line]]

    def keys_where(self, ev: set[int] | None = None, src: int | None = None) -> set[int]:
        """The keys of the given event names (codes) and source."""
        return {
            key
            for key, (e, s) in enumerate(zip(self.key_ev, self.key_src, strict=True))
            if (ev is None or e in ev) and (src is None or s == src)
        }

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
        self.odd.append(len(self.key))
        self.key.append(self.key_for(names[ev], names[src], GENERIC))
        self.job.append(code)
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
        types = list(map(type, records))
        one = types.count(types[0]) == size  # one kind (most blocks of a log)
        kinds = (
            [self._table_of[types[0]]] * size
            if one
            else list(map(self._table_of.__getitem__, types))
        )
        key_for, table_of = self.key_for, self._table_of
        # ``fromlist`` of a list, and ``array * size`` for one value: twice the speed of
        # ``extend`` by an iterator (a soak run's history is millions of lines).
        if results_t is None:
            self.t.fromlist(list(map(_get_t, records)))
            srcs = list(map(_get_src, records))
            if srcs.count(srcs[0]) == size:  # one source (a log is one process's)
                src = names[srcs[0]]
                key_of = {
                    kind: key_for(names[TAGS[kind]], src, table_of[kind]) for kind in set(types)
                }
                if one:
                    self.key.extend(array(self.key.typecode, (key_of[types[0]],)) * size)
                else:
                    self.key.fromlist(list(map(key_of.__getitem__, types)))
            else:
                self.key.fromlist(
                    [
                        key_for(names[TAGS[kind]], names[src], table_of[kind])
                        for kind, src in zip(types, srcs, strict=True)
                    ]
                )
        else:
            self.t.extend(array("d", (results_t,)) * size)
            key = key_for(names[contract.RESULT_OUTPUT], names[contract.RESULTS], kinds[0])
            self.key.extend(array(self.key.typecode, (key,)) * size)
        self.job.fromlist(jobs)
        tables = self.tables
        if one:
            table = tables[kinds[0]]
            self.row.fromlist(list(range(len(table), len(table) + size)))
            table.extend(records)
            return
        next_row = [count(len(table)) for table in tables]  # each kind's rows, in turn
        self.row.fromlist(list(map(next, map(next_row.__getitem__, kinds))))
        for index in set(kinds):
            tables[index].extend(list(compress(records, map(index.__eq__, kinds))))

    def _add_record(self, record: Any, results_t: float | None) -> None:
        fields = dict(record.items())
        if results_t is None:
            self.add(record.t, record.src, TAGS[type(record)], fields)
        else:
            self.add(results_t, contract.RESULTS, contract.RESULT_OUTPUT, fields)

    def mark(self) -> tuple[int, int, list[int]]:
        self._rows_of = {}
        return len(self.t), len(self.bodies), [len(table) for table in self.tables]

    def rollback(self, mark: tuple[int, int, list[int]]) -> None:
        """Forget every event added since ``mark``."""
        self._rows_of = {}
        events, bodies, rows = mark
        for column in (self.t, self.key, self.job, self.row):
            del column[events:]
        del self.odd[bisect_left(self.odd, events) :]
        del self.bodies[bodies:]
        for table, size in zip(self.tables, rows, strict=True):
            table.truncate(size)
        for position in [p for p in self.big_jobs if p >= events]:
            del self.big_jobs[position]

    def append(self, other: Columns) -> None:
        """The events of ``other`` after these (``other`` is spent)."""
        self._rows_of = {}
        base = len(self.t)
        codes = list(map(self.names.__getitem__, other.names.names))
        ours = [
            self.key_for(codes[ev], codes[src], kind)
            for ev, src, kind in zip(other.key_ev, other.key_src, other.key_kind, strict=True)
        ]
        # where each kind's rows (and the bodies, at index GENERIC) of ``other`` now begin
        offsets = [len(table) for table in self.tables] + [len(self.bodies)]
        shift = [offsets[kind] for kind in other.key_kind]  # by their key
        keys, rows = other.key, other.row
        typed = [  # the keys of kinds they have rows of
            key
            for key, kind in enumerate(other.key_kind)
            if kind != GENERIC and len(other.tables[kind])
        ]
        if any(shift[key] or ours[key] != key for key in typed):  # one pass over them all
            rows = array("q", map(add, rows, map(shift.__getitem__, keys)))
            keys = array("I", map(ours.__getitem__, keys))
        else:  # only odd events move (a few): in place
            for line in other.odd:
                key = keys[line]
                rows[line] += shift[key]
                keys[line] = ours[key]
        self.odd.extend(map(base.__add__, other.odd))
        self.t.extend(other.t)
        self.key.extend(keys)
        self.job.extend(other.job)
        self.row.extend(rows)
        self.bodies.extend(other.bodies)
        for table, theirs in zip(self.tables, other.tables, strict=True):
            table.append_table(theirs)
        self.big_jobs.update({base + line: job for line, job in other.big_jobs.items()})

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
        keys, rows, bodies, jobs = self.key, self.row, self.bodies, self.job
        key_kind = self.key_kind
        columns = [table.column.get(name) for table in self.tables]
        if not isinstance(lines, Sequence):
            lines = list(lines)
        known = self._rows_of.get(id(lines))
        if known is not None and known[0] is lines:
            kept, at = columns[known[1]], known[2]
            if kept is not None:  # the rows are known
                if isinstance(at, int):  # a span of rows: a slice, in C
                    part = kept[at : at + len(lines)]
                    return part.tolist() if type(part) is array else part
                return list(map(kept.__getitem__, at))
        present = set(map(key_kind.__getitem__, set(map(keys.__getitem__, lines))))
        if len(present) == 1:  # one typed kind (a soak run's common case): read in C
            only = present.pop()
            column = None if only == GENERIC else columns[only]
            if column is None and only != GENERIC:  # a kind without that field
                return (
                    list(map(jobs.__getitem__, lines)) if name == "job" else [default] * len(lines)
                )
            if column is not None:
                at = array("q", map(rows.__getitem__, lines))
                if type(lines) is array:  # an index (never changed): its rows are kept
                    self._keep_rows(lines, only, at)
                return list(map(column.__getitem__, at))
        found: list[Any] = []
        append = found.append
        for line in lines:
            kind = key_kind[keys[line]]
            if kind == GENERIC:
                append(bodies[rows[line]].get(name, default))
                continue
            column = columns[kind]
            if column is not None:
                append(column[rows[line]])
            else:
                append(jobs[line] if name == "job" else default)
        return found

    def _keep_rows(self, lines: array[int], kind: int, at: array[int]) -> None:
        """Remember the rows of an index: as its first row when they are a span (as a soak
        run's one-source kinds are: read in order, sorted in order), else the rows."""
        first = at[0] if at else 0
        span = at == array("q", range(first, first + len(at)))
        kept = [
            index for index, (_, _, rows) in self._rows_of.items() if (type(rows) is int) == span
        ]
        if len(kept) >= (_SPANS_KEPT if span else _ROWS_KEPT):
            del self._rows_of[kept[0]]
        self._rows_of[id(lines)] = (lines, kind, first if span else at)

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
            for number, result in enumerate(read_results(path), start=1):
                if type(result) is dict:
                    self.add_decoded(result, f"{path}: event {number}", results_t)
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
        t, ev = event.get("t"), event.get("ev")
        if (type(t) is not float and type(t) is not int) or type(ev) is not str:
            t = time_of(event, where)  # raises if bad
        src = event.pop("src", "?")
        del event["t"], event["ev"]
        self.add(float(t), src if type(src) is str else str(src), str(ev), event)

    # -- ordering ------------------------------------------------------------------------

    def ordered(self, settled: int | None = None, helper: _Reader | None = None) -> Columns:
        """The same events sorted by time (a stable sort: ties keep the order added); these
        columns are emptied as the sorted ones are made, so only one is held twice.

        ``settled``: the events from there on are known to come last, in order (the results
        output, at the time of the last logged event): only those before it are sorted.
        ``helper``: a reader process still waiting, which finds the lines of each key
        (``runs``) while this one sorts the other columns.
        """
        size = len(self.t) if settled is None else settled
        order = sorted(range(size), key=self.t.__getitem__)  # of those before
        # One getter moves every column: C-level indexing, a third quicker than a map.
        gather = itemgetter(*order) if size > 1 else _Picker(order)
        if not self.big_jobs:
            del order  # the getter holds the same ints: not the list as well
        done = Columns.__new__(Columns)
        done.names, done.bodies, done.tables = self.names, self.bodies, self.tables
        done._table_of = self._table_of
        done.key_of, done.key_ev, done.key_src = self.key_of, self.key_ev, self.key_src
        done.key_kind, done.odd = self.key_kind, array("q")
        done._rows_of, self._rows_of = {}, {}
        done.runs = None
        for name in _LINE_COLUMNS:  # the key first: the helper needs it
            column: array[Any] = getattr(self, name)
            moved = array(column.typecode, gather(column))
            moved.extend(column[size:])  # the settled ones: in their places already
            setattr(done, name, moved)
            setattr(self, name, array(column.typecode))  # one column's memory at a time
            del column
            if name == "key" and helper is not None:
                helper = helper if helper.ask_runs(done.key) else None
        del gather
        if helper is not None:
            done.runs = helper.runs()
        if self.big_jobs:
            position = {old: new for new, old in enumerate(order) if old in self.big_jobs}
            position.update((old, old) for old in self.big_jobs if old >= size)
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
        key, row = self.key[line], self.row[line]
        kind = self.key_kind[key]
        if kind == GENERIC:
            return self.bodies[row]
        record: Any = self.tables[kind].record(
            row, self.t[line], self.names.names[self.key_src[key]], self.job[line]
        )
        return cast(Mapping[str, Any], record)  # a TypedFields is registered as a Mapping

    def field(self, line: int, name: str, default: Any = None) -> Any:
        """One field of one event, without building the event."""
        kind, row = self.key_kind[self.key[line]], self.row[line]
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


def read_run(
    paths: Sequence[str | os.PathLike[str]],
    results_path: str | os.PathLike[str] | None = None,
    *,
    parallel_bytes: int = PARALLEL_BYTES,
) -> tuple[Columns, int | None, _Reader | None]:
    """The events of every log in ``paths`` in that order, then the results output's lines
    at the time of the last logged event; and where the results begin when all of them
    have that time (they are last, in order: only what comes before needs sorting).

    Logs of ``parallel_bytes`` or more in all are read by two processes at once: this one
    reads the first files, a reader process the rest; the columns are the same. That
    process is returned, still waiting to help ``ordered`` (the caller closes it).
    """
    files = [*paths, *([] if results_path is None else [results_path])]
    split = _split(files, parallel_bytes)
    reader = None
    if split is not None:
        try:
            reader = _Reader(files[split:], results_path is not None, paths)
        except OSError:  # no process to be had: this one reads them all
            split = None
    if split is None or reader is None:
        columns = Columns()
        for path in paths:
            columns.read_log(path)
        results_t = max(columns.t, default=0.0)
        if results_path is None:
            return columns, None, None
        settled = len(columns)
        columns.read_log(results_path, results_t=results_t)
        return columns, _settled(columns, settled, results_t), None
    try:
        columns = Columns.prepared(paths)
        for path in files[:split]:
            columns.read_log(path)
        columns.append(reader.columns())
    except BaseException:
        reader.close()
        raise
    if results_path is None:
        return columns, None, reader
    settled = len(columns) - reader.results
    results_t = max(columns.t[:settled], default=0.0)
    given = columns.t[settled:]
    if given.tobytes() == _LATER_BITS * len(given):
        columns.t[settled:] = array("d", repeat(results_t, len(given)))
    else:  # some results line states its own time: each placeholder found by its bits
        later = _LATER_BITS
        columns.t[settled:] = array(
            "d", (results_t if struct.pack("<d", t) == later else t for t in given)
        )
    return columns, _settled(columns, settled, results_t), reader


def _settled(columns: Columns, settled: int, results_t: float) -> int | None:
    """``settled`` if every results line has ``results_t``, else None (sort them all)."""
    if columns.t[settled:].count(results_t) != len(columns) - settled:
        return None
    return settled


def _split(files: Sequence[str | os.PathLike[str]], parallel_bytes: int) -> int | None:
    """Where a reader process's files begin (about half the bytes, at least one file to
    each side), or None when one process reads them all."""
    if len(files) < 2:
        return None
    try:
        sizes = [os.path.getsize(path) for path in files]
    except OSError:  # a missing log: the reading says so, in one process
        return None
    total = sum(sizes)
    if total < parallel_bytes:
        return None
    best, rest = 1, total - sizes[0]
    for split in range(1, len(files)):
        after = sum(sizes[split:])
        if abs(2 * after - total) < abs(2 * rest - total):
            best, rest = split, after
    return best


class _Reader:
    """A process reading logs into columns and handing them over (pickled, on its stdout).
    The last file is the results output when ``results`` is true; ``logs`` are all the
    run's logs (the columns are prepared for them as the other reader's are)."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        results: bool,
        logs: Sequence[str | os.PathLike[str]],
    ) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        given = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, given] if given else [root])}
        # What it says on stderr goes to a file: a pipe nobody reads could fill and stop it.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from harness.columns import _reader_main; _reader_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        assert self._proc.stdin is not None
        told = ([os.fspath(path) for path in paths], results, [os.fspath(log) for log in logs])
        try:
            pickle.dump(told, self._proc.stdin)
            self._proc.stdin.flush()
        except OSError:
            self.close()
            raise
        self.results = 0  # how many of its events are results lines

    def columns(self) -> Columns:
        """The reader's columns (raises as reading them here would have)."""
        assert self._proc.stdout is not None
        load = pickle.Unpickler(self._proc.stdout).load
        try:
            return self._columns(load)
        except (EOFError, pickle.UnpicklingError) as exc:  # it died, or wrote something else
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._stderr.seek(0)
            why = self._stderr.read().decode(errors="replace").strip().splitlines()
            raise RuntimeError(
                f"the log reader process failed (exit {self._proc.returncode}): "
                + (why[-1] if why else repr(exc))
            ) from None

    def _columns(self, load: Any) -> Columns:
        outcome = load()
        if outcome[0] == "error":
            _, kind, message, errno, filename = outcome
            if kind == "OSError":
                raise OSError(errno, message, filename)
            raise (CorruptLog if kind == "CorruptLog" else HistoryError)(message)
        columns = Columns.__new__(Columns)
        columns.names = Names()
        for name in load():
            columns.names[name]
        for name in _LINE_COLUMNS:
            setattr(columns, name, load())
        columns.key_of = {}
        columns.key_ev, columns.key_src, columns.key_kind = [], [], []
        for ev, src, kind in load():
            columns.key_for(ev, src, kind)
        columns.odd = load()
        columns.bodies = load()
        columns.tables = [KindTable(kind) for kind in _KINDS]
        for table in columns.tables:
            table.columns = load()
            table.column = dict(zip(table.names, table.columns, strict=True))
        columns.big_jobs = load()
        columns._table_of = {kind: index for index, kind in enumerate(_KINDS)}
        columns._rows_of, columns.runs = {}, None
        self.results = outcome[1]
        return columns

    def ask_runs(self, keys: array[int]) -> bool:
        """Ask it for the lines of each key of ``keys`` (whether it could be asked)."""
        assert self._proc.stdin is not None
        try:
            pickle.dump(keys, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.close()
        except OSError:  # it is gone: the caller finds them itself
            return False
        return True

    def runs(self) -> dict[int, array[int]] | None:
        """Its answer to ``ask_runs`` (None if it has none)."""
        assert self._proc.stdout is not None
        try:
            runs: dict[int, array[int]] = pickle.load(self._proc.stdout)
        except (EOFError, pickle.UnpicklingError):
            return None
        return runs

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._stderr):
            if stream is not None:
                stream.close()


def _reader_main() -> None:
    """A reader process: reads the logs it is told of and writes their columns out."""
    import gc

    gc.disable()  # millions of fresh objects, none of them garbage
    request = sys.stdin.buffer
    paths, results, logs = pickle.load(request)
    out = sys.stdout.buffer
    columns = Columns.prepared(logs)  # numbered as the other reader numbers them
    try:
        logs = paths[:-1] if results else paths
        for path in logs:
            columns.read_log(path)
        before = len(columns)
        if results:
            columns.read_log(paths[-1], results_t=_RESULTS_T_LATER)
    except OSError as exc:
        pickle.dump(("error", "OSError", exc.strerror, exc.errno, exc.filename), out)
        return
    except (CorruptLog, HistoryError) as exc:
        pickle.dump(("error", type(exc).__name__, str(exc), None, None), out)
        return
    dump = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump
    dump(("columns", len(columns) - before))
    dump(columns.names.names)
    for name in _LINE_COLUMNS:
        dump(getattr(columns, name))
    dump(list(zip(columns.key_ev, columns.key_src, columns.key_kind, strict=True)))
    dump(columns.odd)
    dump(columns.bodies)
    for table in columns.tables:
        dump(table.columns)
    dump(columns.big_jobs)
    out.flush()
    del columns, dump
    try:  # then, the sorted keys: the lines of each
        keys = pickle.load(request)
    except EOFError:  # not asked
        return
    pickle.dump(bucketed(keys), out, protocol=pickle.HIGHEST_PROTOCOL)
    out.flush()


class _Picker:
    """What ``itemgetter(*indexes)`` does for fewer than two indexes, as a tuple."""

    def __init__(self, indexes: Sequence[int]) -> None:
        self.indexes = tuple(indexes)

    def __call__(self, items: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(items[index] for index in self.indexes)


def bucketed(keys: array[int]) -> dict[int, array[int]]:
    """The lines of each key, in order."""
    runs: defaultdict[int, array[int]] = defaultdict(lambda: array("q"))
    for line, key in enumerate(keys):
        runs[key].append(line)
    return dict(runs)


def add_all(columns: Columns, events: Iterable[Mapping[str, Any]]) -> None:
    """Events given as mappings (``t``, ``src``, ``ev`` among their keys), in order."""
    for order, event in enumerate(events):
        t = time_of(event, f"event {order}")
        fields = {key: value for key, value in event.items() if key not in contract.RESERVED_FIELDS}
        columns.add(t, str(event.get("src", "?")), str(event["ev"]), fields)
