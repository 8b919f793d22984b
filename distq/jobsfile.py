"""The jobs file: one JSON object per line, ``{"task": ..., "args": [...], "id": ...,
"time_limit_s": ...}`` (only ``task`` required), read into ``JobSpec`` records.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from distq.errors import UsageError

__all__ = ["JobSpec", "read_jobs_file"]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to submit: what the jobs file or ``--task/--count`` describe."""

    task: str
    args: tuple[Any, ...] = ()
    job_id: int | None = None
    time_limit_s: float | None = None


def read_jobs_file(path: str) -> list[JobSpec]:
    """Every job in the file at ``path``; bad input raises ``UsageError`` naming the line."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise UsageError(f"cannot read --jobs {path}: {exc.strerror or exc}") from None
    specs: list[JobSpec] = []
    ids = _Ids()
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UsageError(f"{where}: not UTF-8 (byte {raw[exc.start]:#04x})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
            except RecursionError:
                raise UsageError(f"{where}: nested too deeply") from None
            specs.append(_job_spec(record, where, ids))
    return specs


class _Ids:
    """The ids the master will give the jobs read so far, as ``JobBoard.submit`` does:
    a job without an id takes the next one after the highest so far."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.next_id = 0

    def take(self, job_id: int | None, where: str) -> None:
        if job_id is None:
            job_id = self.next_id
        elif job_id in self.seen:
            raise UsageError(f"{where}: job id {job_id} is already taken (by an earlier line)")
        self.seen.add(job_id)
        self.next_id = max(self.next_id, job_id + 1)


def _job_spec(record: Any, where: str, ids: _Ids) -> JobSpec:
    if not isinstance(record, dict):
        raise UsageError(f"{where}: expected a JSON object, got {type(record).__name__}")
    unknown = set(record) - {"task", "args", "id", "time_limit_s"}
    if unknown:
        raise UsageError(
            f"{where}: unknown key {sorted(unknown)[0]!r} (expected task, args, id, time_limit_s)"
        )
    task = record.get("task")
    if not isinstance(task, str) or not task:
        raise UsageError(f"{where}: 'task' must be a non-empty string, got {task!r}")
    args = record.get("args", [])
    if not isinstance(args, list):
        raise UsageError(f"{where}: 'args' must be a list, got {args!r}")
    job_id = record.get("id")
    if job_id is not None and (
        not isinstance(job_id, int) or isinstance(job_id, bool) or job_id < 0
    ):
        raise UsageError(f"{where}: 'id' must be a whole number >= 0, got {job_id!r}")
    ids.take(job_id, where)
    limit = record.get("time_limit_s")
    if limit is not None and (
        isinstance(limit, bool)
        or not isinstance(limit, int | float)
        or not 0 < limit < math.inf  # NaN fails too: it would mean no limit at all
    ):
        raise UsageError(f"{where}: 'time_limit_s' must be a finite number > 0, got {limit!r}")
    return JobSpec(task, tuple(args), job_id, None if limit is None else float(limit))
