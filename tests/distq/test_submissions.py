"""The master's submitter bookkeeping (distq/submissions.py) and the board's id blocks,
without processes."""

from __future__ import annotations

import pytest

from distq.board import JobBoard
from distq.errors import SubmissionRefused
from distq.jobs import Result
from distq.submissions import Sessions, refusal_reason


def test_reserved_ids_are_never_given_to_another_job() -> None:
    board = JobBoard(clock=lambda: 0.0)
    assert board.submit("square", (1,)).job_id == 0
    first = board.reserve_ids(64)
    assert first == 1
    assert board.submit("square", (2,)).job_id == 65, "an automatic id skips the block"
    assert board.reserve_ids(8) == 66
    board.submit("square", (3,), job_id=first + 5)
    with pytest.raises(ValueError, match="already submitted"):
        board.submit("square", (3,), job_id=first + 5)
    with pytest.raises(ValueError, match="count must be >= 1"):
        board.reserve_ids(0)


@pytest.mark.parametrize(
    ("task", "args", "limit", "reason"),
    [
        ("square", [1], None, None),
        ("tests.tasks:add", (1, 2), 2.5, None),
        ("pkg.mod:Class.method", [], 1, None),
        ("no such task", [1], None, "task 'no such task' is neither a built-in"),
        ("module:", [1], None, "task 'module:' is neither a built-in"),
        (7, [1], None, "task 7 is neither"),
        ("square", "12", None, "args must be a list or a tuple, got str"),
        ("square", [1], 0, "time_limit_s must be a number > 0, got 0"),
        ("square", [1], float("nan"), "time_limit_s must be a number > 0, got nan"),
        ("square", [1], True, "time_limit_s must be a number > 0, got True"),
    ],
)
def test_refusal_reason(task: object, args: object, limit: object, reason: str | None) -> None:
    found = refusal_reason(task, args, limit)
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(reason)


def test_a_window_counts_jobs_until_their_results_come() -> None:
    sessions = Sessions(max_window=3)
    collecting = sessions.open(collect=True)
    silent = sessions.open(collect=False, window=10)
    assert silent.window == 3, "a session never gets more than the master allows"
    sessions.owns(collecting, [0, 1, 2])
    sessions.owns(silent, [3])
    assert sessions.room(collecting) == 0
    assert sessions.room(silent) == 2
    done = [Result(1, True, 1, None, "w", 1), Result(3, True, 9, None, "w", 2)]
    assert sessions.route(done)
    assert sessions.room(collecting) == 1
    assert sessions.room(silent) == 3
    assert sessions.take_results(collecting, 10, 1) == [(1, True, 1, None, "w", 1)]
    assert sessions.take_results(silent, 10, 1) == []
    assert not sessions.route([Result(1, True, 1, None, "w", 3)]), "a second result: no owner"
    sessions.end(collecting.name)
    assert sessions.route([Result(0, True, 0, None, "w", 1)])
    assert sessions.undelivered() == 0, "an ended session keeps nothing"
    with pytest.raises(ValueError, match="no submitter session"):
        sessions.get(collecting.name)


def test_results_fetched_on_a_connection_the_submitter_left_are_handed_out_again() -> None:
    sessions = Sessions()
    session = sessions.open(collect=True)
    sessions.owns(session, [0, 1, 2])
    sessions.route([Result(0, True, 0, None, "w", 1)])
    sessions.fetching_on(session, 1)
    assert [r[0] for r in sessions.take_results(session, 10, 1)] == [0]
    # A Ctrl-C mid-reply: the submitter parks connection 1 and fetches on connection 2.
    sessions.route([Result(1, True, 1, None, "w", 1)])
    sessions.fetching_on(session, 2)
    assert [r[0] for r in sessions.take_results(session, 10, 2)] == [0, 1]
    sessions.route([Result(2, True, 4, None, "w", 1)])
    sessions.fetching_on(session, 2)  # what went out on 2 was read: not again
    assert [r[0] for r in sessions.take_results(session, 10, 2)] == [2]
    sessions.seen_on(session, 2)
    sessions.seen_on(session, 3)
    sessions.connection_closed(2)  # an id a new connection may get: hand them out again
    sessions.fetching_on(session, 2)
    assert [r[0] for r in sessions.take_results(session, 10, 2)] == [2]
    sessions.end(session.name)
    assert session.unread == {}


def test_a_refusal_names_the_jobs() -> None:
    one = SubmissionRefused([(7, "submissions are closed")])
    assert str(one) == "the master refused job 7: submissions are closed"
    many = SubmissionRefused([(n, "bad") for n in range(10, 20)])
    assert str(many) == ("the master refused job 10: bad (and 9 more: jobs 11, 12, 13, 14, 15...)")
    assert many.job_ids == list(range(10, 20))
    assert many.exit_code == 2


def test_a_session_ends_when_its_last_connection_closes() -> None:
    sessions = Sessions()
    dying = sessions.open(collect=True)
    other = sessions.open(collect=True)
    sessions.seen_on(dying, 1)
    sessions.seen_on(dying, 2)  # its flusher's connection
    sessions.seen_on(other, 2)
    sessions.seen_on(other, 3)
    sessions.owns(dying, [10])
    sessions.connection_closed(2)
    assert sessions.get(dying.name) is dying, "one connection left"
    sessions.connection_closed(1)
    with pytest.raises(ValueError, match="no submitter session"):
        sessions.get(dying.name)
    assert sessions.get(other.name) is other, "still on connection 3"
    sessions.connection_closed(3)
    with pytest.raises(ValueError, match="no submitter session"):
        sessions.get(other.name)
    assert sessions.route([Result(10, True, 100, None, "w", 1)])
    assert sessions.undelivered() == 0
