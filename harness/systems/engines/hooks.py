"""What a user's app reports through its engine's hooks: one event per line, keyed by the
harness's job id, written by whichever process runs the hook.

The producer gives every job the engine id ``job-N`` (N the harness's job id) where the
engine takes one; a hook reads N back from the id the engine hands it. Pool children and
work-horses leave by ``os._exit``: each event is one unbuffered ``write`` (EventWriter).
"""

from __future__ import annotations

import os
import re
from typing import Any

from harness import contract
from harness.systems.engines.observe import next_delivery, worker_events

__all__ = ["child_lost", "completed", "engine_id", "job_of", "retried", "started"]

_ENGINE_ID = re.compile(r"^job-(\d+)$")


def engine_id(job: int) -> str:
    """The id the producer gives job ``job`` in the engine."""
    return f"job-{job}"


def job_of(identifier: object) -> int | None:
    """The harness's job id in an engine id, or None (a job the harness did not submit)."""
    found = _ENGINE_ID.match(str(identifier))
    return None if found is None else int(found.group(1))


def _error(exc: BaseException | str) -> str:
    """One line: an exception's type and message, or a traceback's last line."""
    if isinstance(exc, str):
        lines = [line for line in exc.splitlines() if line.strip()]
        return (lines[-1] if lines else "failed")[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


def _write(ev: str, job: int | None, **fields: Any) -> None:
    log = worker_events()
    if log is None or job is None:
        return
    log.write(ev, job=job, worker=log.src, pid=os.getpid(), **fields)


#: The delivery number of the execution each process is running, per job.
_attempts: dict[tuple[int, int], int] = {}


def _attempt(job: int) -> int:
    return _attempts.get((os.getpid(), job), 0)


def started(job: int | None, task: str) -> None:
    """An execution of ``job`` begins (counted: the n-th start of the job, by any worker)."""
    if job is None or worker_events() is None:
        return
    attempt = _attempts[(os.getpid(), job)] = next_delivery(job)
    _write(contract.STARTED, job, task=task, attempt=attempt)


def completed(job: int | None, value: Any = None, error: BaseException | str | None = None) -> None:
    """An execution of ``job`` ended for good: with ``value``, or ``error`` (no retry)."""
    if job is None:
        return
    if error is None:
        _write(contract.COMPLETED, job, attempt=_attempt(job), ok=True, value=_plain(value))
    else:
        _write(contract.COMPLETED, job, attempt=_attempt(job), ok=False, error=_error(error))


def retried(job: int | None, error: BaseException | str) -> None:
    """An execution of ``job`` failed and the engine will run it again."""
    _write(
        contract.RETRY, job, attempt=_attempt(job) if job is not None else 0, error=_error(error)
    )


def child_lost(job: int | None, error: BaseException | str) -> None:
    """The engine's parent process saw the process running ``job`` die."""
    _write(contract.CHILD_LOST, job, error=_error(error))


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it (the events are JSON lines): else its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _plain(item) for key, item in value.items()}
    return repr(value)
