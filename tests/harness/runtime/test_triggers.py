"""Which worker a job trigger names, and when it fires, attempt by attempt."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runtime.faults import Trigger, _Tracker
from harness.scenario import load_scenario, run_scenario


def tracker_with_two_attempts_of_job_3() -> _Tracker:
    """Job 3: attempt 1 leased and started on worker-1, attempt 2 on worker-2."""
    tracker = _Tracker()
    tracker.master_event({"ev": "leased", "job": 3, "attempt": 1, "worker": "worker-1"})
    tracker.worker_event({"ev": "started", "job": 3, "attempt": 1, "src": "worker-1"})
    tracker.master_event({"ev": "requeued", "job": 3, "attempts": 1})
    tracker.master_event({"ev": "leased", "job": 3, "attempt": 2, "worker": "worker-2"})
    tracker.worker_event({"ev": "started", "job": 3, "attempt": 2, "src": "worker-2"})
    # After a job process crash, a re-run repeats "started" for the same attempt.
    tracker.worker_event({"ev": "started", "job": 3, "attempt": 2, "src": "worker-9"})
    return tracker


@pytest.mark.parametrize("kind", ["job_leased", "job_started"])
def test_an_attempt_trigger_names_the_worker_of_that_attempt(kind: str) -> None:
    tracker = tracker_with_two_attempts_of_job_3()
    assert tracker.worker_of(Trigger(kind, 3, attempt=1)) == "worker-1"
    assert tracker.worker_of(Trigger(kind, 3, attempt=2)) == "worker-2"
    assert tracker.worker_of(Trigger(kind, 3, attempt=3)) is None


@pytest.mark.parametrize("kind", ["job_leased", "job_started"])
def test_an_attempt_trigger_waits_for_its_attempt(kind: str) -> None:
    tracker = _Tracker()
    tracker.master_event({"ev": "leased", "job": 3, "attempt": 1, "worker": "worker-1"})
    tracker.worker_event({"ev": "started", "job": 3, "attempt": 1, "src": "worker-1"})
    assert tracker.fired(Trigger(kind, 3), 0.0)
    assert not tracker.fired(Trigger(kind, 3, attempt=2), 0.0)
    tracker.master_event({"ev": "leased", "job": 3, "attempt": 2, "worker": "worker-2"})
    tracker.worker_event({"ev": "started", "job": 3, "attempt": 2, "src": "worker-2"})
    assert tracker.fired(Trigger(kind, 3, attempt=2), 0.0)


def test_without_an_attempt_started_names_the_first_and_leased_the_current_holder() -> None:
    tracker = tracker_with_two_attempts_of_job_3()
    assert tracker.worker_of(Trigger("job_started", 3)) == "worker-1"
    assert tracker.worker_of(Trigger("job_leased", 3)) == "worker-2"
    tracker.master_event({"ev": "result_accepted", "job": 3, "attempt": 2, "worker": "worker-2"})
    assert tracker.worker_of(Trigger("job_leased", 3)) is None  # nobody holds a finished job


@pytest.mark.parametrize(
    ("kind", "attempt", "message"),
    [
        ("job_completed", 2, "attempt applies to job_leased and job_started, not job_completed"),
        ("after_s", 1, "attempt applies to job_leased and job_started, not after_s"),
        ("job_started", 0, "attempt counts from 1, got 0"),
    ],
)
def test_an_attempt_where_it_does_not_apply_is_refused(
    kind: str, attempt: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Trigger(kind, 1, attempt=attempt)


def test_auth_rejected_counts_every_connection_turned_away() -> None:
    tracker = _Tracker()
    trigger = Trigger("auth_rejected", 2)
    tracker.master_event({"ev": "auth_rejected", "peer": "127.0.0.1:1", "kind": "bad_key"})
    assert not tracker.fired(trigger, 0.0)
    tracker.master_event({"ev": "handshake_timeout", "peer": "127.0.0.1:2"})
    assert not tracker.fired(trigger, 0.0)
    tracker.master_event({"ev": "auth_rejected", "peer": "127.0.0.1:3", "kind": "protocol"})
    assert tracker.fired(trigger, 0.0)


def test_wait_s_follows_an_event_trigger_only() -> None:
    assert Trigger("job_started", 0, wait_s=0.5).record() == {"job_started": 0, "wait_s": 0.5}
    with pytest.raises(ValueError, match="with after_s, add it to after_s"):
        Trigger("after_s", 1.0, wait_s=0.5)
    with pytest.raises(ValueError, match=r"wait_s = -1 is not a number of seconds >= 0"):
        Trigger("job_started", 0, wait_s=-1)


@pytest.mark.processes
def test_a_fault_with_wait_s_acts_that_long_after_its_event(tmp_path: Path) -> None:
    path = tmp_path / "wait.toml"
    path.write_text(
        """scenario = 2
name = "kill the holder a second into its job"
description = "wait_s: the kill comes a second after job 0 started"
seed = 1
[cluster]
workers = 2
lease_timeout_s = 2.0
[jobs]
count = 4
delay_s = 3.0
[[faults]]
when = { job_started = 0, wait_s = 1.0 }
do = "kill"
target = "holder"
[expect]
checks = ["exactly_once", "correct_values", "fault_coverage"]
within_s = 60
""",
        encoding="utf-8",
    )
    outcome = run_scenario(load_scenario(path), tmp_path / "run")
    assert outcome.status == "pass", outcome.report()
    history = outcome.result.history
    [fault] = history.select("fault")
    assert fault.get("trigger") == {"job_started": 0, "wait_s": 1.0}
    started = min(e.t for e in history.select("started", job=0))
    assert fault.t - started >= 1.0  # not before its wait
    # The job runs 3 s: the kill found its holder mid-job, and job 0 ran again elsewhere.
    assert [e.get("verified") for e in history.select("fault_effect")] == [True]
    assert len(history.select("leased", job=0)) == 2
