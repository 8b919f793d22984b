"""The producer of an engine run (its ``master`` role): enqueue, collect, write events.

``python -m harness.systems.engines.producer --jobs FILE --events FILE --workers N
--collect-s S``: waits for every worker to say it joined, enqueues each job through the
engine's client (a user's app: its task by name, ``job-N`` as the engine's id), polls the
engine's result API (a user's app without a result store: its hooks' ``completed``
events), writes ``job_submitted``,
``result_accepted`` / ``dead`` and ``master_stopped`` (once no execution is still running
in a live process: a job handed out twice is seen to its end). Exit 0 when every job has a result,
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
from harness.systems.engines.settings import (
    BROKER_URL_ENV,
    RUN_DIR_ENV,
    EngineSettings,
    RqSettings,
    engine_of,
    from_env,
)
from harness.systems.engines.userapp import UserApp, user_app

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


def _user_client(user: UserApp, settings: EngineSettings) -> Any:
    """The wrapper's client for the user's app: it enqueues ``user.task`` by name."""
    module = importlib.import_module(f"harness.systems.engines.wrap_{user.engine}")
    if isinstance(settings, RqSettings):
        url, queue = os.environ[BROKER_URL_ENV], (user.queues or ("default",))[0]
        return module.Client(user.task, url, queue, settings.retry_max, settings.job_timeout_s)
    return module.Client(user.task)


_ENDS = (contract.COMPLETED, contract.RETRY)


def _hook_events(run_dir: Path) -> list[dict[str, Any]]:
    """The hooks' started / completed / retry events of every worker, in time order."""
    found = []
    for path in sorted(run_dir.glob("worker-*.events.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if event.get("ev") in (contract.STARTED, *_ENDS) and isinstance(event.get("job"), int):
                found.append(event)
    return sorted(found, key=lambda event: float(event["t"]))


def _completions(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The first ``completed`` the hooks wrote for each job (the user's app may store no
    result: then what a worker reported is the delivery)."""
    first: dict[int, dict[str, Any]] = {}
    for event in events:
        if event["ev"] == contract.COMPLETED:
            first.setdefault(event["job"], event)
    return first


def _alive(pid: object) -> bool:
    try:
        os.kill(int(str(pid)), 0)
    except (OSError, ValueError):
        return False
    return True


def _in_flight(events: list[dict[str, Any]]) -> bool:
    """Whether an execution has started, not ended, and its process still runs (a job
    handed out twice is then seen to its end: its second value is evidence too)."""
    open_runs: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        runs = open_runs.setdefault(event["job"], [])
        if event["ev"] == contract.STARTED:
            runs.append(event)
        elif runs:
            runs.pop(0)
    return any(_alive(run.get("pid")) for runs in open_runs.values() for run in runs)


def _collect_from_hooks(
    log: EventWriter, run_dir: Path, jobs: set[int], deadline: float
) -> set[int]:
    """Accept each job's first hook ``completed``, until all have one or the deadline."""
    pending = set(jobs)
    while time.monotonic() < deadline:
        events = _hook_events(run_dir)
        if not pending and not _in_flight(events):
            break
        for job, event in sorted(_completions(events).items()):
            if job not in pending:
                continue
            pending.discard(job)
            fields = {"job": job, "worker": event.get("src"), "evidence": "hooks"}
            if event.get("ok") is True:
                log.write(contract.RESULT_ACCEPTED, ok=True, value=event.get("value"), **fields)
            else:
                log.write(contract.DEAD, ok=False, error=str(event.get("error")), **fields)
        time.sleep(POLL_S)
    return pending


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
    user = user_app()
    if user is None:
        client = importlib.import_module(_APPS[engine]).Client()
    else:  # a user's app: its task by name; its hooks' ``completed`` are the deliveries
        client = _user_client(user, settings)
    # A user's app without a result store: what its hooks saw complete is the delivery.
    by_hooks = user is not None and not client.has_results
    evidence = "hooks" if by_hooks else "results"
    log.write(
        contract.MASTER_READY,
        engine=engine,
        jobs=len(jobs),
        pid=os.getpid(),
        address="-",
        evidence=evidence,
    )
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
        if user is not None:
            task = user.task
        log.write(contract.JOB_SUBMITTED, job=job, task=task, args=job_args)
        submit = (
            (lambda job=job, job_args=job_args: client.submit(job, job_args))
            if user is not None
            else (lambda job=job, task=task, job_args=job_args: client.submit(job, task, job_args))
        )
        handles[job] = _retrying(log, "submit", submit, deadline)
    if by_hooks:
        missing = _collect_from_hooks(log, run_dir, set(handles), deadline)
        log.write(contract.MASTER_STOPPED, missing=sorted(missing))
        return EXIT_INCOMPLETE if missing else 0
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
    # Every result is in, but a job handed out twice may still be running: it is seen to its
    # end (its second value is evidence too), as the hooks' path does.
    while not pending and time.monotonic() < deadline and _in_flight(_hook_events(run_dir)):
        time.sleep(POLL_S)
    log.write(contract.MASTER_STOPPED, missing=sorted(pending))
    return EXIT_INCOMPLETE if pending else 0


if __name__ == "__main__":
    sys.exit(main())
