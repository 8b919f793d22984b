"""A worker rejoining on a new connection, at the level of the master's board service:
what the old connection held goes back without counting an attempt, the old connection
can no longer lease, and only the same worker process may take its name back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distq.board import JobBoard
from distq.errors import MasterLost
from distq.events import EventLog, read_events
from distq.service import BoardService, MasterConfig, set_caller
from distq.worker import WorkerConfig, _Session


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
    set_caller(connection)


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


def test_a_connection_whose_worker_said_bye_leases_nothing(service: BoardService) -> None:
    old, new = object(), object()
    on(old)
    service.hello("w", 7, "host")
    on(new)
    service.hello("w", 7, "host", rejoin=True)
    service.bye("w")
    on(old)  # a long poll on the replaced connection that wakes up after the bye
    assert service.lease("w", 3, 0.0) == ([], False)
    assert service.board.held_by("w") == frozenset()


# -- the worker's side: one budget per call, and only the same master -------------------------


class FlakyBoard:
    """Answers ``hello`` with ``master_id``; fails the first ``failures`` other calls."""

    def __init__(self, master_id: str, failures: int = 0) -> None:
        self.master_id = master_id
        self.failures = failures
        self.abandoned = False

    def hello(self, *args: object) -> dict[str, object]:
        return {"heartbeat_interval_s": 1.0, "master_id": self.master_id}

    def heartbeat(self, worker: str) -> bool:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError
        return False

    def abandon(self) -> None:
        self.abandoned = True


def session_with(board: FlakyBoard, rejoin: Any) -> _Session:
    config = WorkerConfig(address=("127.0.0.1", 1), name="w", reconnect_s=30.0)
    session = _Session(board, config, 1.0, rejoin)  # type: ignore[arg-type]
    session.call("hello", "w", 7, "host")
    return session


def test_a_call_rejoins_within_one_budget_however_often_it_is_lost() -> None:
    budgets: list[float] = []
    boards = [FlakyBoard("m1", failures=1), FlakyBoard("m1", failures=1), FlakyBoard("m1")]

    def rejoin(lost: MasterLost, give_up_at: float) -> tuple[FlakyBoard, dict[str, object]]:
        budgets.append(give_up_at)
        board = boards.pop(0)
        return board, board.hello()

    first = FlakyBoard("m1", failures=1)
    session = session_with(first, rejoin)
    assert session.call("heartbeat", "w") is False
    assert first.abandoned
    assert len(budgets) == 3
    assert len(set(budgets)) == 1, "every rejoin of one call shares the call's deadline"


def test_a_rejoin_that_reaches_a_different_master_is_a_lost_master() -> None:
    def rejoin(lost: MasterLost, give_up_at: float) -> tuple[FlakyBoard, dict[str, object]]:
        board = FlakyBoard("m2")  # restarted on the same address: its job 3 is another job
        return board, board.hello()

    session = session_with(FlakyBoard("m1", failures=1), rejoin)
    with pytest.raises(MasterLost, match="a different master answers there now"):
        session.call("heartbeat", "w")


def test_no_rejoin_once_the_master_said_stop() -> None:
    def rejoin(lost: MasterLost, give_up_at: float) -> tuple[FlakyBoard, dict[str, object]]:
        raise AssertionError("must not rejoin: every job is terminal")

    session = session_with(FlakyBoard("m1", failures=1), rejoin)
    session.stop_requested_by_master = True
    with pytest.raises(MasterLost, match=re.escape("lost the master at 127.0.0.1:1 (Connection")):
        session.call("heartbeat", "w")


def test_the_master_names_the_jobs_a_rejoin_or_a_bye_hands_back(
    service: BoardService, tmp_path: Path
) -> None:
    # The history tells a hand-back from a death by these, whatever the board counted.
    on(object())
    service.hello("w", 7, "host")
    service.lease("w", 1, 0.0)
    on(object())
    service.hello("w", 7, "host", rejoin=True)
    service.lease("w", 1, 0.0)
    service.bye("w")
    events = read_events(tmp_path / "master.events.jsonl")
    assert [(e["ev"], e["handed_back"]) for e in events if "handed_back" in e] == [
        ("worker_rejoined", [0]),
        ("worker_left", [0]),
    ]
