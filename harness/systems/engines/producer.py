"""The producer of an engine run (its ``master`` role): enqueue, collect, write events.

``python -m harness.systems.engines.producer --jobs FILE --events FILE --workers N
--collect-s S``: waits for every worker to say it joined, enqueues each job through the
engine's client, polls the engine's result API, writes ``job_submitted``,
``result_accepted`` / ``dead`` and ``master_stopped``. Exit 0 when every job has a result,
4 when the collection time ran out first (the missing jobs are listed in the last event).
A submit that fails on a broker error is retried, so a submit whose reply was cut off (the
broker took it, then went away) may enqueue a job twice: fault a broker after submission.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from harness import contract
from harness.contract import EventWriter
from harness.systems.engines.settings import RUN_DIR_ENV, engine_of, from_env

__all__ = ["EXIT_INCOMPLETE", "main"]

EXIT_INCOMPLETE = 4
POLL_S = 0.05
_APPS = {
    "celery": "harness.systems.engines.celery_app",
    "rq": "harness.systems.engines.rq_app",
    "dramatiq": "harness.systems.engines.dramatiq_app",
    "huey": "harness.systems.engines.huey_app",
}


def _joined_workers(run_dir: Path) -> set[str]:
    names: set[str] = set()
    for path in run_dir.glob("worker-*.events.jsonl"):
        for line in path.read_text(errors="replace").splitlines():
            if f'"{contract.WORKER_JOINED}"' in line:
                names.add(path.name.split(".")[0])
                break
    return names


def _retrying(log: EventWriter, what: str, call: Any, deadline: float) -> Any:
    """Call ``call()`` until it stops raising (the broker may be down for a while)."""
    while True:
        try:
            return call()
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise
            log.write(
                contract.BROKER_ERROR, during=what, error=f"{type(exc).__name__}: {exc}"[:200]
            )
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="producer", description=__doc__)
    parser.add_argument("--jobs", required=True, type=Path)
    parser.add_argument("--events", required=True, type=Path)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--collect-s", type=float, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = from_env()
    engine = engine_of(settings)
    log = EventWriter(args.events, contract.MASTER)
    jobs = [json.loads(line) for line in args.jobs.read_text().splitlines() if line.strip()]
    client = importlib.import_module(_APPS[engine]).Client()
    log.write(contract.MASTER_READY, engine=engine, jobs=len(jobs), pid=os.getpid(), address="-")
    deadline = time.monotonic() + args.collect_s
    run_dir = Path(os.environ[RUN_DIR_ENV])
    seen: set[str] = set()
    while len(seen) < args.workers and time.monotonic() < deadline:
        for name in sorted(_joined_workers(run_dir) - seen):
            seen.add(name)
            log.write(contract.WORKER_JOINED, worker=name)
        time.sleep(POLL_S)
    handles: dict[int, Any] = {}
    for job, spec in enumerate(jobs):
        task, job_args = spec["task"], list(spec.get("args", []))
        log.write(contract.JOB_SUBMITTED, job=job, task=task, args=job_args)
        handles[job] = _retrying(
            log,
            "submit",
            lambda job=job, task=task, job_args=job_args: client.submit(job, task, job_args),
            deadline,
        )
    pending = dict(handles)
    while pending and time.monotonic() < deadline:
        for job, handle in list(pending.items()):
            try:
                outcome = client.poll(handle)
            except Exception as exc:  # the broker is down or restarting: poll again later
                log.write(
                    contract.BROKER_ERROR, during="poll", error=f"{type(exc).__name__}: {exc}"[:200]
                )
                time.sleep(0.2)
                break
            if outcome is None:
                continue
            del pending[job]
            ok, value = outcome
            if ok:
                log.write(contract.RESULT_ACCEPTED, job=job, ok=True, value=value)
            else:
                log.write(contract.DEAD, job=job, ok=False, error=str(value))
        time.sleep(POLL_S)
    log.write(contract.MASTER_STOPPED, missing=sorted(pending))
    return EXIT_INCOMPLETE if pending else 0


if __name__ == "__main__":
    sys.exit(main())
