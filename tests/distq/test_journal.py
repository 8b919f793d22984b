"""The journal in one process: what a board commits is what a restored board holds, the
outputs get each result once after a restart, and bad journals are refused untouched."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from distq.board import JobBoard, JobState
from distq.errors import UsageError
from distq.events import EventLog, read_events
from distq.jobs import Result
from distq.journal import FORMAT, Journal, jobs_digest, resume_outputs
from distq.output import result_line


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def new_board(batch_size: int | None = None) -> JobBoard:
    return JobBoard(clock=Clock(), max_attempts=2, batch_size=batch_size, track_changes=True)


def started(path: Path, jobs: int, batch_size: int | None = None) -> tuple[Journal, JobBoard]:
    board = new_board(batch_size)
    for n in range(jobs):
        board.submit("square", (n,))
    journal = Journal.open(path, digest="d", batch_size=batch_size)
    journal.create(board, accepting=False)
    return journal, board


def reopened(path: Path, batch_size: int | None = None) -> tuple[Journal, JobBoard]:
    journal = Journal.open(path, digest="d", batch_size=batch_size)
    restored = journal.load()
    board = new_board(batch_size)
    board.restore(restored.records, last_lease_id=restored.last_lease_id)
    return journal, board


def test_a_restored_board_holds_what_was_committed(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal, board = started(path, 4)
    leased = board.lease("w1", 3)
    board.complete("w1", 0, 1, 0)
    board.fail("w1", 1, 1, "boom")  # attempt 1 of 2 failed: pending again
    journal.commit(board)
    board.lease("w2", 1)  # job 1 again (retries go first), attempt 2: not committed
    journal.close()

    journal, restored = reopened(path)
    assert [job.job_id for job in leased] == [0, 1, 2]
    assert restored.state(0) is JobState.DONE
    assert restored.result(0) == Result(0, True, 0, None, "w1", 1)
    assert restored.state(1) is JobState.PENDING
    assert restored.attempts(1) == 1
    assert restored.state(2) is JobState.LEASED
    assert restored.holder(2) == "w1"
    assert restored.state(3) is JobState.PENDING
    assert restored.attempts(3) == 0
    assert restored.unfinished == 3
    # What the master does with leases held at the crash: back, attempt not counted.
    assert restored.worker_lost("w1", "master restarted", count_attempt=False) == [2]
    assert restored.attempts(2) == 0
    assert sorted(job.job_id for job in restored.lease("w3", 5)) == [1, 2, 3]
    journal.close()


def test_lease_ids_keep_growing_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal, board = started(path, 3)
    board.lease("w", 2)
    journal.commit(board)
    journal.close()
    journal, board = reopened(path)
    board.worker_lost("w", "master restarted", count_attempt=False)
    board.drain_events()
    board.lease("w", 1)
    assert [e["lease"] for e in board.drain_events() if e["ev"] == "leased"] == [3]
    journal.close()


def test_the_batch_barrier_is_restored(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal, board = started(path, 5, batch_size=2)
    for job in board.lease("w", 2):
        board.complete("w", job.job_id, 1, 0)
    board.lease("w", 2)  # batch 1: jobs 2 and 3
    board.complete("w", 2, 1, 4)
    journal.commit(board)
    journal.close()
    journal, board = reopened(path, batch_size=2)
    board.worker_lost("w", "master restarted", count_attempt=False)
    assert [job.job_id for job in board.lease("v", 5)] == [3]  # batch 2 waits for job 3
    board.complete("v", 3, 1, 9)
    assert [job.job_id for job in board.lease("v", 5)] == [4]
    journal.close()


def test_submissions_after_the_start_are_journaled(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal, board = started(path, 1)
    board.submit("echo", ("late",))
    journal.commit(board)
    journal.close()
    journal, board = reopened(path)
    assert len(board) == 2
    assert board.lease("w", 2)[1].args == ("late",)
    journal.close()


def test_submissions_out_of_id_order_are_journaled(tmp_path: Path) -> None:
    """Pipelined submitters assign ids from reserved blocks: a later block's job may come
    first."""
    path = tmp_path / "j.sqlite"
    journal, board = started(path, 1)
    first = board.reserve_ids(10)
    second = board.reserve_ids(10)
    board.submit("echo", ("b",), job_id=second)
    journal.commit(board)
    board.submit("echo", ("a",), job_id=first)
    journal.commit(board)
    journal.close()
    journal, board = reopened(path)
    assert sorted(board.job_ids()) == [0, first, second]
    journal.close()


def test_results_reach_each_output_once_after_a_crash(tmp_path: Path) -> None:
    """Job 0 reached both outputs before the checkpoint; job 1 only the results file
    (torn after it); job 2 neither. The restart adds job 2 to the file and jobs 1 and 2
    to the event log, and cuts the torn line."""
    path = tmp_path / "j.sqlite"
    results = tmp_path / "results.jsonl"
    events = tmp_path / "master.events.jsonl"
    journal, board = started(path, 3)
    log = EventLog(events, "master")
    board.lease("w", 3)
    board.complete("w", 0, 1, 0)
    journal.commit(board)
    results.write_text("".join(map(result_line, board.drain_results())))
    log.write("result_accepted", job=0, attempt=1, worker="w", ok=True, value=0)
    journal.outputs_written(results.stat().st_size, log.size())
    board.complete("w", 1, 1, 10)
    board.complete("w", 2, 1, 20)
    journal.commit(board)
    done = board.drain_results()
    with open(results, "a") as handle:
        handle.write(result_line(done[0]) + result_line(done[1])[:9])  # killed mid-line
    log.close()
    journal.close()

    journal, board = reopened(path)
    restored = journal.load()
    log = EventLog(events, "master")
    with open(results, "a") as out:

        def write_results(rs: list[Result]) -> None:
            out.write("".join(map(result_line, rs)))

        again, cut = resume_outputs(
            journal,
            board,
            restored,
            results_path=results,
            write_results=write_results,
            log=log,
        )
    log.close()
    journal.close()
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert (again, cut) == (1, True)
    assert [(line["job"], line["value"]) for line in lines] == [(0, 0), (1, 10), (2, 20)]
    terminal = [e["job"] for e in read_events(events) if e["ev"] == "result_accepted"]
    assert sorted(terminal) == [0, 1, 2]


def test_a_results_file_shorter_than_the_checkpoint_gets_every_result_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    results = tmp_path / "results.jsonl"
    journal, board = started(path, 2)
    board.lease("w", 2)
    board.complete("w", 0, 1, 0)
    board.complete("w", 1, 1, 1)
    journal.commit(board)
    results.write_text("".join(map(result_line, board.drain_results())))
    journal.outputs_written(results.stat().st_size, 0)
    journal.close()
    results.write_text("")  # replaced (or a power loss took what was not synced)

    journal, board = reopened(path)
    written: list[Result] = []
    again, _ = resume_outputs(
        journal,
        board,
        journal.load(),
        results_path=results,
        write_results=written.extend,
        log=EventLog(None, "master"),
    )
    journal.close()
    assert again == 2
    assert [r.job_id for r in written] == [0, 1]


def test_an_event_log_shorter_than_the_checkpoint_gets_every_lost_event_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    results = tmp_path / "results.jsonl"
    events = tmp_path / "events.jsonl"
    journal, board = started(path, 2)
    log = EventLog(events, "master")
    board.lease("w", 2)
    board.complete("w", 0, 1, 0)
    board.complete("w", 1, 1, 1)
    journal.commit(board)
    results.write_text("".join(map(result_line, board.drain_results())))
    for job in (0, 1):
        log.write("result_accepted", job=job, attempt=1, worker="w", ok=True, value=job)
    journal.outputs_written(results.stat().st_size, log.size())
    log.close()
    journal.close()
    events.write_text("")  # cut (or restored from an old copy)

    journal, board = reopened(path)
    log = EventLog(events, "master")
    resume_outputs(
        journal, board, journal.load(), results_path=results, write_results=print, log=log
    )
    log.close()
    journal.close()
    logged = list(read_events(events))
    assert sorted(e["job"] for e in logged if e["ev"] == "result_accepted") == [0, 1]
    assert sorted(e["job"] for e in logged if e["ev"] == "job_submitted") == [0, 1]


def test_a_journal_is_refused_for_another_job_set_or_batch_size(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal, _ = started(path, 2)
    journal.close()
    with pytest.raises(UsageError, match="different job set"):
        Journal.open(path, digest="other", batch_size=None)
    with pytest.raises(UsageError, match="--batch-size None, not 5"):
        Journal.open(path, digest="d", batch_size=5)
    Journal.open(path, digest="d", batch_size=None).close()


def test_jobs_digest_tells_job_sets_apart() -> None:
    one = jobs_digest([("square", (1,), None, None)])
    assert one == jobs_digest([("square", [1], None, None)])
    assert one != jobs_digest([("square", (2,), None, None)])
    assert one != jobs_digest([("square", (1,), None, 2.0)])


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all\n" * 300)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    db.close()
    newer = tmp_path / "newer.sqlite"
    journal, _ = started(newer, 1)
    journal.close()
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'format'", (FORMAT + 1,))
    db.close()
    return {
        "garbage": (garbage, "not a distq journal|corrupt"),
        "other": (other, "another SQLite database"),
        "newer": (newer, f"newer distq \\(journal format {FORMAT + 1}"),
    }


@pytest.mark.parametrize("kind", ["garbage", "other", "newer"])
def test_a_bad_journal_is_one_usage_error_and_left_untouched(tmp_path: Path, kind: str) -> None:
    path, message = _bad_files(tmp_path)[kind]
    before = path.read_bytes()
    with pytest.raises(UsageError, match=message) as caught:
        Journal.open(path, digest="d", batch_size=None)
    assert "\n" not in str(caught.value)
    assert path.read_bytes() == before
