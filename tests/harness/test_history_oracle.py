"""The indexed history against a straightforward one: the same events, the same answers to
every query, the same verdict from every check, on a corpus of broken histories.

The reference reads logs with the contract's line reader, answers ``select`` by scanning
every event and replays leases the plain way; the history under test reads with msgspec,
answers from its indexes and replays leases once. Any difference is a bug in the fast path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import contract
from harness.checks import CHECKS, CheckContext, judge
from harness.history import History, HistoryEvent, Lease, LeaseEnd
from harness.systems.distq import builtin_expected
from tests.support import HistoryBuilder

_CONTEXT = CheckContext(
    expected=builtin_expected,
    max_attempts=2,
    batch_size=2,
    lease_timeout_s=0.5,
    recovery_bound_s=1.0,
    time_limit_slack_s=0.5,
    faults_planned=1,
    exit_codes={"master": 0, "worker-1": 0, "worker-2": -9},
    logs={},
)


class _Reference(History):
    """The same history answering every query the plain way: a scan per query."""

    def select(
        self,
        ev: str | Iterable[str] | None = None,
        *,
        job: int | None = None,
        src: str | None = None,
        worker: str | None = None,
    ) -> tuple[HistoryEvent, ...]:
        names = None if ev is None else frozenset((ev,) if isinstance(ev, str) else ev)
        return tuple(
            event
            for event in self.events
            if (names is None or event.ev in names)
            and (job is None or event.job == job)
            and (src is None or event.src == src)
            and (worker is None or event.get("worker") == worker)
        )

    def lines(
        self,
        ev: str | Iterable[str] | None = None,
        *,
        job: int | None = None,
        src: str | None = None,
        worker: str | None = None,
    ) -> tuple[int, ...]:
        return tuple(event.line for event in self.select(ev, job=job, src=src, worker=worker))

    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(event.src for event in self.events))

    def submission_lines(self) -> Mapping[int, int]:
        return {job: submission.line for job, submission in self.submitted().items()}

    def terminal_lines(self) -> Mapping[int, tuple[int, ...]]:
        return {job: tuple(end.line for end in ends) for job, ends in self.terminals().items()}

    def by_job(self, job: int) -> tuple[HistoryEvent, ...]:
        return tuple(event for event in self.events if event.job == job)

    def leases(self, job: int | None = None) -> Sequence[Lease]:
        replayed = _replay_leases(self.events)
        return replayed if job is None else tuple(lease for lease in replayed if lease.job == job)

    def epoch_at(self, t: float) -> int:
        return _plain_epoch(self.events, t)


def _plain_epoch(events: Iterable[HistoryEvent], t: float) -> int:
    """How many fresh (not resumed) master starts the harness made at or before ``t``."""
    events = list(events)
    starts = sorted(
        float(e.get("down_t"))
        for e in events
        if e.src == contract.HARNESS
        and e.ev == contract.FAULT_EFFECT
        and e.get("action") in contract.MASTER_RESTARTS
        and type(e.get("down_t")) in (int, float)
    )
    epoch = 0
    for index, start in enumerate(starts):
        if start > t:
            break
        end = starts[index + 1] if index + 1 < len(starts) else float("inf")
        ready = [
            e
            for e in events
            if e.src == contract.MASTER and e.ev == contract.MASTER_READY and start < e.t <= end
        ]
        if not (ready and ready[0].get("resumed") is True):
            epoch += 1
    return epoch


def _replay_leases(events: Iterable[HistoryEvent]) -> tuple[Lease, ...]:
    """Each lease opened, then rebuilt whole when something ends it; a job is its id within
    the master's epoch."""
    events = list(events)
    leases: list[Lease] = []
    open_lease: dict[tuple[int, int], int] = {}
    epoch = 0

    def close(job: int, event: HistoryEvent, end: LeaseEnd) -> None:
        index = open_lease.pop((epoch, job), None)
        if index is not None:
            o = leases[index]
            leases[index] = Lease(
                o.job,
                o.attempt,
                o.lease,
                o.worker,
                o.t_start,
                event.t,
                end,
                o.start_line,
                event.line,
                o.epoch,
            )

    def number(value: Any) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) else -1

    for event in events:
        if event.src != contract.MASTER:
            continue
        epoch = _plain_epoch(events, event.t)
        if event.ev == contract.WORKER_LOST:
            for lost in event.get("jobs") or ():
                if isinstance(lost, int):
                    close(lost, event, "lost")
            continue
        job = event.job
        if job is None:
            continue
        if event.ev == contract.LEASED:
            close(job, event, "superseded")
            open_lease[epoch, job] = len(leases)
            worker = str(event.get("worker", ""))
            attempt, lease = number(event.get("attempt")), number(event.get("lease"))
            opened = Lease(
                job, attempt, lease, worker, event.t, None, "open", event.line, None, epoch
            )
            leases.append(opened)
        elif event.ev == contract.RESULT_ACCEPTED:
            index = open_lease.get((epoch, job))
            if index is not None:
                held = leases[index]
                same = (held.attempt, held.worker) == (event.get("attempt"), event.get("worker"))
                close(job, event, "completed" if same else "superseded")
        elif event.ev == contract.LEASE_EXPIRED:
            close(job, event, "expired")
        elif event.ev in (contract.ATTEMPT_FAILED, contract.DEAD):
            close(job, event, "failed")
    return tuple(leases)


def _reference_from_files(paths: list[Path], results: Path | None) -> _Reference:
    events: list[dict[str, Any]] = [e for path in paths for e in contract.read_log(path)]
    if results is not None:
        end_t = max((float(e["t"]) for e in events), default=0.0)
        for result in contract.read_log(results):
            events.append({"t": end_t, "src": "results", "ev": "result_output", **result})
    return _Reference(events)


def _shape(event: HistoryEvent) -> tuple[Any, ...]:
    fields = json.dumps(dict(event.fields), sort_keys=True)  # typed records: the writer's order
    return (event.line, event.t, event.src, event.ev, fields, event.job)


def _verdict(history: History, check: str) -> Any:
    try:
        verdict = judge(history, [check], _CONTEXT)
    except Exception as exc:  # a check that breaks must break the same way on both
        return ("raised", type(exc).__name__, str(exc))
    return (
        verdict.status,
        [(v.check, v.message, v.jobs, v.lines, v.cause, v.severity) for v in verdict.violations],
    )


def _assert_same(
    events: list[dict[str, Any]], tmp_path: Path, *, two_readers: bool = False
) -> None:
    by_src: dict[str, list[dict[str, Any]]] = {}
    results: list[dict[str, Any]] = []
    for event in events:
        if event.get("src") == "results":
            results.append({k: v for k, v in event.items() if k not in ("t", "src", "ev")})
        else:
            by_src.setdefault(str(event.get("src")), []).append(event)
    paths = []
    for src, own in sorted(by_src.items()):
        path = tmp_path / contract.events_name(src)
        path.write_text("".join(json.dumps(e) + "\n" for e in own), encoding="utf-8")
        paths.append(path)
    results_path = None
    if results:
        results_path = tmp_path / "results.jsonl"
        results_path.write_text("".join(json.dumps(r) + "\n" for r in results), encoding="utf-8")
    fast = History.from_files(paths, results_path=results_path)
    if two_readers:  # read by two processes, as a soak run's logs are
        fast = History.from_files(paths, results_path=results_path, parallel_bytes=0)
    reference = _reference_from_files(paths, results_path)
    assert [_shape(e) for e in fast] == [_shape(e) for e in reference]
    assert fast.leases() == reference.leases()
    assert fast.submitted() == reference.submitted()
    for t in sorted({e.t for e in reference} | {0.0, 99.0}):
        assert fast.epoch_at(t) == reference.epoch_at(t), t
    names = {e.ev for e in reference} | {contract.LEASED, "missing"}
    jobs = {e.job for e in reference if e.job is not None} | {99}
    srcs = {e.src for e in reference} | {"nobody"}
    kinds: list[str | tuple[str, ...] | None] = [None, *sorted(names)]
    kinds.append((contract.LEASED, contract.RESULT_ACCEPTED, "missing"))
    sources: list[str | None] = [None, *sorted(srcs)]
    for ev in kinds:
        for job in [None, *sorted(jobs)]:
            for source in sources:
                for worker in (None, "worker-1"):
                    query: Mapping[str, Any] = {"job": job, "src": source, "worker": worker}
                    got = [e.line for e in fast.select(ev, **query)]
                    assert got == [e.line for e in reference.select(ev, **query)], (ev, query)
    for check in CHECKS:
        assert _verdict(fast, check) == _verdict(reference, check), check


def _broken_histories() -> dict[str, HistoryBuilder]:
    corpus: dict[str, HistoryBuilder] = {}
    lost = corpus["lost job"] = HistoryBuilder()
    lost.master("master_ready", address="127.0.0.1:1", pid=1)
    lost.submit(0)
    lost.submit(1)
    lost.lease(0, "worker-1")
    lost.accept(0, "worker-1")
    lost.lease(1, "worker-2")
    lost.lost("worker-2", [1], "connection closed")
    twice = corpus["two terminals, a wrong value, a second lease"] = HistoryBuilder()
    twice.submit(0)
    twice.lease(0, "worker-1")
    twice.lease(0, "worker-2", attempt=2)
    twice.accept(0, "worker-2", attempt=2, value=5)
    twice.master("dead", job=0, attempt=2)
    twice.accept(7, "worker-1")
    expired = corpus["expiry, requeue, a stale report"] = HistoryBuilder()
    expired.submit(0, batch=0)
    expired.submit(1, batch=1)
    expired.master("batch_opened", batch=0)
    expired.lease(0, "worker-1", batch=0)
    expired.lease(1, "worker-2", batch=1)
    expired.add("worker-1", "started", job=0, attempt=1, worker="worker-1")
    expired.master("lease_expired", job=0, worker="worker-1")
    expired.lease(0, "worker-2", attempt=2, batch=0)
    expired.add("worker-1", "completed", job=0, attempt=1, worker="worker-1", ok=True)
    expired.master("duplicate_dropped", job=0, attempt=1, worker="worker-1", ok=True)
    expired.accept(0, "worker-2", attempt=2)
    expired.failed(1, 1)
    expired.fault("kill", "worker-1")
    expired.effect(0, "kill", "worker-1")
    expired.harness("run_finished", elapsed_s=1.0, bound_s=5.0, timed_out=False, exit_codes={})
    fresh = corpus["a master restarted afresh, then on a journal"] = HistoryBuilder()
    fresh.master("master_ready", address="127.0.0.1:1", pid=1)
    fresh.submit(0)
    fresh.lease(0, "worker-1")
    fresh.fault("restart_master", "master")
    fresh.effect(0, "restart_master", "master", down_t=fresh.t + 0.005)
    fresh.at(fresh.t + 0.01)
    fresh.submit(0)
    fresh.master("master_ready", address="127.0.0.1:1", pid=2)
    fresh.lease(0, "worker-2")
    fresh.accept(0, "worker-1")
    fresh.fault("restart_master", "master", fault=1)
    fresh.effect(1, "restart_master", "master", down_t=fresh.t + 0.005)
    fresh.at(fresh.t + 0.01)
    fresh.master("master_ready", address="127.0.0.1:1", pid=3, resumed=True)
    fresh.accept(0, "worker-2")
    ties = corpus["ties, odd ids, results output"] = HistoryBuilder(step_s=0.0)
    ties.submit(0)
    ties.master("job_submitted", job=True, task="square", args=[1])
    ties.lease(0, "worker-1")
    ties.accept(0, "worker-1")
    ties.add("results", "result_output", job=0, ok=True, value=1)
    ties.add("results", "result_output", job=0, ok=True, value=0)
    ties.add("results", "result_output", job="x", ok=True)
    clean = corpus["a clean run (the checks' set-operation paths)"] = HistoryBuilder()
    for job in range(3):
        clean.submit(job)
    for job in range(3):
        clean.lease(job, f"worker-{job % 2 + 1}")
        clean.accept(job, f"worker-{job % 2 + 1}")
    for job in range(3):
        clean.add("results", "result_output", job=job, ok=True, value=job * job)
    clean.master("master_stopped")
    clean.harness("run_finished", elapsed_s=1.0, bound_s=5.0, timed_out=False, exit_codes={})
    return corpus


@pytest.mark.parametrize("two_readers", [False, True], ids=["one reader", "two readers"])
@pytest.mark.parametrize("name", sorted(_broken_histories()))
def test_the_indexed_history_answers_as_the_plain_one(
    name: str, two_readers: bool, tmp_path: Path
) -> None:
    _assert_same(_broken_histories()[name].events, tmp_path, two_readers=two_readers)


_JOBS = st.sampled_from([0, 1, 2, None, True, "2"])
_WORKERS = st.sampled_from(["worker-1", "worker-2", None])
_EVENT_NAMES = sorted(
    (contract.SYSTEM_EVENTS | contract.HARNESS_EVENTS) - {contract.RESULT_OUTPUT, contract.HANG}
)


@st.composite
def _event(draw: st.DrawFn) -> dict[str, Any]:
    src = draw(st.sampled_from(["master", "master", "worker-1", "worker-2", "harness", "results"]))
    ev = contract.RESULT_OUTPUT if src == "results" else draw(st.sampled_from(_EVENT_NAMES))
    event: dict[str, Any] = {"t": draw(st.sampled_from([0.1, 0.2, 0.2, 0.3, 1.5])), "src": src}
    event["ev"] = ev
    fields = {
        "job": _JOBS,
        "attempt": st.sampled_from([1, 2, 3, None]),
        "worker": _WORKERS,
        "ok": st.booleans(),
        "value": st.sampled_from([0, 1, 4, "x"]),
        "jobs": st.lists(_JOBS, max_size=2),
        "batch": st.sampled_from([0, 1, None]),
        "task": st.just("square"),
        "args": st.sampled_from([[0], [1], [2]]),
        "action": st.sampled_from(["restart_master", "kill"]),
        "down_t": st.sampled_from([0.15, 0.25, None]),
        "resumed": st.booleans(),
    }
    for key in draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=6)):
        event[key] = draw(fields[key])
    return event


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(_event(), max_size=25))
def test_random_broken_histories_get_the_same_answers(
    events: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    _assert_same(events, tmp_path_factory.mktemp("history"))
