"""A worker rejoining on a new connection, at the level of the master's board service:
what the old connection held goes back without counting an attempt, the old connection
can no longer lease, and only the same worker process may take its name back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from distq import master
from distq.board import JobBoard
from distq.events import EventLog, read_events
from distq.master import BoardService, MasterConfig


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def service(tmp_path: Path) -> Iterator[BoardService]:
    board = JobBoard(clock=Clock(), lease_timeout_s=10.0)
    for n in range(3):
        board.submit("square", (n,))
    log = EventLog(tmp_path / "master.events.jsonl", "master")
    yield BoardService(board, log, lambda results: None, MasterConfig(open_submissions=True))
    log.close()


def on(connection: object) -> None:
    """Make the calls that follow arrive on ``connection`` (the server's per-thread slot)."""
    master._connection_of_thread.conn = connection


def test_a_rejoin_takes_back_the_old_connections_leases_without_counting(
    service: BoardService,
) -> None:
    old, new = object(), object()
    on(old)
    service.hello("w", 7, "host")
    jobs, _ = service.lease("w", 2, 0.0)
    assert [(job[0], job[3]) for job in jobs] == [(0, 1), (1, 1)]  # (job, attempt)
    on(new)
    service.hello("w", 7, "host", rejoin=True)
    assert service.board.held_by("w") == frozenset()
    again, _ = service.lease("w", 3, 0.0)
    assert sorted((job[0], job[3]) for job in again) == [(0, 1), (1, 1), (2, 1)]


def test_a_replaced_connection_gets_no_jobs_and_its_close_takes_nothing_back(
    service: BoardService,
) -> None:
    old, new = object(), object()
    on(old)
    service.hello("w", 7, "host")
    on(new)
    service.hello("w", 7, "host", rejoin=True)
    on(old)  # e.g. a long poll still under way on the old connection when it was replaced
    assert service.lease("w", 3, 0.0) == ([], False)
    on(new)
    jobs, _ = service.lease("w", 3, 0.0)
    assert len(jobs) == 3
    service.connection_closed(old)
    assert service.board.held_by("w") == frozenset({0, 1, 2})


@pytest.mark.parametrize(
    ("pid", "host", "rejoin"), [(8, "host", True), (7, "other", True), (7, "host", False)]
)
def test_a_connected_name_is_only_taken_back_by_the_same_process_rejoining(
    service: BoardService, pid: int, host: str, rejoin: bool
) -> None:
    on(object())
    service.hello("w", 7, "host")
    on(object())
    with pytest.raises(ValueError, match="a worker named 'w' is already connected"):
        service.hello("w", pid, host, rejoin=rejoin)


def test_a_rejoin_is_its_own_event(service: BoardService, tmp_path: Path) -> None:
    on(object())
    service.hello("w", 7, "host")
    service.lease("w", 1, 0.0)
    on(object())
    service.hello("w", 7, "host", rejoin=True)
    events = [e for e in read_events(tmp_path / "master.events.jsonl") if "worker" in e]
    assert [(e["ev"], e.get("reason")) for e in events] == [
        ("worker_joined", None),
        ("leased", None),
        ("worker_lost", "worker rejoined"),
        ("worker_rejoined", None),
    ]
