"""History: merging logs into one order, and the queries the checkers ask."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.history import History, HistoryError


def _event(t: float, src: str, ev: str, **fields: Any) -> dict[str, Any]:
    return {"t": t, "src": src, "ev": ev, **fields}


def _write(path: Path, events: list[dict[str, Any]], torn: str = "") -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + torn, encoding="utf-8")
    return path


def test_events_are_ordered_by_time_and_ties_keep_reading_order() -> None:
    history = History(
        [
            _event(0.3, "master", "result_accepted", job=0),
            _event(0.1, "master", "job_submitted", job=0),
            _event(0.2, "worker-1", "started", job=0),
            _event(0.2, "worker-1", "completed", job=0),
        ]
    )
    assert [e.ev for e in history] == ["job_submitted", "started", "completed", "result_accepted"]
    assert [e.line for e in history] == [0, 1, 2, 3]
    assert history[2].get("job") == 0
    assert history[2].job == 0
    assert history[2].get("missing", "x") == "x"
    assert history.end_t == pytest.approx(0.3)


def test_an_event_without_a_time_is_refused_with_where_it_came_from(tmp_path: Path) -> None:
    log = _write(tmp_path / "m.events.jsonl", [_event(0.1, "master", "master_ready"), {"ev": "x"}])
    with pytest.raises(HistoryError, match=r"m\.events\.jsonl: event 2: 't' must be a number"):
        History.from_files([log])


def test_from_files_merges_logs_skips_a_torn_line_and_appends_results(tmp_path: Path) -> None:
    master = _write(
        tmp_path / "master.events.jsonl",
        [
            _event(0.1, "master", "job_submitted", job=0, task="square", args=[3], batch=None),
            _event(0.4, "master", "result_accepted", job=0, attempt=1, worker="w", value=9),
        ],
    )
    worker = _write(
        tmp_path / "w.events.jsonl",
        [_event(0.2, "w", "started", job=0, attempt=1, worker="w")],
        torn='{"t":0.3,"src":"w","ev":"compl',
    )
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"job": 0, "ok": True, "value": 9}) + "\n", encoding="utf-8")

    history = History.from_files([master, worker], results_path=results)

    assert [(e.src, e.ev) for e in history] == [
        ("master", "job_submitted"),
        ("w", "started"),
        ("master", "result_accepted"),
        ("results", "result_output"),
    ]
    assert history[3].t == pytest.approx(0.4)
    assert history[3].get("value") == 9


def test_load_run_reads_every_event_log_of_the_directory(tmp_path: Path) -> None:
    _write(tmp_path / "master.events.jsonl", [_event(0.1, "master", "master_ready")])
    _write(tmp_path / "worker-1.events.jsonl", [_event(0.2, "worker-1", "connected")])
    _write(tmp_path / "harness.events.jsonl", [_event(0.3, "harness", "fault", action="kill")])
    (tmp_path / "master.log").write_text("not events\n", encoding="utf-8")
    _write(tmp_path / "results.jsonl", [{"job": 0, "ok": True}])

    history = History.load_run(tmp_path)
    assert [e.src for e in history] == ["master", "worker-1", "harness", "results"]
    assert [e.src for e in History.load_run(tmp_path, results_name=None)] == [
        "master",
        "worker-1",
        "harness",
    ]
    with pytest.raises(HistoryError, match="does not exist"):
        History.load_run(tmp_path / "nope")


def test_submitted_and_terminals_come_from_the_master_only() -> None:
    history = History(
        [
            _event(0.1, "master", "job_submitted", job=0, task="echo", args=["a"], batch=1),
            _event(0.1, "master", "job_submitted", job=1, task="fail", args=[], batch=None),
            _event(0.2, "master", "result_accepted", job=0, value="a"),
            _event(0.3, "master", "dead", job=1, attempts=3, error="boom"),
            _event(0.3, "worker-1", "result_accepted", job=1),  # not the master: ignored
        ]
    )
    submitted = history.submitted()
    assert submitted[0].task == "echo"
    assert submitted[0].args == ("a",)
    assert submitted[0].batch == 1
    assert submitted[1].batch is None
    assert {job: [e.ev for e in ends] for job, ends in history.terminals().items()} == {
        0: ["result_accepted"],
        1: ["dead"],
    }


def _leased(t: float, job: int, worker: str, attempt: int, lease: int) -> dict[str, Any]:
    return _event(t, "master", "leased", job=job, attempt=attempt, lease=lease, worker=worker)


def test_leases_record_who_held_what_and_how_it_ended() -> None:
    history = History(
        [
            _leased(1.0, 0, "w1", 1, 1),
            _leased(1.0, 1, "w1", 1, 2),
            _leased(1.0, 2, "w2", 1, 3),
            _leased(1.0, 3, "w2", 1, 4),
            _leased(1.0, 4, "w3", 1, 5),
            _event(2.0, "master", "result_accepted", job=0, attempt=1, worker="w1", value=0),
            _event(2.0, "master", "attempt_failed", job=1, attempt=1, reason="JobFailed: x"),
            _event(3.0, "master", "worker_lost", worker="w2", jobs=[2, 3], reason="closed"),
            _event(3.0, "master", "attempt_failed", job=2, attempt=1, reason="closed (w2)"),
            _event(4.0, "master", "lease_expired", job=4, attempt=1, lease=5, worker="w3"),
            _event(4.0, "master", "attempt_failed", job=4, attempt=1, reason="lease expired"),
            _leased(5.0, 4, "w1", 2, 6),
            # The paused w3 wakes up: its late result wins over w1's open lease.
            _event(6.0, "master", "result_accepted", job=4, attempt=1, worker="w3", value=16),
            _leased(7.0, 1, "w1", 2, 7),
        ]
    )
    ends = {(lease.job, lease.lease): lease.end for lease in history.leases()}
    assert ends == {
        (0, 1): "completed",
        (1, 2): "failed",
        (2, 3): "lost",
        (3, 4): "lost",
        (4, 5): "expired",
        (4, 6): "superseded",
        (1, 7): "open",
    }
    lost = history.leases(2)[0]
    assert (lost.t_start, lost.t_end, lost.worker) == (1.0, 3.0, "w2")
    assert history[lost.end_line or 0].ev == "worker_lost"
    assert history.leases(1)[-1].t_end is None
    assert history.leases(1)[-1].end_line is None

    assert history.holder_at(4, 0.5) is None
    assert history.holder_at(4, 1.0) == "w3"
    assert history.holder_at(4, 4.0) is None  # the lease ends at its expiry
    assert history.holder_at(4, 5.5) == "w1"
    assert history.holder_at(1, 99.0) == "w1"  # still open
    assert history.jobs_held_by("w2", 2.5) == {2, 3}
    assert history.jobs_held_by("w2", 3.0) == frozenset()
    assert history.jobs_held_by("w1", 2.5) == frozenset()


def test_select_faults_and_render() -> None:
    history = History(
        [
            _event(0.1, "harness", "fault", fault=0, action="kill", target="worker-2"),
            _event(0.2, "worker-2", "fault", action="fake"),  # only the harness injects faults
            _event(0.3, "master", "leased", job=7, worker="worker-1", attempt=1, lease=1),
            _event(0.4, "master", "attempt_failed", job=7, reason="x " * 100),
        ]
    )
    assert [e.line for e in history.faults()] == [0]
    assert [e.line for e in history.select("fault")] == [0, 1]
    assert [e.line for e in history.select(["leased", "attempt_failed"], job=7)] == [2, 3]
    assert [e.line for e in history.select(worker="worker-1")] == [2]
    assert history.select(src="nobody") == ()
    text = history.render([2, 0])
    assert text.splitlines() == [
        "#0 t=0.100000 harness fault fault=0 action=kill target=worker-2",
        "#2 t=0.300000 master leased job=7 worker=worker-1 attempt=1 lease=1",
    ]
    long_line = history.render([3])
    assert long_line.endswith("...")
    assert len(long_line) < 140


def test_typed_fields_read_back_as_written_whatever_their_values(tmp_path: Path) -> None:
    """A kind's column is an array while its values are ints that fit 64 bits: an id past
    64 bits, a bool, a string or a list among them reads back as it was written."""
    values: list[Any] = [4, 2**64, True, "x", [1, 2], None, 2**63 - 1, -(2**63)]
    events = [
        _event(0.1 * n, "master", "leased", job=job, attempt=1, lease=n, worker="w", batch=None)
        for n, job in enumerate([0, 1, 2**63, 2**70, -(2**63), 5])
    ]
    events += [
        _event(1 + n, "master", "result_accepted", job=n, attempt=1, worker="w", ok=True, value=v)
        for n, v in enumerate(values)
    ]
    master = _write(tmp_path / "master.events.jsonl", events)

    history = History.from_files([master])

    assert [(e.job, dict(e.fields)) for e in history] == [
        (event["job"], {k: v for k, v in event.items() if k not in ("t", "src", "ev")})
        for event in events
    ]
    assert [lease.job for lease in history.leases()] == [0, 1, 2**63, 2**70, -(2**63), 5]
    assert history.select("result_accepted", job=2**70) == ()
    assert [e.line for e in history.by_job(2**70)] == [3]


def test_a_results_line_with_its_own_time_sorts_with_the_logged_events(tmp_path: Path) -> None:
    master = _write(
        tmp_path / "master.events.jsonl",
        [_event(0.1, "master", "job_submitted", job=0), _event(0.5, "master", "master_stopped")],
    )
    results = tmp_path / "results.jsonl"
    lines = [{"job": 0, "ok": True, "value": 0}, {"t": 0.2, "job": 0, "ok": True, "value": 1}]
    results.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")

    history = History.from_files([master], results_path=results)

    assert [(e.t, e.ev, e.get("value")) for e in history] == [
        (0.1, "job_submitted", None),
        (0.2, "result_output", 1),
        (0.5, "master_stopped", None),
        (0.5, "result_output", 0),
    ]


def _shapes(history: History) -> list[tuple[Any, ...]]:
    return [(e.line, e.t, e.src, e.ev, dict(e.fields), e.job) for e in history]


def test_two_processes_read_a_run_as_one_does(tmp_path: Path) -> None:
    # Both sides know kinds the other has (rows and bodies shift), names only one side knows,
    # a job id past 64 bits, a results line stating its own time, and a torn last line.
    master = _write(
        tmp_path / "master.events.jsonl",
        [
            _event(0.1, "master", "job_submitted", job=0, task="square", args=[3]),
            _event(0.2, "master", "leased", job=0, attempt=1, lease=1, worker="worker-1"),
            _event(0.25, "master", "odd_master_event", note="only here"),
            _event(
                0.5,
                "master",
                "result_accepted",
                job=0,
                attempt=1,
                worker="worker-1",
                ok=True,
                value=9,
            ),
            _event(0.6, "master", "leased", job=2**70, attempt=1, lease=2, worker="worker-2"),
        ],
    )
    worker = _write(
        tmp_path / "worker-1.events.jsonl",
        [
            _event(0.21, "worker-1", "started", job=0, attempt=1, worker="worker-1"),
            _event(0.22, "worker-1", "odd_worker_event", note="only there"),
            _event(0.3, "worker-1", "completed", job=0, attempt=1, worker="worker-1", ok=True),
            _event(0.35, "worker-1", "leased", job=5, attempt=1, lease=3, worker="worker-1"),
        ],
        torn='{"t": 0.9, "src": "worker-1", "ev": "sta',
    )
    results = tmp_path / "results.jsonl"
    results.write_text(
        '{"job": 0, "ok": true, "value": 9, "error": null, "worker": "worker-1", "attempt": 1}\n'
        '{"job": 1, "ok": true, "value": 1, "t": 0.05}\n'
        '{"job": 3, "ok": true, "value": 9, "t": -Infinity}\n',  # read by the lenient reader
        encoding="utf-8",
    )
    before = {child.pid for child in psutil.Process().children()}
    for paths in ([master, worker], [worker, master]):
        one = History.from_files(paths, results_path=results)
        two = History.from_files(paths, results_path=results, parallel_bytes=0)
        assert {child.pid for child in psutil.Process().children()} == before  # reader gone
        assert _shapes(two) == _shapes(one)
        assert two.leases() == one.leases()
        assert two.submitted() == one.submitted()
        assert two.kinds() == one.kinds()
        assert two.sources() == one.sources()
    assert History.from_files([master, worker], parallel_bytes=0).end_t == pytest.approx(0.6)


def test_a_corrupt_log_the_reader_process_reads_is_refused_as_in_one(tmp_path: Path) -> None:
    master = _write(tmp_path / "master.events.jsonl", [_event(0.1, "master", "master_ready")])
    worker = tmp_path / "worker-1.events.jsonl"
    worker.write_text(
        'not json\n{"t": 0.2, "src": "worker-1", "ev": "started"}\n', encoding="utf-8"
    )
    with pytest.raises(HistoryError) as one:
        History.from_files([master, worker])
    before = {child.pid for child in psutil.Process().children()}
    with pytest.raises(HistoryError) as two:
        History.from_files([master, worker], parallel_bytes=0)
    assert {child.pid for child in psutil.Process().children()} == before
    assert str(two.value) == str(one.value)
    assert "worker-1.events.jsonl:1" in str(two.value)
    # A results line with a bad time: named by its line in the results output, both ways.
    worker.write_text('{"t": 0.2, "src": "worker-1", "ev": "started"}\n', encoding="utf-8")
    results = tmp_path / "results.jsonl"
    results.write_text('{"job": 1, "ok": true}\n{"job": 2, "t": "bad"}\n', encoding="utf-8")
    with pytest.raises(HistoryError) as one:
        History.from_files([master, worker], results_path=results)
    with pytest.raises(HistoryError) as two:
        History.from_files([master, worker], results_path=results, parallel_bytes=0)
    assert str(two.value) == str(one.value)
    assert "results.jsonl: event 2: 't' must be a number" in str(two.value)


def test_a_dropped_history_is_freed_at_once_without_the_cycle_collector() -> None:
    # A soak run's history is a gigabyte: it must go when its last reference does.
    history = History(
        [
            _event(0.1, "master", "job_submitted", job=0, task="square", args=[2]),
            _event(0.2, "master", "leased", job=0, attempt=1, lease=1, worker="worker-1"),
            _event(0.3, "master", "result_accepted", job=0, attempt=1, worker="worker-1", ok=True),
        ]
    )
    assert history.submitted()[0].args == (2,)
    assert len(history.terminals()[0]) == 1
    gone = weakref.ref(history)
    collecting = gc.isenabled()
    gc.disable()
    try:
        del history
        assert gone() is None
    finally:
        if collecting:
            gc.enable()


def test_values_read_twice_answer_as_each_event_does_whether_rows_are_a_span(
    tmp_path: Path,
) -> None:
    """``values`` remembers an index's rows (as one first row when they are a span: read in
    order and sorted in order); asked again, a span, rows out of order, a column of ints,
    one of strings and a field the kind lacks answer as each event's ``get``."""
    in_order = [
        _event(
            0.1 * n, "master", "leased", job=n, attempt=1, lease=n, worker=f"w{n % 2}", batch=None
        )
        for n in range(6)
    ]
    # A worker whose clock steps back: its started events sort out of the order written.
    shuffled = [
        _event(t, "w1", "started", job=n, attempt=1, worker="w1")
        for n, t in enumerate([0.5, 0.2, 0.4, 0.1, 0.3])
    ]
    history = History.from_files(
        [
            _write(tmp_path / "master.events.jsonl", in_order),
            _write(tmp_path / "w1.events.jsonl", shuffled),
        ]
    )
    for ev, src in (("leased", "master"), ("started", "w1")):
        lines = history.lines(ev, src=src)
        for name in ("worker", "lease", "attempt", "job", "missing", "worker", "lease", "job"):
            expected = [history[line].get(name, "-") for line in lines]
            assert history.values(lines, name, "-") == expected, (ev, name)
    assert history.values(history.lines("started", src="w1"), "job") == [3, 1, 4, 2, 0]
    assert history.values(history.lines("started", src="w1"), "lease", 7) == [7] * 5
