"""Wire frames into the harness's history: hand-outs become leases, result puts reports,
the master's result gets acceptances. Pure: frames in, events (dicts with ``t``/``src``/
``ev``) out, so it is tested on frames captured from a real tutorial app.

What is understood, by the methods of the proxies the scenario names:
- tasks: put by ``put``/``put_nowait``/``append``/``appendleft``/``extend``/``insert``,
  handed out by ``get``/``get_nowait``/``popleft``/``pop`` (the reply's value); items
  filled inside the server are jobs on first hand-out;
- results: a queue or list (``put``, ``append``, ``extend``), taken by the master with
  ``get``/``popleft``/``pop``; or a mapping (``__setitem__``, ``update``, ``setdefault``),
  whose answered write is the result's acceptance (the value is in the master's store);
- no results at all: a job is done when its holder asks for its next task (or calls
  ``task_done`` on a joinable queue).

Job identity: equal items are matched first in, first out (the k-th hand-out of a value is
its k-th put); a result without a key answers a job its process holds, across all that
process's connections (the latest one its value matches, by ``expected``; else the oldest);
a put of a value whose job was lost with its holder is that job handed out again.
"""

from __future__ import annotations

import ast
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from harness import contract
from harness.wire.frames import WireFrame
from harness.wire.identity import Keyer, KeySpec, Skipper, key_text, path_of

__all__ = ["RESULT_SHAPES", "TAKES", "QueueNames", "WireTranslator", "keyer"]

MASTER = contract.MASTER
NO_SKIP = Skipper()
#: Methods that hand a task out (the reply carries the item).
TAKES = frozenset({"get", "get_nowait", "popleft", "pop"})
_QUEUE_PUTS = frozenset({"put", "put_nowait"})
_PUT_ONE = _QUEUE_PUTS | {"append", "appendleft"}
_PUT_MANY = frozenset({"extend", "extendleft"})
_MAPPING_WRITES = frozenset({"__setitem__", "update", "setdefault"})
ResultShape = Literal["queue", "list", "mapping"]
RESULT_SHAPES: tuple[ResultShape, ...] = ("queue", "list", "mapping")
_IMPLIED = "asked_for_next"
_TASK_DONE = "task_done"


def keyer(spec: KeySpec | Keyer | None) -> Keyer | None:
    """A key spec from a scenario as a :class:`Keyer` (None stays None)."""
    if spec is None or isinstance(spec, Keyer):
        return spec
    return Keyer(path_of(spec), spec=repr(spec))


@dataclass(frozen=True, slots=True)
class QueueNames:
    """Which registered typeids hold the tasks and the results, and how items name jobs.

    ``job_key``: what names a task item's job (None: the item itself); ``result_key``: the
    same for a result (for a mapping, read on its key; None: a queue's result answers the
    oldest job its process holds, a mapping's key is the job's key); ``results`` None: the
    app has no results to see; ``take``: the methods that hand tasks out; ``skip``: control
    items that are not jobs; ``batch_size``: jobs grouped by put order.
    """

    tasks: str
    results: str | None
    job_key: Any = None  # KeySpec | Keyer | None, a Keyer after __post_init__
    result_key: Any = None
    batch_size: int | None = None
    master_route: str = MASTER
    take: frozenset[str] = TAKES
    results_as: ResultShape | None = None
    skip: Skipper = NO_SKIP
    #: Routes whose task puts are submissions (the master's, a producer's).
    submitters: frozenset[str] = frozenset()
    #: Whether a result answers a task item (from the scenario's ``expected``): a result
    #: without a key answers the oldest job its process holds that it matches.
    matches: Callable[[Any, Any], bool] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "job_key", keyer(self.job_key) or Keyer())
        object.__setattr__(self, "result_key", keyer(self.result_key))
        object.__setattr__(self, "submitters", self.submitters | {self.master_route})


@dataclass(slots=True)
class _Report:
    job: int
    worker: str
    attempt: int
    value: Any
    stored: bool = False
    taken: bool = False


@dataclass(slots=True)
class _Pending:
    """What is known of a result write until the app answers it."""

    event: dict[str, Any]
    accept: dict[str, Any] | None = None  # a mapping write: accepted once answered


@dataclass(slots=True)
class WireTranslator:
    """Turns frames (fed in the order the relays read them) into history events."""

    names: QueueNames
    typeids: dict[str, str] = field(default_factory=dict)  # server object id -> typeid
    key_of: dict[int, str] = field(default_factory=dict)  # job id -> its key
    item_of: dict[int, Any] = field(default_factory=dict)  # job id -> its task item
    instances: dict[str, list[int]] = field(default_factory=dict)  # key -> jobs, put order
    queued: dict[str, deque[int]] = field(default_factory=dict)  # key -> put, not handed out
    early: dict[str, deque[int]] = field(default_factory=dict)  # key -> handed out, put unseen
    lost: dict[str, deque[int]] = field(default_factory=dict)  # key -> lost with a holder
    reported: set[int] = field(default_factory=set)
    reported_by: dict[str, list[int]] = field(default_factory=dict)  # route -> jobs answered
    dropped: dict[str, list[int]] = field(default_factory=dict)  # route -> jobs it lost
    batches_open: set[int] = field(default_factory=set)
    accepted: dict[int, int] = field(default_factory=dict)  # job -> acceptances
    attempts: dict[int, int] = field(default_factory=dict)
    #: route -> (job, connection) in hand-out order: what each process holds.
    held: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    reports: dict[str, list[_Report]] = field(default_factory=dict)  # match key -> puts
    joined: set[str] = field(default_factory=set)
    #: A result put waits for the app's answer before it becomes a report: a put that the
    #: network swallowed must not read as one the master failed to take.
    unanswered: dict[tuple[str, int], list[_Pending]] = field(default_factory=dict)
    leases: int = 0
    stopped: bool = False

    def feed(self, frame: WireFrame) -> list[dict[str, Any]]:
        if frame.kind == "welcome" and frame.flow == "downstream":
            return self._welcome(frame)
        if frame.kind == "failure" and frame.flow == "downstream":
            peer = f"{frame.route}#{frame.connection}"
            return [
                self._event(frame, MASTER, contract.AUTH_REJECTED, route=frame.route, peer=peer)
            ]
        if frame.kind == "end":
            return self._closed(frame)
        if frame.kind == "request":
            return self._request(frame)
        if frame.kind == "reply":
            return self._reply(frame)
        return []

    def unseen_typeids(self) -> list[dict[str, Any]]:
        """For the end of a run: each typeid the scenario names that the app never created
        (a typo, or proxies made off the wire), with the ones it did create."""
        created = sorted(set(self.typeids.values()))
        named = {"tasks": self.names.tasks, "results": self.names.results}
        return [
            {"role": role, "typeid": typeid, "created": created}
            for role, typeid in named.items()
            if typeid is not None and typeid not in created
        ]

    # -- frames ------------------------------------------------------------------------------

    def _welcome(self, frame: WireFrame) -> list[dict[str, Any]]:
        route = frame.route
        if route in self.names.submitters or route in self.joined:
            return []
        self.joined.add(route)
        return [self._event(frame, MASTER, contract.WORKER_JOINED, worker=route)]

    def _closed(self, frame: WireFrame) -> list[dict[str, Any]]:
        """A side of a worker's connection closed while it held jobs: they are gone with it
        (nothing in a BaseManager app puts them back)."""
        conn = (frame.route, frame.connection)
        events = [{**p.event, "unanswered": True} for p in self.unanswered.pop(conn, [])]
        holding = self.held.get(frame.route, [])
        gone = [job for job, connection in holding if connection == frame.connection]
        if not gone or frame.route in self.names.submitters:
            return events
        self.held[frame.route] = [h for h in holding if h[1] != frame.connection]
        for job in gone:
            self.lost.setdefault(self.key_of[job], deque()).append(job)
        self.dropped.setdefault(frame.route, []).extend(gone)
        by = "worker" if frame.flow == "upstream" else "app"
        event = self._event(frame, MASTER, contract.WORKER_LOST, worker=frame.route, jobs=gone)
        return [*events, {**event, "closed_by": by}]

    def _request(self, frame: WireFrame) -> list[dict[str, Any]]:
        method, typeid = frame.method, self.typeids.get(frame.ident or "")
        if method == "shutdown" and frame.ident is None:
            self.stopped = True
            return [self._event(frame, MASTER, contract.MASTER_STOPPED, route=frame.route)]
        if method is None or typeid is None:
            return []
        names = self.names
        if typeid == names.tasks:
            if frame.route in names.submitters:
                return self._submit(frame, _put_items(method, frame.args))
            if names.results is None and method in names.take:
                return self._done_by_asking(frame)
            if names.results is None and method == "task_done":
                return self._done_by_asking(frame, _TASK_DONE, oldest=True)
            return []
        if typeid == names.results:
            return self._report(frame, method)
        return []

    def _reply(self, frame: WireFrame) -> list[dict[str, Any]]:
        method = frame.method
        if method == "create" and frame.reply_kind == "#RETURN":
            result, args = frame.result, frame.args
            if isinstance(result, list) and result and isinstance(result[0], str) and args:
                self.typeids[result[0]] = str(args[0])
            return []
        typeid = self.typeids.get(frame.ident or "")
        if typeid is None or method is None:
            return []
        names = self.names
        if typeid == names.results and frame.route not in names.submitters:
            waiting = self.unanswered.pop((frame.route, frame.connection), [])
            if frame.reply_kind != "#RETURN":
                return [{**p.event, "refused": frame.reply_kind} for p in waiting]
            return [event for p in waiting for event in self._answered(frame, p)]
        if frame.reply_kind != "#RETURN":
            return []
        if typeid == names.tasks and method in names.take:  # the master's own takes too
            return self._lease(frame, frame.result)
        if typeid == names.results and method in TAKES and frame.route in names.submitters:
            return self._accept(frame, frame.result)
        return []

    # -- the job's life ----------------------------------------------------------------------

    def _new_job(self, frame: WireFrame, key: str, item: Any) -> tuple[int, list[dict[str, Any]]]:
        job = len(self.key_of)
        self.key_of[job] = key
        self.item_of[job] = item
        self.instances.setdefault(key, []).append(job)
        fields: dict[str, Any] = {"job": job, "task": self.names.tasks, "args": [item], "key": key}
        events = []
        size = self.names.batch_size
        if size:
            batch = fields["batch"] = job // size
            if batch not in self.batches_open:
                self.batches_open.add(batch)
                events.append(self._event(frame, MASTER, contract.BATCH_OPENED, batch=batch))
        events.insert(0, self._event(frame, MASTER, contract.JOB_SUBMITTED, **fields))
        return job, events

    def _unkeyed(self, frame: WireFrame, item: Any) -> dict[str, Any]:
        return self._event(
            frame,
            MASTER,
            contract.UNKEYED_ITEM,
            item=item,
            route=frame.route,
            key=self.names.job_key.spec,
        )

    def _submit(self, frame: WireFrame, items: list[Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for item in items:
            if self.names.skip(item):
                continue
            key = self.names.job_key(item)
            if key is None:
                events.append(self._unkeyed(frame, item))
                continue
            early, lost = self.early.get(key), self.lost.get(key)
            if early:  # handed out before this put was read (another relay's thread)
                early.popleft()
            elif lost:  # the app puts a lost job back: the same job, handed out again
                self.queued.setdefault(key, deque()).append(lost.popleft())
            else:
                job, made = self._new_job(frame, key, item)
                self.queued.setdefault(key, deque()).append(job)
                events.extend(made)
        return events

    def _lease(self, frame: WireFrame, item: Any) -> list[dict[str, Any]]:
        if self.names.skip(item):
            return []
        key = self.names.job_key(item)
        if key is None:
            return [self._unkeyed(frame, item)]
        events: list[dict[str, Any]] = []
        queued = self.queued.get(key)
        if queued:
            job = queued.popleft()
        else:  # filled inside the server, or its put not read yet: a job on sight
            job, events = self._new_job(frame, key, item)
            self.early.setdefault(key, deque()).append(job)
        attempt = self.attempts[job] = self.attempts.get(job, 0) + 1
        self.leases += 1
        fields: dict[str, Any] = {
            "job": job,
            "attempt": attempt,
            "lease": self.leases,
            "worker": frame.route,
            "connection": frame.connection,
        }
        if frame.client_gone:
            # The caller died while its get was blocked: the server thread it left behind
            # took the item and wrote it to a closed connection.
            fields["client_gone"] = True
            self.lost.setdefault(key, deque()).append(job)
            events.append(self._event(frame, MASTER, contract.LEASED, **fields))
            events.append(
                self._event(frame, MASTER, contract.WORKER_LOST, worker=frame.route, jobs=[job])
            )
            return events
        self.held.setdefault(frame.route, []).append((job, frame.connection))
        events.append(self._event(frame, MASTER, contract.LEASED, **fields))
        return events

    def _done_by_asking(
        self, frame: WireFrame, how: str = _IMPLIED, oldest: bool = False
    ) -> list[dict[str, Any]]:
        """No results to see: a worker asking for its next task has done what it held (a
        ``task_done`` of a joinable queue: the oldest job it holds)."""
        holding = self.held.get(frame.route, [])
        done, self.held[frame.route] = (holding[:1], holding[1:]) if oldest else (holding, [])
        events: list[dict[str, Any]] = []
        for job, _connection in done:
            attempt = self.attempts.get(job, 0)
            fields = {"job": job, "attempt": attempt, "ok": True, "value": None}
            events.append(
                self._event(frame, frame.route, contract.COMPLETED, **fields, implied=how)
            )
            events.append(self._accepted(frame, {**fields, "worker": frame.route, "implied": how}))
        return events

    def _report(self, frame: WireFrame, method: str) -> list[dict[str, Any]]:
        """A result written by a worker: a put (one item or several) or a mapping write."""
        shape = self.names.results_as
        args = frame.args
        mapping = method in _MAPPING_WRITES
        written: list[tuple[list[str | None], Any]] = []  # (candidate keys, value)
        if mapping and shape in (None, "mapping"):
            for key, value in _mapping_items(method, args, frame.value):
                written.append((self._mapping_keys(key), value))
        elif method in _PUT_ONE | _PUT_MANY | {"insert"} and shape != "mapping":
            for value in _put_items(method, args):
                written.append(([self._result_key(value)], value))
        else:
            return []
        by_key = mapping or self.names.result_key is not None
        # A mapping or list the master reads in place: the answered write is the acceptance
        # (a queue's result is accepted when the master takes it).
        stored = mapping or shape == "list" or (shape is None and method not in _QUEUE_PUTS)
        events: list[dict[str, Any]] = []
        pending: list[_Pending] = []
        for keys, value in written:
            job = self._answered_job(frame.route, keys, by_key, value)
            if job is None:
                events.append(
                    self._event(
                        frame, frame.route, contract.UNMATCHED_RESULT, value=value, how=method
                    )
                )
                continue
            self.reported.add(job)
            attempt = self.attempts.get(job, 0)
            fields: dict[str, Any] = {"job": job, "attempt": attempt, "value": value}
            if self.stopped:
                fields["after_shutdown"] = True
            event = self._event(frame, frame.route, contract.COMPLETED, **fields)
            match = keys[0] if self.names.result_key is not None else key_text(value)
            report = _Report(job, frame.route, attempt, value, stored=stored)
            self.reports.setdefault(match or "", []).append(report)
            if stored:
                accept = {**fields, "worker": frame.route, "ok": True, "via": method}
                pending.append(_Pending(event, accept))
            else:
                pending.append(_Pending(event))
        if pending:
            # One answer per request: a write still waiting on this connection when the next
            # one comes was answered off our sight.
            for earlier in self.unanswered.pop((frame.route, frame.connection), []):
                events.extend(self._answered(frame, earlier))
            self.unanswered[(frame.route, frame.connection)] = pending
        return events

    def _answered(self, frame: WireFrame, pending: _Pending) -> list[dict[str, Any]]:
        if pending.accept is None:
            return [pending.event]
        return [pending.event, self._accepted(frame, pending.accept)]

    def _result_key(self, value: Any) -> str | None:
        result_key = self.names.result_key
        return None if result_key is None else result_key(value)

    def _mapping_keys(self, key: Any) -> list[str | None]:
        """The keys a mapping's key may name a job by (a text key of ``update`` may be the
        repr of a number or tuple, rendered as text)."""
        result_key = self.names.result_key
        if result_key is not None:
            return [result_key(key)]
        keys: list[str | None] = [key_text(key)]
        if isinstance(key, str):
            with contextlib.suppress(ValueError, SyntaxError, TypeError, RecursionError):
                keys.append(key_text(ast.literal_eval(key)))
        return keys

    def _answered_job(
        self, route: str, keys: list[str | None], by_key: bool, value: Any
    ) -> int | None:
        """The job a result answers: by key, the one this process holds, else the oldest
        not yet reported. Without a key: the latest job this process holds that the value
        matches (by ``expected``: a result left out leaves its own job held, whatever came
        after), else one it answered already (a result put twice), else the oldest it
        holds (a worker that keeps several puts them in order)."""
        holding = self.held.get(route, [])
        if by_key:
            for key in keys:
                if key is None or key not in self.instances:
                    continue
                same = self.instances[key]
                job = next((j for j, _ in holding if j in same), None)
                if job is None:
                    job = next((j for j in same if j not in self.reported), same[-1])
                return self._release(route, job)
            return None
        dropped = self.dropped.get(route, [])  # lost with a connection: a late put
        matches = self.names.matches
        if matches is not None:
            for pool in ([j for j, _ in holding], dropped, self.reported_by.get(route, [])):
                fits = [j for j in pool if _fits(matches, self, j, value)]
                if fits:
                    return self._release(route, fits[-1])
        if holding:
            return self._release(route, holding[0][0])
        return self._release(route, dropped[-1]) if dropped else None

    def _release(self, route: str, job: int) -> int:
        """``route`` answered ``job``: it holds it no more."""
        self.held[route] = [h for h in self.held.get(route, []) if h[0] != job]
        if job in self.dropped.get(route, ()):
            self.dropped[route].remove(job)
        self.reported_by.setdefault(route, []).append(job)
        return job

    def _accept(self, frame: WireFrame, item: Any) -> list[dict[str, Any]]:
        report = self._match(item)
        if report is None:
            return [self._event(frame, MASTER, contract.UNMATCHED_RESULT, value=item, how="take")]
        if report.stored:  # accepted when it was written: the master reads its own store
            return []
        report.taken = True
        fields = {
            "job": report.job,
            "attempt": report.attempt,
            "worker": report.worker,
            "value": item,
            "ok": True,
        }
        return [self._accepted(frame, fields), *self._batch_closed(frame, report.job)]

    def _accepted(self, frame: WireFrame, fields: dict[str, Any]) -> dict[str, Any]:
        job = fields["job"]
        self.accepted[job] = self.accepted.get(job, 0) + 1
        return self._event(frame, MASTER, contract.RESULT_ACCEPTED, **fields)

    def _batch_closed(self, frame: WireFrame, job: int) -> list[dict[str, Any]]:
        size = self.names.batch_size
        if not size or self.accepted[job] != 1:
            return []
        batch = job // size
        members = range(batch * size, (batch + 1) * size)  # job ids are put order
        if len(self.key_of) >= members.stop and all(m in self.accepted for m in members):
            return [self._event(frame, MASTER, contract.BATCH_CLOSED, batch=batch)]
        return []

    def _match(self, item: Any) -> _Report | None:
        """The report a result the master took came from: by ``result_key``, else the
        oldest untaken report of an equal value."""
        match = self._result_key(item) if self.names.result_key is not None else key_text(item)
        candidates = self.reports.get(match or "", [])
        untaken = next((r for r in candidates if not r.taken), None)
        return untaken if untaken is not None else next(iter(candidates), None)

    @staticmethod
    def _event(frame: WireFrame, src: str, ev: str, **fields: Any) -> dict[str, Any]:
        return {"t": frame.t, "src": src, "ev": ev, **fields}


def _fits(
    matches: Callable[[Any, Any], bool], translator: WireTranslator, job: int, value: Any
) -> bool:
    try:
        return bool(matches(translator.item_of.get(job), value))
    except Exception:  # the user's function: an item it cannot judge matches nothing
        return False


def _put_items(method: str, args: list[Any]) -> list[Any]:
    """The items a put-like call adds to a queue, deque or list."""
    if method in _PUT_ONE and args:
        return [args[0]]
    if method in _PUT_MANY and args and isinstance(args[0], list):
        return list(args[0])
    if method == "insert" and len(args) >= 2:
        return [args[1]]
    return []


def _mapping_items(method: str, args: list[Any], request: Any) -> list[tuple[Any, Any]]:
    """The (key, value) pairs a mapping write stores."""
    if method in ("__setitem__", "setdefault") and len(args) >= 2:
        return [(args[0], args[1])]
    if method != "update":
        return []
    pairs: list[tuple[Any, Any]] = []
    if args and isinstance(args[0], dict):
        pairs.extend((k, v) for k, v in args[0].items() if not k.startswith("$"))
    elif args and isinstance(args[0], list):  # update([(k, v), ...])
        pairs.extend((p[0], p[1]) for p in args[0] if isinstance(p, list) and len(p) == 2)
    kwargs = request[3] if isinstance(request, list) and len(request) == 4 else None
    if isinstance(kwargs, dict):
        pairs.extend(kwargs.items())
    return pairs
