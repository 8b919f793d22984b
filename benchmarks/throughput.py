"""Throughput of distq against a tutorial-style BaseManager queue, measured in one run.

Two workloads, each measured the same way for every system (the output says which way):

- per-job submit, end to end: one producer submits N square jobs one call at a time and
  then collects all N results; 2 workers, connected (and warm) before the clock starts.
  Window: first submit -> last result collected by the producer. distq ``submit()``
  (pipelined), distq ``submit_many()`` in chunks of 1000 (the bulk reference), and the
  naive queue (one proxied ``put`` per job, one ``get`` per result).
- pre-filled queue, steady state: every job is queued before the workers may start.
  Window: the moment workers can take the first job -> last result. distq: ``master --task
  square`` (first lease -> last result accepted, as the master measures it); naive: tasks
  put, then the workers released through a barrier.

- distq --journal: the pre-filled distq run again with the master's journal on (every
  lease and result committed before it is acknowledged); its rate over the pre-filled
  distq rate is ``journal_ratio``. Then a journaled master is SIGKILLed half-way and
  restarted on its address: the time from spawning it to its READY line and to its first
  new lease, and exactly-once again.

Master spawn -> READY is reported apart. Each figure is the median of --repeat runs. The
last line of output is one JSON object; the exit code is non-zero only if a correctness
check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import multiprocessing.synchronize
import os
import queue
import re
import secrets
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
WORKERS = 2
READY_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 120.0
TARGET_RATIO = 10.0  # distq submit() / naive, per-job workload
TARGET_BULK_RATIO = 0.6  # distq submit() / distq submit_many(), per-job workload
CHUNK = 1000  # submit_many chunk size
JOURNAL_TARGET_RATIO = 0.5  # distq --journal / distq, pre-filled workload


class BenchmarkFailed(Exception):
    """A correctness check failed or a process misbehaved: the figures are not valid."""


# -- distq -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DistqRun:
    jobs: int
    spawn_to_ready_s: float
    ready_to_exit_s: float
    first_lease_to_last_result_s: float

    @property
    def jobs_per_s(self) -> float:
        """Steady state: first lease -> last result, the master's own measurement."""
        return self.jobs / self.first_lease_to_last_result_s

    @property
    def ready_to_exit_jobs_per_s(self) -> float:
        """End to end: READY -> exit 0, worker start-up and shutdown included."""
        return self.jobs / self.ready_to_exit_s


_WINDOW = re.compile(r"([0-9]+(?:\.[0-9]+)?) s from first lease to last result")


def read_master_window(stderr: str) -> float:
    """The master's 'N s from first lease to last result' (its summary line on stderr)."""
    found = _WINDOW.findall(stderr)
    if len(found) != 1 or not float(found[0]) > 0:
        raise BenchmarkFailed(
            f"the distq master's stderr does not say how long first lease -> last result "
            f"took: {stderr.strip()!r}"
        )
    return float(found[0])


def _spawn(argv: Sequence[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C in the terminal reaches only us, and the whole tree of
    # one child (a distq worker and its job process) can be killed by its group id.
    return subprocess.Popen(argv, env=env, start_new_session=True, **kwargs)


@contextlib.contextmanager
def _reaped(procs: list[subprocess.Popen[bytes]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Kill (by process group) and reap every process in ``procs`` still alive at exit."""
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def _read_ready(master: subprocess.Popen[bytes], timeout_s: float) -> str:
    """Wait for the master's first stdout line, ``READY host:port``; return the address."""
    assert master.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(master.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise BenchmarkFailed(f"the distq master printed nothing within {timeout_s:g} s")
    line = master.stdout.readline().decode(errors="replace").strip()
    word, _, address = line.partition(" ")
    if word != "READY" or not address:
        raise BenchmarkFailed(f"the distq master's first line is {line!r}, not 'READY host:port'")
    return address


def check_distq_results(path: Path, jobs: int) -> None:
    """Exactly one line per job id 0..jobs-1, each ok with value id*id; else raise."""
    seen: set[int] = set()
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != jobs:
        raise BenchmarkFailed(f"{path}: {len(lines)} result lines, expected {jobs}")
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkFailed(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise BenchmarkFailed(f"{path}:{number}: not a JSON object: {line!r}")
        job_id = record.get("job")
        if not isinstance(job_id, int) or not 0 <= job_id < jobs:
            raise BenchmarkFailed(f"{path}:{number}: unexpected job id {job_id!r}")
        if job_id in seen:
            raise BenchmarkFailed(f"{path}:{number}: job {job_id} has a second result")
        seen.add(job_id)
        if record.get("ok") is not True or record.get("value") != job_id * job_id:
            raise BenchmarkFailed(
                f"{path}:{number}: job {job_id} gave ok={record.get('ok')!r} "
                f"value={record.get('value')!r}, expected value {job_id * job_id}"
            )


class _Watchdog:
    """Kills the master if the run overstays ``timeout_s`` or every worker has died."""

    def __init__(
        self,
        master: subprocess.Popen[bytes],
        workers: list[subprocess.Popen[bytes]],
        timeout_s: float,
    ) -> None:
        self.reason: str | None = None
        self._master = master
        self._workers = workers
        self._give_up_at = time.monotonic() + timeout_s
        self._timeout_s = timeout_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.1):
            codes = [worker.poll() for worker in self._workers]
            if time.monotonic() >= self._give_up_at:
                self.reason = f"the distq master did not finish within {self._timeout_s:g} s"
            elif all(code is not None for code in codes) and any(codes):
                self.reason = f"every distq worker exited (codes {codes}) before the master"
            else:
                continue
            with contextlib.suppress(ProcessLookupError):
                self._master.kill()
            return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def run_distq(jobs: int, extra_args: Sequence[str] = ()) -> DistqRun:
    env = dict(os.environ)
    env["DISTQ_AUTHKEY"] = secrets.token_hex(16)  # the key goes in the environment, never argv
    env.pop("DISTQ_T0", None)
    with tempfile.TemporaryDirectory(prefix="distq-bench-") as workdir, _reaped([]) as procs:
        results = Path(workdir) / "results.jsonl"
        master_err = Path(workdir) / "master.err"
        master_cmd = [sys.executable, "-m", "distq", "master", "--task", "square"]
        master_cmd += ["--count", str(jobs), "--results", str(results), "--host", HOST]
        master_cmd += extra_args
        with open(master_err, "wb") as err:
            spawned_at = time.perf_counter()
            master = _spawn(master_cmd, env, stdout=subprocess.PIPE, stderr=err)
        procs.append(master)
        address = _read_ready(master, READY_TIMEOUT_S)
        ready_at = time.perf_counter()
        if not address.startswith(f"{HOST}:"):
            raise BenchmarkFailed(f"the distq master listens on {address}, not on {HOST}")
        for index in range(WORKERS):
            worker_cmd = [sys.executable, "-m", "distq", "worker", "--connect", address]
            worker_cmd += ["--name", f"bench-{index}"]
            with open(Path(workdir) / f"worker-{index}.err", "wb") as err:
                procs.append(_spawn(worker_cmd, env, stdout=subprocess.DEVNULL, stderr=err))
        watchdog = _Watchdog(master, procs[1:], RUN_TIMEOUT_S)
        try:
            code = master.wait()  # blocking: Popen.wait(timeout) would poll up to 50 ms late
            exited_at = time.perf_counter()
        finally:
            watchdog.stop()
        if watchdog.reason is not None:
            raise BenchmarkFailed(watchdog.reason)
        if code != 0:
            stderr = master_err.read_text(errors="replace").strip()
            raise BenchmarkFailed(f"the distq master exited {code}: {stderr}")
        check_distq_results(results, jobs)
        window_s = read_master_window(master_err.read_text(errors="replace"))
        for worker in procs[1:]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=10)  # they exit on their own once the master is done
    return DistqRun(jobs, ready_at - spawned_at, exited_at - ready_at, window_s)


# -- distq with --journal: the same run with every change durable, and a restart ----------


def run_distq_journaled(jobs: int) -> DistqRun:
    """``run_distq`` with ``--journal``: every lease and result committed before it is
    acknowledged."""
    with tempfile.TemporaryDirectory(prefix="distq-bench-journal-") as workdir:
        return run_distq(jobs, ["--journal", str(Path(workdir) / "journal.sqlite")])


@dataclass(frozen=True, slots=True)
class RestartRun:
    jobs: int
    killed_after: int  # results in the journal's first life
    spawn_to_ready_s: float
    spawn_to_first_lease_s: float


def _leased_after(events: Path, pid: int, epoch: float, timeout_s: float) -> float:
    """The monotonic time of the first lease of the master ``pid`` (from its event log)."""
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        ours = False
        for line in events.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("ev") == "master_ready":
                    ours = event.get("pid") == pid
                elif ours and event.get("ev") == "leased":
                    return epoch + float(event["t"])
        time.sleep(0.01)
    raise BenchmarkFailed(f"the restarted master leased nothing within {timeout_s:g} s")


def run_restart(jobs: int) -> RestartRun:
    """A journaled master SIGKILLed half-way and restarted on its address: how long from
    spawning it again to its READY line and to its first new lease; then every job must
    still have exactly one correct result."""
    env = dict(os.environ)
    env["DISTQ_AUTHKEY"] = secrets.token_hex(16)
    epoch = time.monotonic()
    env["DISTQ_T0"] = repr(epoch)
    with (
        tempfile.TemporaryDirectory(prefix="distq-bench-restart-") as workdir,
        _reaped([]) as procs,
    ):
        root = Path(workdir)
        results, events = root / "results.jsonl", root / "master.events.jsonl"
        master_cmd = [sys.executable, "-m", "distq", "master", "--task", "square"]
        master_cmd += ["--count", str(jobs), "--results", str(results), "--host", HOST]
        master_cmd += ["--journal", str(root / "journal.sqlite"), "--events", str(events)]
        first = _spawn(master_cmd, env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(first)
        address = _read_ready(first, READY_TIMEOUT_S)
        for index in range(WORKERS):
            worker_cmd = [sys.executable, "-m", "distq", "worker", "--connect", address]
            worker_cmd += ["--name", f"bench-{index}", "--reconnect-s", "60"]
            procs.append(_spawn(worker_cmd, env, stdout=subprocess.DEVNULL))
        give_up_at = time.monotonic() + RUN_TIMEOUT_S
        while events.read_text(encoding="utf-8").count('"ev":"result_accepted"') < jobs // 2:
            if time.monotonic() > give_up_at or first.poll() is not None:
                raise BenchmarkFailed("the journaled master never got half-way")
            time.sleep(0.005)
        first.kill()
        first.wait()
        killed_after = events.read_text(encoding="utf-8").count('"ev":"result_accepted"')
        port = address.rpartition(":")[2]
        spawned_at = time.monotonic()
        second = _spawn([*master_cmd, "--port", port], env, stdout=subprocess.PIPE)
        procs.append(second)
        _read_ready(second, READY_TIMEOUT_S)
        ready_at = time.monotonic()
        leased_at = _leased_after(events, second.pid, epoch, RUN_TIMEOUT_S)
        if second.wait(timeout=RUN_TIMEOUT_S) != 0:
            raise BenchmarkFailed(f"the restarted master exited {second.returncode}")
        check_distq_results(results, jobs)
    return RestartRun(jobs, killed_after, ready_at - spawned_at, leased_at - spawned_at)


def measure_journal(jobs: int, repeat: int, restart_jobs: int) -> dict[str, float]:
    """The median of ``repeat`` journaled runs and one restart, as JSON keys."""
    rates: list[float] = []
    for attempt in range(1, repeat + 1):
        run = run_distq_journaled(jobs)
        rates.append(run.jobs_per_s)
        print(
            f"distq --journal run {attempt}: {run.jobs_per_s:,.0f} jobs/s ({run.jobs} jobs in "
            f"{run.first_lease_to_last_result_s:.3f} s, first lease -> last result); "
            f"spawn -> READY {run.spawn_to_ready_s * 1000:.0f} ms; exactly-once ok",
            flush=True,
        )
    restart = run_restart(restart_jobs)
    print(
        f"distq --journal restart: master SIGKILLed after {restart.killed_after} of "
        f"{restart.jobs} results; spawn -> READY {restart.spawn_to_ready_s * 1000:.0f} ms, "
        f"spawn -> first new lease {restart.spawn_to_first_lease_s * 1000:.0f} ms; "
        "exactly-once ok across the restart",
        flush=True,
    )
    return {
        "distq_journal_jobs_per_s": round(statistics.median(rates), 1),
        "restart_to_ready_s": round(restart.spawn_to_ready_s, 4),
        "restart_to_first_lease_s": round(restart.spawn_to_first_lease_s, 4),
        "restart_jobs": restart.jobs,
    }


# -- naive: the tutorials' BaseManager with two queues ------------------------------------

_queues: dict[str, queue.Queue[Any]] = {}


def get_task_queue() -> queue.Queue[Any]:
    """Server-side callable: the one task queue (module-level, so it pickles)."""
    return _queues.setdefault("task", queue.Queue())


def get_result_queue() -> queue.Queue[Any]:
    """Server-side callable: the one result queue."""
    return _queues.setdefault("result", queue.Queue())


class NaiveManager(BaseManager):
    """Its own subclass: registering on BaseManager itself would be process-global."""


NaiveManager.register("get_task_queue", callable=get_task_queue)
NaiveManager.register("get_result_queue", callable=get_result_queue)


def naive_worker(
    address: tuple[str, int], authkey: bytes, ready: multiprocessing.synchronize.Barrier
) -> None:
    """The tutorial worker: take n with get(timeout=1), put (n, n*n), stop when empty."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the benchmark tears us down on Ctrl-C
    manager = NaiveManager(address=address, authkey=authkey)
    manager.connect()
    tasks: Any = manager.get_task_queue()  # type: ignore[attr-defined]
    results: Any = manager.get_result_queue()  # type: ignore[attr-defined]
    ready.wait(READY_TIMEOUT_S)
    while True:
        try:
            n = tasks.get(timeout=1)
        except queue.Empty:
            return
        results.put((n, n * n))


def run_naive(jobs: int, prefill: bool) -> float:
    """Returns jobs/s; raises BenchmarkFailed unless ``jobs`` distinct, correct results came.

    ``prefill``: every task is put before the workers are released (window: release ->
    last result); otherwise the workers wait and the window is first put -> last result.
    """
    ctx = multiprocessing.get_context("spawn")
    authkey = secrets.token_bytes(16)
    manager = NaiveManager(address=(HOST, 0), authkey=authkey, ctx=ctx)
    workers: list[multiprocessing.process.BaseProcess] = []
    finished = False
    manager.start()
    try:
        address: tuple[str, int] = manager.address  # type: ignore[assignment]
        tasks: Any = manager.get_task_queue()  # type: ignore[attr-defined]
        results: Any = manager.get_result_queue()  # type: ignore[attr-defined]
        ready = ctx.Barrier(WORKERS + 1)
        for index in range(WORKERS):
            worker = ctx.Process(
                target=naive_worker,
                args=(address, authkey, ready),
                name=f"naive-worker-{index}",
                daemon=True,
            )
            worker.start()
            workers.append(worker)
        if prefill:
            for n in range(jobs):
                tasks.put(n)
        try:
            ready.wait(READY_TIMEOUT_S)  # both workers connected: spawn stays out of the window
        except threading.BrokenBarrierError:
            raise BenchmarkFailed(
                f"naive: the workers did not connect within {READY_TIMEOUT_S:g} s"
            ) from None
        started_at = time.perf_counter()
        if not prefill:
            for n in range(jobs):
                tasks.put(n)
        collected: dict[int, int] = {}
        for _ in range(jobs):
            n, value = results.get(timeout=RUN_TIMEOUT_S)
            collected[n] = value
        elapsed_s = time.perf_counter() - started_at
        wrong = [n for n, value in collected.items() if value != n * n]
        if len(collected) != jobs or set(collected) != set(range(jobs)) or wrong:
            raise BenchmarkFailed(
                f"naive: {len(collected)} distinct results for {jobs} jobs, "
                f"{len(wrong)} wrong values"
            )
        finished = True
        return jobs / elapsed_s
    except queue.Empty:
        raise BenchmarkFailed(
            f"naive: a result did not arrive within {RUN_TIMEOUT_S:g} s"
        ) from None
    finally:
        for proc in workers:
            # On success they stop one get(timeout=1) after the queue empties.
            proc.join(timeout=3 if finished else 0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        manager.shutdown()


# -- distq, one producer submitting to an open master ----------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitRun:
    jobs: int
    spawn_to_ready_s: float
    submit_to_collected_s: float

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.submit_to_collected_s


def _warm_up(submitter: Any) -> None:
    """Until every worker has returned a result: both connected and past start-up."""
    seen: set[str] = set()
    for _ in range(100):
        for _ in range(WORKERS):
            submitter.submit("sleep", [0.02])
        seen.update(result.worker for result in submitter.as_completed(timeout_s=READY_TIMEOUT_S))
        if len(seen) >= WORKERS:
            return
    raise BenchmarkFailed(f"only workers {sorted(seen)} ever returned a result while warming up")


def run_distq_submit(jobs: int, bulk: bool) -> SubmitRun:
    """Per-job workload through ``distq master --open``: ``submit()`` once per job, or
    (``bulk``) ``submit_many()`` per CHUNK jobs; then ``as_completed()`` collects all."""
    from distq.client import Submitter
    from distq.errors import DistqError

    key = secrets.token_hex(16)
    env = dict(os.environ, DISTQ_AUTHKEY=key)
    env.pop("DISTQ_T0", None)
    with tempfile.TemporaryDirectory(prefix="distq-bench-") as workdir, _reaped([]) as procs:
        master_err = Path(workdir) / "master.err"
        master_cmd = [sys.executable, "-m", "distq", "master", "--open", "--host", HOST]
        master_cmd += ["--results", str(Path(workdir) / "results.jsonl")]
        with open(master_err, "wb") as err:
            spawned_at = time.perf_counter()
            master = _spawn(master_cmd, env, stdout=subprocess.PIPE, stderr=err)
        procs.append(master)
        address = _read_ready(master, READY_TIMEOUT_S)
        ready_at = time.perf_counter()
        for index in range(WORKERS):
            worker_cmd = [sys.executable, "-m", "distq", "worker", "--connect", address]
            worker_cmd += ["--name", f"bench-{index}"]
            with open(Path(workdir) / f"worker-{index}.err", "wb") as err:
                procs.append(_spawn(worker_cmd, env, stdout=subprocess.DEVNULL, stderr=err))
        watchdog = _Watchdog(master, procs[1:], RUN_TIMEOUT_S)
        try:
            with Submitter.connect(address, key.encode()) as submitter:
                _warm_up(submitter)
                started_at = time.perf_counter()
                if bulk:
                    ids: list[int] = []
                    for start in range(0, jobs, CHUNK):
                        chunk = range(start, min(jobs, start + CHUNK))
                        ids += submitter.submit_many([("square", [n], None) for n in chunk])
                else:
                    ids = [submitter.submit("square", [n]) for n in range(jobs)]
                values: dict[int, Any] = {}
                for result in submitter.as_completed(timeout_s=RUN_TIMEOUT_S):
                    if result.job_id in values or not result.ok:
                        raise BenchmarkFailed(
                            f"distq: job {result.job_id}: second or failed {result}"
                        )
                    values[result.job_id] = result.value
                elapsed_s = time.perf_counter() - started_at
                submitter.close_submissions()
        except (DistqError, TimeoutError) as exc:
            why = f" ({watchdog.reason})" if watchdog.reason else ""
            raise BenchmarkFailed(f"distq producer: {exc}{why}") from None
        finally:
            watchdog.stop()
        wrong = [job_id for n, job_id in enumerate(ids) if values.get(job_id) != n * n]
        if len(values) != jobs or wrong:
            raise BenchmarkFailed(
                f"distq: {len(values)} results for {jobs} jobs, {len(wrong)} wrong"
            )
        try:
            code = master.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BenchmarkFailed("the distq master did not stop after close_submissions") from None
        if code != 0:
            raise BenchmarkFailed(f"the distq master exited {code}: {master_err.read_text()}")
    return SubmitRun(jobs, ready_at - spawned_at, elapsed_s)


# -- command line -------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/throughput.py",
        description=(__doc__ or "").strip().splitlines()[0],
        epilog=f"Targets (per-job workload, 2 cores): distq submit() >= {TARGET_RATIO:g}x the "
        f"naive queue and >= {TARGET_BULK_RATIO:g}x distq submit_many(). Exits 0 whatever the "
        "ratios; non-zero if a result is missing, duplicated or wrong.",
    )
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        default=100_000,
        help="distq jobs per run (default 100000)",
    )
    parser.add_argument(
        "--naive-jobs",
        type=_positive_int,
        default=5_000,
        help="naive jobs per run (default 5000; jobs/s is a rate, so N may differ)",
    )
    parser.add_argument(
        "--restart-jobs",
        type=_positive_int,
        default=20_000,
        help="jobs of the journaled run whose master is killed half-way and restarted "
        "(default 20000)",
    )
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        default=3,
        help="run each measurement this many times and report the median (default 3)",
    )
    return parser


PER_JOB_WINDOW = "first submit -> last result collected by the producer (workers warm)"
PREFILLED_WINDOW = "workers may start -> last result (distq: first lease, as the master measures)"


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    rates: dict[str, list[float]] = {
        name: []
        for name in ("submit", "submit_many", "naive", "prefilled_distq", "prefilled_naive")
    }
    spawn_to_ready: list[float] = []
    try:
        for attempt in range(1, options.repeat + 1):
            one = run_distq_submit(options.jobs, bulk=False)
            bulk = run_distq_submit(options.jobs, bulk=True)
            naive = run_naive(options.naive_jobs, prefill=False)
            rates["submit"].append(one.jobs_per_s)
            rates["submit_many"].append(bulk.jobs_per_s)
            rates["naive"].append(naive)
            spawn_to_ready += [one.spawn_to_ready_s, bulk.spawn_to_ready_s]
            print(
                f"run {attempt}, per-job workload ({PER_JOB_WINDOW}): distq submit() "
                f"{one.jobs_per_s:,.0f} jobs/s, distq submit_many({CHUNK}) "
                f"{bulk.jobs_per_s:,.0f} jobs/s ({options.jobs} jobs each), naive "
                f"{naive:,.0f} jobs/s ({options.naive_jobs} jobs); every result checked",
                flush=True,
            )
            filled = run_distq(options.jobs)
            filled_naive = run_naive(options.naive_jobs, prefill=True)
            rates["prefilled_distq"].append(filled.jobs_per_s)
            rates["prefilled_naive"].append(filled_naive)
            spawn_to_ready.append(filled.spawn_to_ready_s)
            print(
                f"run {attempt}, pre-filled workload ({PREFILLED_WINDOW}): distq "
                f"{filled.jobs_per_s:,.0f} jobs/s, naive {filled_naive:,.0f} jobs/s; "
                f"exactly-once ok",
                flush=True,
            )
        journal = measure_journal(options.jobs, options.repeat, options.restart_jobs)
    except BenchmarkFailed as exc:
        print(f"throughput: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("throughput: interrupted", file=sys.stderr)
        return 130
    median = {name: statistics.median(values) for name, values in rates.items()}
    ratio = median["submit"] / median["naive"]
    bulk_ratio = median["submit"] / median["submit_many"]
    prefilled_ratio = median["prefilled_distq"] / median["prefilled_naive"]
    ready_s = statistics.median(spawn_to_ready)

    def verdict(value: float, target: float) -> str:
        return f"{'meets' if value >= target else 'is below'} the target {target:g}"

    print(
        f"median of {options.repeat}: per-job workload: distq submit() {median['submit']:,.0f} "
        f"jobs/s = {ratio:.1f}x naive ({verdict(ratio, TARGET_RATIO)}) and {bulk_ratio:.2f}x "
        f"distq submit_many ({verdict(bulk_ratio, TARGET_BULK_RATIO)}); pre-filled workload: "
        f"distq {median['prefilled_distq']:,.0f} jobs/s = {prefilled_ratio:.1f}x naive; "
        f"distq master spawn -> READY {ready_s * 1000:.0f} ms"
    )
    journal_ratio = journal["distq_journal_jobs_per_s"] / median["prefilled_distq"]
    print(
        f"distq --journal {journal['distq_journal_jobs_per_s']:,.0f} jobs/s, "
        f"{journal_ratio:.2f} of distq without it (target >= {JOURNAL_TARGET_RATIO:g}); restart "
        f"-> first new lease {journal['restart_to_first_lease_s'] * 1000:.0f} ms"
    )
    print(
        json.dumps(
            {
                "per_job_window": PER_JOB_WINDOW,
                "distq_submit_jobs_per_s": round(median["submit"], 1),
                "distq_submit_many_jobs_per_s": round(median["submit_many"], 1),
                "naive_jobs_per_s": round(median["naive"], 1),
                "ratio_submit_vs_naive": round(ratio, 3),
                "ratio_submit_vs_submit_many": round(bulk_ratio, 3),
                "prefilled_window": PREFILLED_WINDOW,
                "prefilled_distq_jobs_per_s": round(median["prefilled_distq"], 1),
                "prefilled_naive_jobs_per_s": round(median["prefilled_naive"], 1),
                "ratio_prefilled": round(prefilled_ratio, 3),
                "spawn_to_ready_s": round(ready_s, 4),
                "distq_jobs": options.jobs,
                "naive_jobs": options.naive_jobs,
                "statistic": f"median of {options.repeat}",
                **journal,
                "journal_ratio": round(journal_ratio, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
