"""What the tutorial apps share: the Job and Result records, the work, and its expected values.

Both sides import this module by the same name (``tasks``), as the tutorials do, so a
``Job`` pickled by the master unpickles in the worker.
"""

from __future__ import annotations

from typing import Any


class Job:
    """One unit of work: a number to square, named by ``job_id``."""

    def __init__(self, job_id: int, n: int) -> None:
        self.job_id = job_id
        self.n = n


class Result:
    """A worker's answer to one Job."""

    def __init__(self, job_id: int, value: int) -> None:
        self.job_id = job_id
        self.value = value


def report(n: int) -> str:
    """The n*n tutorial's result line."""
    return f"{n} * {n} = {n * n}"


def square(item: Any) -> Any:
    """The expected result of a task item as the harness decodes it: for a plain number,
    the report line; for a Job record, the Result record it should produce."""
    if isinstance(item, dict) and "n" in item:
        n = item["n"]
        return {"$class": "tasks.Result", "job_id": item["job_id"], "value": n * n}
    return report(item)
