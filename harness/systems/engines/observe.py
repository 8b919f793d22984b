"""The instrumented tasks every engine's workers run, and the events they write.

Each execution appends ``started`` and then ``completed`` (ok or not) to the worker's event
log, with the job id, the worker, the pid and the delivery number (how many times any
worker has started this job, counted in a file of the run directory). A task's value
travels wrapped, ``{"value": v}``, so that ``None`` never reads as "no result yet".
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import contract
from harness.contract import EventWriter
from harness.systems.engines.settings import RUN_DIR_ENV

__all__ = ["TASKS", "execute", "joined", "next_delivery", "worker_events"]


def _square(n: int, delay_s: float = 0.0) -> int:
    if delay_s:
        time.sleep(delay_s)
    return n * n


def _sleep(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return seconds if value is None else value


def _fail(*_: Any) -> Any:
    raise RuntimeError("task fail: raised on purpose")


def _crash(*_: Any) -> Any:
    os._exit(70)  # the process running the job dies, as distq's crash does


def _hang(*_: Any) -> Any:
    while True:
        time.sleep(3600)


def _echo(*args: Any) -> Any:
    return args[0] if len(args) == 1 else list(args)


#: The built-in tasks scenarios name (as in distq: the checks know their values).
TASKS: dict[str, Callable[..., Any]] = {
    "square": _square,
    "sleep": _sleep,
    "fail": _fail,
    "crash": _crash,
    "hang": _hang,
    "echo": _echo,
}

_logs: dict[int, EventWriter] = {}  # per pid: a forked child must not share its parent's offset


def worker_events() -> EventWriter | None:
    """This process's worker event log, or None outside a harness worker (the producer)."""
    name, path = os.environ.get(contract.PROCESS_ENV), os.environ.get(contract.EVENTS_ENV)
    if not name or not path or not os.environ.get(RUN_DIR_ENV):
        return None
    log = _logs.get(os.getpid())
    if log is None:
        log = _logs[os.getpid()] = EventWriter(path, name)
    return log


def joined(how: str) -> None:
    """Say the worker is up (the producer waits for every worker before submitting)."""
    log = worker_events()
    if log is not None:
        log.write(contract.WORKER_JOINED, worker=log.src, pid=os.getpid(), how=how)


def next_delivery(job: int) -> int:
    """How many times job ``job`` has been started, this one included."""
    folder = Path(os.environ[RUN_DIR_ENV]) / "deliveries"
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / str(job), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b".")
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def execute(task: str, job: int, args: list[Any]) -> dict[str, Any]:
    """Run built-in ``task`` on ``args`` as job ``job``, writing started/completed."""
    log = worker_events()
    if log is None:
        raise RuntimeError(f"{contract.EVENTS_ENV} not set: this task runs under the harness")
    fields = {"job": job, "worker": log.src, "pid": os.getpid()}
    fields["attempt"] = next_delivery(job)
    log.write(contract.STARTED, task=task, **fields)
    try:
        value = TASKS[task](*args)
    except BaseException as exc:
        log.write(contract.COMPLETED, ok=False, error=f"{type(exc).__name__}: {exc}", **fields)
        raise
    log.write(contract.COMPLETED, ok=True, value=value, **fields)
    return {"value": value}
