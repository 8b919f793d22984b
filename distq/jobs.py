"""Jobs, results, task references and the built-in tasks.

A task is referenced as ``"module:function"`` or by the short name of a built-in task.
The built-ins exist so that scenarios can inject job-level faults: ``fail`` raises,
``crash`` hard-exits the process running it, ``hang`` never returns.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BUILTIN_TASKS",
    "Job",
    "JobFailed",
    "Result",
    "TaskNotFound",
    "WireJob",
    "WireResult",
    "resolve_task",
    "result_to_wire",
]


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work as handed to a worker under a lease."""

    job_id: int
    task: str
    args: tuple[Any, ...] = ()
    attempt: int = 1
    time_limit_s: float | None = None
    batch: int | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one attempt of one job: a value, or an error message."""

    job_id: int
    ok: bool
    value: Any = None
    error: str | None = None
    worker: str = ""
    attempt: int = 1

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "job": self.job_id,
            "ok": self.ok,
            "value": self.value,
            "error": self.error,
            "worker": self.worker,
            "attempt": self.attempt,
        }


#: A leased job on the wire, master -> worker: the fields of :class:`Job` in order, so
#: ``Job(*wire)`` rebuilds it. Plain tuples pickle about twenty times faster than a Job.
WireJob = tuple[int, str, tuple[Any, ...], int, float | None, int | None]

#: The outcome of one attempt on the wire, worker -> master (the worker is the caller):
#: ``(job_id, attempt, ok, value, error)``.
WireResult = tuple[int, int, bool, Any, str | None]


def result_to_wire(result: Result) -> WireResult:
    return (result.job_id, result.attempt, result.ok, result.value, result.error)


class JobFailed(RuntimeError):
    """Raised by the built-in ``fail`` task."""


class TaskNotFound(LookupError):
    """A task reference that names no importable callable."""


def square(n: int | float, delay_s: float = 0.0) -> int | float:
    """n * n, optionally after sleeping ``delay_s`` (to make work visible)."""
    if delay_s > 0:
        time.sleep(delay_s)
    return n * n


def sleep(seconds: float, value: Any = None) -> Any:
    """Sleep, then return ``value`` (or ``seconds`` when no value is given)."""
    time.sleep(seconds)
    return seconds if value is None else value


def fail(message: str = "job failed on purpose") -> None:
    """Always raises :class:`JobFailed`."""
    raise JobFailed(message)


def crash(exit_code: int = 13) -> None:
    """Hard exit of the process running the job: no cleanup, no exception."""
    os._exit(exit_code)


def hang() -> None:
    """Never returns (until killed from outside)."""
    while True:
        time.sleep(3600)


def echo(*args: Any) -> Any:
    """Returns its single argument, or the list of its arguments."""
    return args[0] if len(args) == 1 else list(args)


BUILTIN_TASKS: dict[str, Callable[..., Any]] = {
    "square": square,
    "sleep": sleep,
    "fail": fail,
    "crash": crash,
    "hang": hang,
    "echo": echo,
}


def resolve_task(reference: str) -> Callable[..., Any]:
    """Turn ``"square"`` or ``"package.module:function"`` into the callable it names."""
    if reference in BUILTIN_TASKS:
        return BUILTIN_TASKS[reference]
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise TaskNotFound(
            f"task {reference!r} is neither a built-in ({', '.join(BUILTIN_TASKS)}) "
            "nor a 'module:function' reference"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskNotFound(f"task {reference!r}: cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise TaskNotFound(
                f"task {reference!r}: {module_name!r} has no {attribute!r}"
            ) from None
    if not callable(target):
        raise TaskNotFound(f"task {reference!r} is not callable")
    return target  # type: ignore[no-any-return]
