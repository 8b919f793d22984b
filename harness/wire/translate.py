"""Wire frames into the harness's history: hand-outs become leases, result puts reports,
the master's result gets acceptances. Pure: frames in, events (dicts with ``t``/``src``/
``ev``) out, so it is tested on frames captured from a real tutorial app.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harness import contract
from harness.wire.frames import WireFrame

__all__ = ["QueueNames", "WireTranslator", "item_key"]

MASTER = contract.MASTER
_GETS = frozenset({"get", "get_nowait"})
_PUTS = frozenset({"put", "put_nowait"})


@dataclass(frozen=True, slots=True)
class QueueNames:
    """Which registered typeids are the task and result queues, and how items name jobs.

    ``job_key``: the attribute of a task item naming its job (None: the item itself);
    ``result_key``: the same for results (None: a result answers the last task its
    connection got); ``batch_size``: jobs grouped by put order.
    """

    tasks: str
    results: str
    job_key: str | None = None
    result_key: str | None = None
    batch_size: int | None = None
    master_route: str = MASTER


def item_key(item: Any, attribute: str | None) -> str | None:
    """The key naming a job: the attribute of a decoded record, or the whole item."""
    if attribute is not None:
        if not isinstance(item, dict) or attribute not in item:
            return None
        item = item[attribute]
    return json.dumps(item, sort_keys=True, separators=(",", ":"))


@dataclass(slots=True)
class _Report:
    job: int
    worker: str
    attempt: int
    value: Any
    taken: bool = False


@dataclass(slots=True)
class WireTranslator:
    """Turns frames (fed in the order the relays read them) into history events."""

    names: QueueNames
    typeids: dict[str, str] = field(default_factory=dict)  # server object id -> typeid
    jobs: dict[str, int] = field(default_factory=dict)  # job key -> job id (put order)
    put_keys: set[str] = field(default_factory=set)  # keys the master was seen to put
    batches_open: set[int] = field(default_factory=set)
    accepted: dict[int, int] = field(default_factory=dict)  # job -> acceptances
    attempts: dict[int, int] = field(default_factory=dict)
    holders: dict[tuple[str, int], list[int]] = field(default_factory=dict)  # conn -> jobs
    last_job: dict[tuple[str, int], int] = field(default_factory=dict)
    reports: dict[Any, list[_Report]] = field(default_factory=dict)  # match key -> puts
    joined: set[str] = field(default_factory=set)
    #: A result put waits for the app's answer before it becomes a report: a put that the
    #: network swallowed must not read as one the master failed to take.
    unanswered: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
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

    # -- frames ------------------------------------------------------------------------------

    def _welcome(self, frame: WireFrame) -> list[dict[str, Any]]:
        route = frame.route
        if route == self.names.master_route or route in self.joined:
            return []
        self.joined.add(route)
        return [self._event(frame, MASTER, contract.WORKER_JOINED, worker=route)]

    def _closed(self, frame: WireFrame) -> list[dict[str, Any]]:
        """A side of a worker's connection closed while it held jobs: they are gone with it
        (nothing in a BaseManager app puts them back)."""
        conn = (frame.route, frame.connection)
        report = self.unanswered.pop(conn, None)
        events = [] if report is None else [{**report, "unanswered": True}]
        held = self.holders.pop(conn, [])
        if not held or frame.route == self.names.master_route:
            return events
        by = "worker" if frame.flow == "upstream" else "app"
        event = self._event(frame, MASTER, contract.WORKER_LOST, worker=frame.route, jobs=held)
        return [*events, {**event, "closed_by": by}]

    def _request(self, frame: WireFrame) -> list[dict[str, Any]]:
        method, typeid = frame.method, self.typeids.get(frame.ident or "")
        if method == "shutdown" and frame.ident is None:
            self.stopped = True
            return [self._event(frame, MASTER, contract.MASTER_STOPPED, route=frame.route)]
        if method not in _PUTS or not frame.args:
            return []
        item = frame.args[0]
        if typeid == self.names.tasks and frame.route == self.names.master_route:
            return self._submit(frame, item)
        if typeid == self.names.results:
            return self._report(frame, item)
        return []

    def _reply(self, frame: WireFrame) -> list[dict[str, Any]]:
        method = frame.method
        if method == "create" and frame.reply_kind == "#RETURN":
            result, args = frame.result, frame.args
            if isinstance(result, list) and result and isinstance(result[0], str) and args:
                self.typeids[result[0]] = str(args[0])
            return []
        typeid = self.typeids.get(frame.ident or "")
        if method in _PUTS and typeid == self.names.results:
            report = self.unanswered.pop((frame.route, frame.connection), None)
            if report is None:
                return []
            answered = frame.reply_kind == "#RETURN"
            return [report if answered else {**report, "refused": frame.reply_kind}]
        if method not in _GETS or frame.reply_kind != "#RETURN":
            return []
        if typeid == self.names.tasks:
            return self._lease(frame, frame.result)
        if typeid == self.names.results and frame.route == self.names.master_route:
            return self._accept(frame, frame.result)
        return []

    # -- the job's life ----------------------------------------------------------------------

    def _job(self, frame: WireFrame, key: str | None) -> tuple[int | None, list[dict[str, Any]]]:
        """The job a key names; a key never put by the master is submitted on sight (the
        master's own calls may be off the wire)."""
        if key is None:
            return None, []
        job = self.jobs.get(key)
        if job is not None:
            return job, []
        return self._new_job(frame, key, None)

    def _new_job(self, frame: WireFrame, key: str, item: Any) -> tuple[int, list[dict[str, Any]]]:
        job = self.jobs[key] = len(self.jobs)
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

    def _submit(self, frame: WireFrame, item: Any) -> list[dict[str, Any]]:
        key = item_key(item, self.names.job_key)
        if key is None:
            return [self._event(frame, MASTER, contract.UNKEYED_ITEM, item=item, route=frame.route)]
        if key in self.jobs and key not in self.put_keys:
            self.put_keys.add(key)  # its lease was read first (another relay's thread)
            return []
        if key in self.jobs:  # the same item put twice: a second job with that key
            key = f"{key}#{len(self.jobs)}"
        self.put_keys.add(key)
        return self._new_job(frame, key, item)[1]

    def _lease(self, frame: WireFrame, item: Any) -> list[dict[str, Any]]:
        job, events = self._job(frame, item_key(item, self.names.job_key))
        if job is None:
            return [self._event(frame, MASTER, contract.UNKEYED_ITEM, item=item, route=frame.route)]
        attempt = self.attempts[job] = self.attempts.get(job, 0) + 1
        self.leases += 1
        conn = (frame.route, frame.connection)
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
            events.append(self._event(frame, MASTER, contract.LEASED, **fields))
            events.append(
                self._event(frame, MASTER, contract.WORKER_LOST, worker=frame.route, jobs=[job])
            )
            return events
        self.holders.setdefault(conn, []).append(job)
        self.last_job[conn] = job
        events.append(self._event(frame, MASTER, contract.LEASED, **fields))
        return events

    def _report(self, frame: WireFrame, item: Any) -> list[dict[str, Any]]:
        conn = (frame.route, frame.connection)
        if self.names.result_key is not None:
            job, events = self._job(frame, item_key(item, self.names.result_key))
        else:
            job, events = self.last_job.get(conn), []
        if job is None:
            return [self._event(frame, frame.route, contract.UNEXPECTED_REPORT, value=item)]
        held = self.holders.get(conn, [])
        if job in held:
            held.remove(job)
        attempt = self.attempts.get(job, 0)
        match = job if self.names.result_key is not None else item_key(item, None)
        self.reports.setdefault(match, []).append(_Report(job, frame.route, attempt, item))
        fields: dict[str, Any] = {"job": job, "attempt": attempt, "value": item}
        if self.stopped:
            fields["after_shutdown"] = True
        self.unanswered[conn] = self._event(frame, frame.route, contract.COMPLETED, **fields)
        return events

    def _accept(self, frame: WireFrame, item: Any) -> list[dict[str, Any]]:
        report = self._match(item)
        if report is None:
            return [self._event(frame, MASTER, contract.UNEXPECTED_REPORT, value=item)]
        report.taken = True
        job = report.job
        self.accepted[job] = self.accepted.get(job, 0) + 1
        events = [
            self._event(
                frame,
                MASTER,
                contract.RESULT_ACCEPTED,
                job=job,
                attempt=report.attempt,
                worker=report.worker,
                value=item,
                ok=True,
            )
        ]
        size = self.names.batch_size
        if size and self.accepted[job] == 1:
            batch = job // size
            members = range(batch * size, (batch + 1) * size)  # job ids are put order
            if len(self.jobs) >= members.stop and all(m in self.accepted for m in members):
                events.append(self._event(frame, MASTER, contract.BATCH_CLOSED, batch=batch))
        return events

    def _match(self, item: Any) -> _Report | None:
        """The report a result the master took came from: by ``result_key``, else the
        oldest untaken report of an equal value."""
        if self.names.result_key is not None:
            key = item_key(item, self.names.result_key)
            match: Any = None if key is None else self.jobs.get(key)
        else:
            match = item_key(item, None)
        candidates = self.reports.get(match, [])
        untaken = next((r for r in candidates if not r.taken), None)
        return untaken if untaken is not None else next(iter(candidates), None)

    @staticmethod
    def _event(frame: WireFrame, src: str, ev: str, **fields: Any) -> dict[str, Any]:
        return {"t": frame.t, "src": src, "ev": ev, **fields}
