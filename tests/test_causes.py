"""The cause a lost-job violation names, one history per cause."""

from __future__ import annotations

from typing import Any

import pytest

from harness.checks import exactly_once
from harness.checks.causes import lost_cause
from harness.history import History


def ev(t: float, src: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"t": t, "src": src, "ev": name, **fields}


SUBMIT = ev(0.1, "master", "job_submitted", job=0, task="t", args=[1])
LEASE = ev(0.2, "master", "leased", job=0, attempt=1, lease=1, worker="worker-1")
REPORT = ev(0.3, "worker-1", "completed", job=0, attempt=1, value=1)
STOP = ev(0.4, "master", "master_stopped")


@pytest.mark.parametrize(
    ("events", "cause"),
    [
        ([SUBMIT], "it was never handed out"),
        (
            [SUBMIT, {**LEASE, "client_gone": True}],
            "it was handed to a get whose caller worker-1 was already dead",
        ),
        ([SUBMIT, LEASE, REPORT], "its result was put by worker-1 but the master never took it"),
        (
            [SUBMIT, LEASE, {**REPORT, "unanswered": True}],
            "its result was put by worker-1 but never reached the app",
        ),
        (
            [SUBMIT, LEASE, STOP, {**REPORT, "t": 0.5}],
            "its result was put by worker-1 after the master shut down",
        ),
        (
            [SUBMIT, LEASE, ev(0.3, "harness", "fault", action="kill", target="worker-1")],
            "its holder worker-1 died holding it (fault kill at t=0.3)",
        ),
        (
            [SUBMIT, LEASE, ev(0.3, "master", "worker_lost", worker="worker-1", jobs=[0])],
            "its holder worker-1 died holding it (its connection closed at t=0.3)",
        ),
        (
            [SUBMIT, LEASE, ev(0.3, "master", "worker_lost", worker="worker-1", closed_by="app")],
            "worker-1's connection was cut while it held it (at t=0.3)",
        ),
        (
            [SUBMIT, LEASE, STOP, ev(0.5, "master", "worker_lost", worker="worker-1")],
            "the master shut down while worker-1 held it",
        ),
        ([SUBMIT, LEASE], "it was leased to worker-1 (attempt 1) and no result came"),
    ],
)
def test_each_lost_job_names_its_cause(events: list[dict[str, Any]], cause: str) -> None:
    history = History(events)

    found, lines = lost_cause(history, 0)
    (violation,) = exactly_once(history)

    assert found.startswith(cause)
    assert violation.message == f"job 0 lost: no terminal result: {found}"
    assert set(lines) <= set(violation.lines)
