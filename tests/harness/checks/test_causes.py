"""The cause a lost-job violation names, one history per cause: a key of
``contract.LOST_CAUSES`` and a clause that tells it."""

from __future__ import annotations

from typing import Any

import pytest

from harness import contract
from harness.checks import exactly_once
from harness.checks.causes import lost_cause
from harness.history import History


def ev(t: float, src: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"t": t, "src": src, "ev": name, **fields}


SUBMIT = ev(0.1, "master", "job_submitted", job=0, task="t", args=[1])
LEASE = ev(0.2, "master", "leased", job=0, attempt=1, lease=1, worker="worker-1")
REPORT = ev(0.3, "worker-1", "completed", job=0, attempt=1, value=1)
STOP = ev(0.4, "master", "master_stopped")
LOST = ev(0.3, "master", "worker_lost", worker="worker-1", jobs=[0])
STARTED = ev(0.2, "worker-1", "started", job=0, attempt=1, worker="worker-1")

CASES: list[tuple[list[dict[str, Any]], str, str]] = [
    ([SUBMIT], "never_handed_out", "it was never handed out"),
    (
        [SUBMIT, {**LEASE, "client_gone": True}],
        "handed_to_dead_get",
        "it was handed to a get whose caller worker-1 was already dead",
    ),
    (
        [SUBMIT, LEASE, REPORT],
        "result_not_taken",
        "its result was put by worker-1 but the master never took it",
    ),
    (
        [SUBMIT, LEASE, {**REPORT, "unanswered": True}],
        "result_unanswered",
        "its result was put by worker-1 but never reached the app",
    ),
    (
        [SUBMIT, LEASE, STOP, {**REPORT, "t": 0.5}],
        "result_after_shutdown",
        "its result was put by worker-1 after the master shut down",
    ),
    (
        [SUBMIT, LEASE, ev(0.3, "harness", "fault", action="kill", target="worker-1")],
        "holder_killed",
        "its holder worker-1 died holding it (fault kill at t=0.3)",
    ),
    (
        [
            SUBMIT,
            LEASE,
            ev(0.3, "harness", "fault", action="kill_tree", target="worker-1"),
            {**LOST, "t": 0.31},
        ],
        "holder_killed",
        "its holder worker-1 died holding it (fault kill_tree at t=0.3)",
    ),
    (
        [SUBMIT, LEASE, LOST],
        "holder_lost",
        "its holder worker-1 went away holding it (its connection closed at t=0.3)",
    ),
    (
        [SUBMIT, LEASE, LOST, ev(0.35, "worker-1", "worker_exit", code=0)],
        "holder_exited",
        "its holder worker-1 exited by itself (exit 0) while it held it",
    ),
    (
        [SUBMIT, LEASE, LOST, ev(0.9, "harness", "run_finished", exit_codes={"worker-1": 0})],
        "holder_exited",
        "its holder worker-1 exited by itself (exit 0) while it held it",
    ),
    (
        [SUBMIT, LEASE, {**LOST, "closed_by": "app"}],
        "connection_cut",
        "worker-1's connection was cut while it held it (at t=0.3)",
    ),
    (
        [SUBMIT, LEASE, STOP, ev(0.5, "master", "worker_lost", worker="worker-1")],
        "master_shut_down",
        "the master shut down while worker-1 held it",
    ),
    ([SUBMIT, LEASE], "no_result", "it was leased to worker-1 (attempt 1) and no result came"),
    (
        [SUBMIT, STARTED, ev(0.3, "harness", "fault", action="kill", target="worker-1")],
        "holder_killed",
        "its holder worker-1 died holding it (fault kill at t=0.3)",
    ),
    ([SUBMIT, STARTED], "no_result", "it was started on worker-1 (attempt 1) and no result came"),
]


@pytest.mark.parametrize(("events", "key", "clause"), CASES)
def test_each_lost_job_names_its_cause(events: list[dict[str, Any]], key: str, clause: str) -> None:
    history = History(events)

    cause = lost_cause(history, 0)
    (violation,) = exactly_once(history)

    assert (cause.key, cause.clause[: len(clause)]) == (key, clause)
    assert violation.message == f"job 0 lost: no terminal result: {cause.clause}"
    assert violation.cause == key
    assert set(cause.lines) <= set(violation.lines)


def test_every_cause_of_the_vocabulary_is_reachable() -> None:
    assert {key for _, key, _ in CASES} == set(contract.LOST_CAUSES)
