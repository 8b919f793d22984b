"""What many tests share: where things are, one bounded wait, one history builder.

Every wait in the tests is bounded and polls a condition; none sleeps a fixed time as
synchronisation. The history builder writes events in the contract's format, one at a
time, each a little later than the one before, so their order is the order they are added.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.history import History

__all__ = ["REPO", "TESTS", "HistoryBuilder", "net_namespaces", "wait_until"]

#: The repository's root, and its tests folder.
REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"

#: The bound on a wait: generous, for a loaded two-core machine.
WAIT_S = 30.0


def wait_until(
    predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S, poll_s: float = 0.01
) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


class HistoryBuilder:
    """Builds the event logs of a run by hand; each event ``step_s`` after the previous
    (``at`` sets the time of the next). Methods return the event's history line."""

    def __init__(self, step_s: float = 0.01) -> None:
        self.events: list[dict[str, Any]] = []
        self.t = 0.0
        self.step_s = step_s
        self._lease_id = 0

    def at(self, t: float) -> HistoryBuilder:
        self.t = t
        return self

    def add(self, src: str, ev: str, **fields: Any) -> int:
        self.t = round(self.t + self.step_s, 6)
        self.events.append({"t": self.t, "src": src, "ev": ev, **fields})
        return len(self.events) - 1

    def master(self, ev: str, **fields: Any) -> int:
        return self.add("master", ev, **fields)

    def harness(self, ev: str, **fields: Any) -> int:
        return self.add("harness", ev, **fields)

    def submit(
        self,
        job: int,
        task: str = "square",
        args: Any = None,
        batch: int | None = None,
        limit: float | None = None,
    ) -> int:
        args = [job] if args is None else args
        return self.master(
            "job_submitted", job=job, task=task, args=args, batch=batch, time_limit_s=limit
        )

    def lease(self, job: int, worker: str, attempt: int = 1, batch: int | None = None) -> int:
        self._lease_id += 1
        return self.master(
            "leased", job=job, attempt=attempt, lease=self._lease_id, worker=worker, batch=batch
        )

    def accept(self, job: int, worker: str, value: Any = None, attempt: int = 1) -> int:
        """The master accepts ``value`` (by default the square of the job id)."""
        value = job * job if value is None else value
        return self.master(
            "result_accepted", job=job, attempt=attempt, worker=worker, ok=True, value=value
        )

    def failed(self, job: int, attempt: int, reason: str = "JobFailed") -> int:
        return self.master("attempt_failed", job=job, attempt=attempt, reason=reason)

    def lost(self, worker: str, jobs: list[int], reason: str, counted: bool = True) -> int:
        return self.master("worker_lost", worker=worker, jobs=jobs, reason=reason, counted=counted)

    def fault(self, action: str, target: str, fault: int = 0, **fields: Any) -> int:
        return self.harness("fault", fault=fault, action=action, target=target, **fields)

    def effect(self, fault: int, action: str, target: str, **fields: Any) -> int:
        """The injector's measurement that a fault took effect (verified unless told)."""
        fields = {"verified": True, "pids": [1234], **fields}
        return self.harness("fault_effect", fault=fault, action=action, target=target, **fields)

    def history(self) -> History:
        return History(self.events)


def net_namespaces() -> set[int]:
    """Every network namespace some process is in or holds a descriptor of."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        links = [f"/proc/{entry}/ns/net"]
        try:
            links += [f"/proc/{entry}/fd/{fd}" for fd in os.listdir(f"/proc/{entry}/fd")]
        except OSError:
            continue
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target.startswith("net:["):
                found.add(int(target[5:-1]))
    return found
