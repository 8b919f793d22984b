"""The pipelined Submitter against a real open master: ids and order, refusals, back-pressure
with bounded memory on both sides, and a producer SIGKILLed after flush()."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from distq.client import Submitter
from distq.errors import MasterLost, SubmissionRefused, UsageError
from distq.submissions import DEFAULT_WINDOW
from harness.checks import CheckContext, judge
from harness.history import History
from harness.runtime.cluster import Cluster
from harness.systems.distq import AUTHKEY_ENV, builtin_expected

#: The values distq's built-in tasks must yield, for correct_values.
SQUARES = CheckContext(expected=builtin_expected)

pytestmark = pytest.mark.processes

BOUND_S = 60.0  # generous: a loaded 2-core machine
# Back-pressure: a producer asked for 1e6 jobs, with no worker to take any, is held to
# the master's window plus its own send buffer; neither process grows past this RSS
# (measured: producer 26 MB, master 28 MB: an interpreter with distq and ~10k jobs; one
# million jobs on the board would take several hundred MB).
RSS_BOUND_MB = 64
PRODUCER_BUFFER = 10_000  # Submitter's default max_buffered
PRODUCER_BATCH = 1000  # Submitter's default batch_size


def key_env(cluster: Cluster) -> dict[str, str]:
    """The run's environment plus distq's key, for a process the test spawns itself."""
    return {**cluster.env(), AUTHKEY_ENV: cluster.authkey.decode()}


class Producer:
    """``python -m tests.producer`` as a process, its stdout lines in a queue."""

    def __init__(self, cluster: Cluster, *args: str) -> None:
        assert cluster.address is not None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.producer", cluster.address, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=key_env(cluster),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout as stdout:  # closed at EOF: no unclosed pipe left to the GC
            for line in stdout:
                self.lines.put(line.decode().strip())

    def next_line(self, timeout_s: float = BOUND_S) -> str:
        try:
            return self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"the producer said nothing for {timeout_s:g} s") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=BOUND_S)
        self._reader.join(timeout=BOUND_S)


def test_ids_increase_in_submission_order_and_the_master_takes_jobs_in_that_order(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path / "run", ["--open"]) as cluster:
        assert cluster.address is not None
        cluster.add_worker()
        with (
            Submitter.connect(cluster.address, cluster.authkey) as first,
            Submitter.connect(cluster.address, cluster.authkey) as second,
        ):
            sent: dict[int, int] = {}  # id -> the echo value, for the first submitter
            ids: list[int] = []
            for k in range(300):  # several id blocks (64, 128, 256, ...)
                ids.append(first.submit("echo", [k]))
                sent[ids[-1]] = k
                if k % 50 == 0:
                    second.submit("echo", [-1])
            bulk = first.submit_many([("echo", [1000 + k], None) for k in range(50)])
            sent.update({job_id: 1000 + k for k, job_id in enumerate(bulk)})
            ids += bulk
            ids.append(first.submit("echo", [2000]))
            sent[ids[-1]] = 2000
            first.flush()
            second.flush()
            assert ids == sorted(set(ids)), "ids are unique and increase in submission order"
            assert ids[:3] == [0, 1, 2]
            picked = ids[123]
            one = first.result(picked, timeout_s=BOUND_S)
            assert (one.job_id, one.ok, one.value) == (picked, True, sent[picked])
            assert one.worker == "worker-1"
            assert one.attempt == 1
            rest = {}
            for r in first.as_completed(timeout_s=BOUND_S):
                rest[r.job_id] = r
                if len(rest) == 5:
                    break  # a caller may stop early: the next call hands out the others
            rest.update({r.job_id: r for r in first.as_completed(timeout_s=BOUND_S)})
            assert set(rest) == set(ids) - {picked}
            assert all(r.ok and r.value == sent[r.job_id] for r in rest.values())
            with pytest.raises(UsageError, match=f"job {picked} is not awaiting"):
                first.result(picked, timeout_s=1)
            theirs = {r.job_id for r in second.as_completed(timeout_s=BOUND_S)}
            assert len(theirs) == 6
            assert not theirs & set(ids)
            first.close_submissions()
        assert cluster.wait_master(BOUND_S) == 0
    history = History.load_run(cluster.run_dir)
    mine = [job for job in history.submitted() if job in sent]
    assert mine == ids, "the master took the jobs in submission order"
    assert judge(history, ["exactly_once", "correct_values"], SQUARES).status == "pass"


def test_a_refused_submission_surfaces_on_flush_naming_the_job(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--open"]) as cluster:
        assert cluster.address is not None
        with Submitter.connect(cluster.address, cluster.authkey) as submitter:
            good = [submitter.submit("square", [n]) for n in range(5)]
            bad = submitter.submit("no such task", [1])
            also_bad = submitter.submit("square", [2], time_limit_s=-1.0)
            more = submitter.submit("square", [9])
            with pytest.raises(SubmissionRefused) as refused:
                submitter.flush()
            assert refused.value.job_ids == [bad, also_bad]
            assert str(refused.value).startswith(
                f"the master refused job {bad}: task 'no such task' is neither a built-in"
            )
            assert "(and 1 more: jobs " + str(also_bad) + ")" in str(refused.value)
            submitter.flush()  # reported once
            with pytest.raises(SubmissionRefused, match=f"job {also_bad}: time_limit_s"):
                submitter.result(also_bad, timeout_s=BOUND_S)
            # Another submitter closes submissions: what this one sends next is refused.
            with Submitter.connect(cluster.address, cluster.authkey) as closer:
                closer.close_submissions()
            late = submitter.submit("square", [3])
            with pytest.raises(SubmissionRefused, match=f"job {late}: submissions are closed"):
                submitter.flush()
            cluster.add_worker()
            done = {r.job_id: r.value for r in submitter.as_completed(timeout_s=BOUND_S)}
            assert done == {job_id: n * n for n, job_id in enumerate(good)} | {more: 81}
        assert cluster.wait_master(BOUND_S) == 0
    history = History.load_run(cluster.run_dir)
    assert set(history.submitted()) == {*good, more}


def test_a_producer_far_ahead_blocks_with_bounded_memory_on_both_sides(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--open"]) as cluster:  # no worker: nothing finishes
        assert cluster.master is not None
        producer = Producer(cluster, "--jobs", "1000000", "--report-every", "1000")
        try:
            reported = 0
            while reported < DEFAULT_WINDOW:
                reported = int(producer.next_line().split()[1])
            taken = 0

            def window_full(event: dict[str, object]) -> bool:
                nonlocal taken
                taken += event["ev"] == "job_submitted"
                return taken == DEFAULT_WINDOW

            cluster.master_events.wait_for(window_full, BOUND_S, "the window taken")
            # Far ahead: a producer with no back-pressure would be hundreds of thousands
            # of jobs further within this time (it submits ~100k jobs/s).
            watch_until = time.monotonic() + 3.0
            while (left := watch_until - time.monotonic()) > 0:
                try:
                    reported = int(producer.lines.get(timeout=left).split()[1])
                except queue.Empty:
                    break
            assert producer.proc.poll() is None, "the producer is blocked, not dead"
            assert reported <= DEFAULT_WINDOW + PRODUCER_BUFFER + PRODUCER_BATCH
            rss_mb = {
                "producer": psutil.Process(producer.proc.pid).memory_info().rss / 2**20,
                "master": psutil.Process(cluster.master.pid).memory_info().rss / 2**20,
            }
            assert all(rss < RSS_BOUND_MB for rss in rss_mb.values()), rss_mb
            cluster.master_events.poll()
            submitted = [e for e in cluster.master_events.events if e["ev"] == "job_submitted"]
            assert len(submitted) == DEFAULT_WINDOW, "the master took exactly one window"
        finally:
            producer.kill()


def test_a_producer_sigkilled_after_flush_loses_nothing_flushed(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--open"]) as cluster:
        assert cluster.address is not None
        producer = Producer(
            cluster, "--jobs", "700", "--flush-at", "500", "--report-every", "100000"
        )
        try:
            line = producer.next_line()
            assert line.startswith("flushed "), line
            flushed: list[int] = json.loads(line.removeprefix("flushed "))
            assert len(flushed) == 500
            assert producer.next_line() == "waiting"
        finally:
            producer.kill()
        cluster.add_worker()
        with Submitter.connect(cluster.address, cluster.authkey) as closer:
            closer.close_submissions()
        assert cluster.wait_master(BOUND_S) == 0
    lines = [json.loads(line) for line in cluster.results_path.read_text().splitlines()]
    values = {line["job"]: line["value"] for line in lines if line["ok"]}
    assert [values.get(job_id) for job_id in flushed] == [n * n for n in range(500)]
    history = History.load_run(cluster.run_dir)
    assert set(flushed) <= set(history.submitted())
    assert judge(history, ["exactly_once", "correct_values"], SQUARES).status == "pass"


def test_distq_submit_goes_through_the_same_path(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"task": "square", "args": [3]}\n{"task": "not a task"}\n')
    with Cluster(tmp_path / "run", ["--open"]) as cluster:
        address = cluster.address
        assert address is not None

        def submit(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "distq", "submit", "--connect", address]
            return subprocess.run(
                [*command, *args],
                capture_output=True,
                text=True,
                timeout=BOUND_S,
                env=key_env(cluster),
            )

        done = submit("--task", "square", "--count", "5")
        assert (done.returncode, done.stdout, done.stderr) == (
            0,
            "submitted 5 jobs: ids 0..4\n",
            "",
        )
        refused = submit("--jobs", str(jobs))
        assert refused.returncode == 2
        assert refused.stderr.splitlines() == [
            "distq submit: error: the master refused job 65: task 'not a task' is neither a "
            "built-in (square, sleep, fail, crash, hang, echo) nor a 'module:function' reference"
        ]
        assert submit("--close").returncode == 0
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
    history = History.load_run(cluster.run_dir)
    assert sorted(history.submitted()) == [
        0,
        1,
        2,
        3,
        4,
        64,
    ]  # each submitter reserves a block of 64 ids first


def test_a_result_not_in_time_and_a_lost_master_are_errors_that_say_so(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--open"]) as cluster:  # no worker: nothing finishes
        assert cluster.address is not None
        submitter = Submitter.connect(cluster.address, cluster.authkey)
        try:
            job_id = submitter.submit("square", [4])
            with pytest.raises(TimeoutError, match=f"job {job_id}: no result within 0.3 s"):
                submitter.result(job_id, timeout_s=0.3)
            cluster.signal("master", signal.SIGKILL)
            assert cluster.wait_master(BOUND_S) == -signal.SIGKILL
            submitter.submit("square", [5])
            with pytest.raises(MasterLost, match="1 submitted jobs were not acknowledged"):
                submitter.flush(timeout_s=BOUND_S)
            with pytest.raises(MasterLost):
                submitter.submit("square", [6])
        finally:
            submitter.abandon()


class Unreadable:
    """Pickles on the client; unpickling it on the master raises (as an object of a user
    module the master does not import would)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return int, ("not a number",)


def test_a_job_that_cannot_be_sent_is_refused_by_name_and_the_others_go_through(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path / "run", ["--open"]) as cluster:
        assert cluster.address is not None
        cluster.add_worker()
        with Submitter.connect(cluster.address, cluster.authkey) as submitter:
            before = [submitter.submit("echo", [n]) for n in range(5)]
            unreadable = submitter.submit("echo", [Unreadable()])
            unpicklable = submitter.submit("echo", [threading.Lock()])
            after = [submitter.submit("echo", [n]) for n in range(5, 10)]
            with pytest.raises(SubmissionRefused) as refused:
                submitter.flush(timeout_s=BOUND_S / 2)
            assert refused.value.job_ids == [unreadable, unpicklable]
            reasons = dict(refused.value.refusals)
            assert "invalid literal for int()" in reasons[unreadable]
            assert "cannot pickle" in reasons[unpicklable]
            done = {r.job_id: r.value for r in submitter.as_completed(timeout_s=BOUND_S)}
            assert done == {job_id: n for n, job_id in enumerate(before + after)}
            # submit_many goes the same way
            with pytest.raises(SubmissionRefused) as refused:
                submitter.submit_many([("echo", [1], None), ("echo", [Unreadable()], None)])
            assert len(refused.value.job_ids) == 1
            submitter.close_submissions()
        assert cluster.wait_master(BOUND_S) == 0


def test_closing_one_submitter_leaves_another_of_the_same_thread_open(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--open"]) as cluster:
        assert cluster.address is not None
        first = Submitter.connect(cluster.address, cluster.authkey)
        second = Submitter.connect(cluster.address, cluster.authkey)
        try:
            first.close()  # second has sent nothing yet
            job_id = second.submit("square", [7])
            second.flush(timeout_s=BOUND_S)
            cluster.add_worker()
            assert second.result(job_id, timeout_s=BOUND_S).value == 49
            second.close_submissions()
        finally:
            second.abandon()
        assert cluster.wait_master(BOUND_S) == 0


def test_a_call_interrupted_by_ctrl_c_loses_no_result_and_desynchronises_nothing(
    tmp_path: Path,
) -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with Cluster(tmp_path / "run", ["--open"]) as cluster:
        assert cluster.address is not None
        cluster.add_worker()
        submitter = Submitter.connect(cluster.address, cluster.authkey)
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            # The job ends while the master holds the interrupted fetch open: its result
            # goes out in the reply nobody reads.
            slow = submitter.submit("sleep", [0.6])
            submitter.flush(timeout_s=BOUND_S)
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(KeyboardInterrupt):
                submitter.result(slow, timeout_s=BOUND_S)
            signal.setitimer(signal.ITIMER_REAL, 0)
            # The next calls on this thread get their own replies.
            [square] = submitter.submit_many([("square", [4], None)])
            assert submitter.result(square, timeout_s=BOUND_S).value == 16
            assert submitter.result(slow, timeout_s=BOUND_S).ok
            submitter.close_submissions()
            submitter.close()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            submitter.abandon()
        assert cluster.wait_master(BOUND_S) == 0


def test_close_with_a_timeout_returns_in_time_when_the_master_takes_nothing(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path / "run", ["--open"]) as cluster:  # no worker: the window stays full
        assert cluster.address is not None
        submitter = Submitter.connect(cluster.address, cluster.authkey, window=2)
        for n in range(10):
            submitter.submit("square", [n])
        outcome: queue.Queue[BaseException | None] = queue.Queue()

        def close() -> None:
            try:
                submitter.close(timeout_s=1.0)
            except BaseException as exc:
                outcome.put(exc)
            else:
                outcome.put(None)

        threading.Thread(target=close, daemon=True).start()
        try:
            raised = outcome.get(timeout=BOUND_S)
        except queue.Empty:
            raise AssertionError(f"close(timeout_s=1.0) still waits after {BOUND_S:g} s") from None
        assert isinstance(raised, TimeoutError), raised
        assert "8 submitted jobs not acknowledged in time" in str(raised)


def test_abandon_does_not_wait_on_a_hung_master(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--open"]) as cluster:
        assert cluster.address is not None
        submitter = Submitter.connect(cluster.address, cluster.authkey)
        submitter.submit("square", [1])
        submitter.flush(timeout_s=BOUND_S)
        cluster.signal("master", signal.SIGSTOP)
        try:
            submitter.submit("square", [2])  # the flusher waits on the hung master
            started = time.monotonic()
            submitter.abandon()
            # The client's reply timeout is 60 s: abandon() makes no call that waits for it.
            assert time.monotonic() - started < 30.0
        finally:
            cluster.signal("master", signal.SIGCONT)


def test_ctrl_c_in_a_submit_held_by_back_pressure_leaves_the_submitter_usable(
    tmp_path: Path,
) -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with Cluster(tmp_path / "run", ["--open"]) as cluster:  # no worker yet: nothing frees
        assert cluster.address is not None
        submitter = Submitter.connect(
            cluster.address, cluster.authkey, window=4, batch_size=4, max_buffered=4
        )
        previous = signal.signal(signal.SIGALRM, interrupt)
        ids: list[int] = []
        try:
            signal.setitimer(signal.ITIMER_REAL, 1.0)
            # The alarm lands in whichever submit() blocks first.
            with pytest.raises(KeyboardInterrupt):  # noqa: PT012
                # 4 in the window, 4 in the flusher's hands, 4 buffered: submit() blocks
                for n in range(100):
                    ids.append(submitter.submit("square", [n]))
            signal.setitimer(signal.ITIMER_REAL, 0)
            assert len(ids) <= 12
            cluster.add_worker()
            ids.append(submitter.submit("square", [len(ids)]))
            submitter.flush(timeout_s=BOUND_S)
            done = {r.job_id: r.value for r in submitter.as_completed(timeout_s=BOUND_S)}
            assert done == {job_id: n * n for n, job_id in enumerate(ids)}
            submitter.close_submissions()
            submitter.close()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            submitter.abandon()
        assert cluster.wait_master(BOUND_S) == 0
