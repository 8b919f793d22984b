"""``distq demo``: a master and local workers on loopback, one worker SIGKILLed half-way,
then an account of every job: how many results, lost, duplicated and requeued.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distq.errors import EXIT_OK, DistqError
from distq.events import EPOCH_ENV, read_events

__all__ = ["run_demo"]

_BOUND_S = 120.0


def _results_by_job(path: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    if not path.exists():
        return counts
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.endswith("\n"):
                job = json.loads(line)["job"]
                counts[job] = counts.get(job, 0) + 1
    return counts


def _holders(events_path: Path) -> dict[str, set[int]]:
    """Which worker holds which jobs, according to the master's log so far."""
    held: dict[str, set[int]] = {}
    holder_of: dict[int, str] = {}
    for event in read_events(events_path):
        ev, job = event["ev"], event.get("job", -1)
        if ev == "leased":
            held.setdefault(event["worker"], set()).add(job)
            holder_of[job] = event["worker"]
        elif ev in ("result_accepted", "attempt_failed", "dead") and job in holder_of:
            held.get(holder_of.pop(job), set()).discard(job)
    return held


def _progress(done: int, total: int, live: int, requeued: int) -> str:
    width = 30
    filled = width * done // max(total, 1)
    return (
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} results, "
        f"{live} workers, {requeued} requeued "
    )


def run_demo(*, jobs: int = 200, workers: int = 3, job_delay_s: float = 0.02) -> int:
    run_dir = Path(tempfile.mkdtemp(prefix="distq-demo-"))
    results_path = run_dir / "results.jsonl"
    events_path = run_dir / "master.events.jsonl"
    env = dict(
        os.environ, DISTQ_AUTHKEY=secrets.token_hex(16), **{EPOCH_ENV: str(time.monotonic())}
    )
    base = [sys.executable, "-m", "distq"]
    processes: list[subprocess.Popen[str]] = []
    keep_run_dir = False  # removed at the end, unless something went wrong in it
    try:
        jobs_path = _write_jobs(run_dir, jobs, job_delay_s)
        master_argv = [*base, "master", "--jobs", str(jobs_path), "--results", str(results_path)]
        master_argv += ["--events", str(events_path), "--lease-timeout-s", "2"]
        master = _spawn(master_argv, run_dir / "master.log", env, stdout=subprocess.PIPE)
        processes.append(master)
        assert master.stdout is not None
        ready = master.stdout.readline().split()
        if len(ready) != 2 or ready[0] != "READY":
            keep_run_dir = True
            raise DistqError(f"the master did not start; see {run_dir / 'master.log'}")
        address = ready[1]
        print(f"master at {address}, {jobs} jobs, {workers} workers, run directory {run_dir}")
        by_name: dict[str, subprocess.Popen[str]] = {}
        for number in range(1, workers + 1):
            name = f"worker-{number}"
            by_name[name] = _spawn(
                [*base, "worker", "--connect", address, "--name", name],
                run_dir / f"{name}.log",
                env,
                stdout=subprocess.DEVNULL,
            )
            processes.append(by_name[name])
        killed: str | None = None
        deadline = time.monotonic() + _BOUND_S
        while master.poll() is None:
            if time.monotonic() > deadline:
                keep_run_dir = True
                raise DistqError(f"the demo did not finish within {_BOUND_S:g} s; see {run_dir}")
            done = len(_results_by_job(results_path))
            requeued = sum(1 for e in read_events(events_path) if e["ev"] == "requeued")
            if killed is None and done >= jobs // 2:
                holding = [w for w, held in _holders(events_path).items() if held and w in by_name]
                if holding:
                    killed = holding[0]
                    by_name[killed].send_signal(signal.SIGKILL)
                    print(f"\nSIGKILL {killed} while it holds a lease")
            live = sum(1 for p in by_name.values() if p.poll() is None)
            print(_progress(done, jobs, live, requeued), end="", flush=True)
            time.sleep(0.1)
        counts = _results_by_job(results_path)
        requeued = sum(1 for e in read_events(events_path) if e["ev"] == "requeued")
        print(_progress(len(counts), jobs, 0, requeued))
        lost = sum(1 for job in range(jobs) if job not in counts)
        duplicated = sum(n - 1 for n in counts.values() if n > 1)
        print(
            f"{jobs} jobs, {sum(counts.values())} results, {lost} lost, "
            f"{duplicated} duplicated, {requeued} requeued"
        )
        ok = master.returncode == 0 and not lost and not duplicated
        if not ok:
            keep_run_dir = True
            print(f"the run directory is kept for a look: {run_dir}")
        return EXIT_OK if ok else 1
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        if not keep_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)


def _spawn(
    argv: list[str], log_path: Path, env: dict[str, str], **kwargs: object
) -> subprocess.Popen[str]:
    """Start a child whose stderr goes to ``log_path``."""
    with open(log_path, "w", encoding="utf-8") as log:
        return subprocess.Popen(argv, stderr=log, text=True, env=env, **kwargs)  # type: ignore[call-overload,no-any-return]


def _write_jobs(run_dir: Path, jobs: int, job_delay_s: float) -> Path:
    path = run_dir / "jobs.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for job in range(jobs):
            handle.write(json.dumps({"task": "square", "args": [job, job_delay_s]}) + "\n")
    return path
