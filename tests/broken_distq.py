"""Deliberately broken variants of distq, for proving that the harness catches bugs.

Run as ``python -m tests.broken_distq master|worker ...`` with ``DISTQ_BROKEN`` naming
the variant; otherwise it is exactly ``python -m distq``. Test-only: never shipped.

- ``no-dedup``: the board accepts every result, so a late result is delivered twice.
- ``wrong-value``: workers report ``n*n + 1`` for job 7.
- ``never-requeue``: a job whose attempt fails is forgotten instead of retried.
- ``batch-early``: the next batch opens while one job of the current batch is unfinished.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from distq import worker
from distq.board import JobBoard, JobState, Outcome
from distq.jobs import Result

VARIANT = os.environ.get("DISTQ_BROKEN", "")


def _no_dedup(self: JobBoard, result: Result) -> Outcome:
    entry = self._entries.get(result.job_id)
    if entry is not None and entry.result is not None:
        entry.result = None  # forget the first result: the next one is "first" again
        entry.state = JobState.LEASED
        self._unfinished += 1
        if entry.job.batch is not None:
            self._batch_unfinished[entry.job.batch] += 1
    return _original_finish(self, result)


def _never_requeue(self: JobBoard, entry: Any, reason: str) -> None:
    self._release_holder(entry)
    entry.state = JobState.LEASED  # neither pending nor terminal: lost
    self._emit("requeued", job=entry.job.job_id, attempts=entry.attempts, reason=reason)


def _batch_early(self: JobBoard, entry: Any) -> None:
    self._unfinished -= 1
    batch = entry.job.batch
    if batch is None:
        return
    self._batch_unfinished[batch] -= 1
    if batch == self._open_batch and self._batch_unfinished[batch] <= 1:
        self._emit("batch_closed", batch=batch)
        self._open_next_batch()


_original_finish = JobBoard._finish
_original_add = worker._Session.add


def _wrong_value_add(self: Any, result: Result) -> None:
    if (result.job_id == 7 or VARIANT == "all-wrong") and result.ok:
        result = Result(result.job_id, True, result.value + 1, None, result.worker, result.attempt)
    _original_add(self, result)


def install(variant: str) -> None:
    if variant == "no-dedup":
        JobBoard._finish = _no_dedup  # type: ignore[method-assign]
    elif variant == "never-requeue":
        JobBoard._requeue = _never_requeue  # type: ignore[method-assign]
    elif variant == "batch-early":
        JobBoard._terminal = _batch_early  # type: ignore[method-assign]
    elif variant in ("wrong-value", "all-wrong"):
        worker._Session.add = _wrong_value_add  # type: ignore[method-assign]
    elif variant:
        raise SystemExit(f"unknown DISTQ_BROKEN variant {variant!r}")


if __name__ == "__main__":
    install(VARIANT)
    from distq.cli import main

    sys.exit(main())
