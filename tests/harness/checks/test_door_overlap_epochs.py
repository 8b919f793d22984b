"""admitted (every right-key worker joined), no_overlap (no job on two workers under two
standing leases), no_stale_results (a result answers a lease of the master that accepted
it) and the history's master epochs they rest on, on histories built by hand."""

from __future__ import annotations

from harness.checks import (
    CheckContext,
    admitted,
    clean_exits,
    judge,
    no_overlap,
    no_stale_results,
)
from harness.systems.distq import DistqSystem
from tests.support import HistoryBuilder

DISTQ_EXITS = DistqSystem.exit_codes


def _door(*joined: str) -> HistoryBuilder:
    run = HistoryBuilder()
    run.master("master_ready", address="127.0.0.1:1", pid=1)
    run.master("auth_rejected", peer="127.0.0.1:5", kind="busy", reason="too many")
    run.master("auth_rejected", peer="127.0.0.1", kind="busy", count=9)
    for name in joined:
        run.master("worker_joined", worker=name, pid=2, host="h")
    return run


def test_admitted_passes_when_every_right_key_worker_joined() -> None:
    run = _door("worker-1", "worker-2")
    run.fault("wrong_key_worker", "intruder-1")
    codes = {"master": 0, "worker-1": 0, "worker-2": 0, "intruder-1": 3}
    assert judge(run.history(), ["admitted"], CheckContext(exit_codes=codes)).status == "pass"


def test_admitted_fails_for_a_worker_that_gave_up_on_busy() -> None:
    run = _door("worker-1")
    run.add("worker-2", "worker_exit", code=7, reason="the master is busy")
    codes = {"master": 0, "worker-1": 0, "worker-2": 7}
    [violation] = admitted(run.history(), CheckContext(exit_codes=codes))
    assert violation.message.startswith("worker-2, started with the right key, never joined")
    assert "exited 7 (the master is busy)" in violation.message
    assert "busy 10 time(s)" in violation.message
    assert judge(run.history(), ["admitted"], CheckContext(exit_codes=codes)).status == "fail"


def test_admitted_without_exit_codes_is_unknown() -> None:
    assert judge(_door("worker-1").history(), ["admitted"]).status == "unknown"


def _two_runs(*, taken_back: bool) -> HistoryBuilder:
    """worker-1 runs job 0; job 0 is leased to worker-2 (after the master took worker-1's
    lease back, or while it stands) and worker-2 runs it while worker-1 still does."""
    run = HistoryBuilder()
    run.submit(0)
    run.lease(0, "worker-1")
    run.add("worker-1", "started", job=0, attempt=1, worker="worker-1")
    if taken_back:
        run.lost("worker-1", [0], "worker rejoined", counted=False)
        run.master("worker_rejoined", worker="worker-1", handed_back=[0])
    run.lease(0, "worker-2")
    run.add("worker-2", "started", job=0, attempt=1, worker="worker-2")
    run.add("worker-1", "completed", job=0, attempt=1, worker="worker-1", ok=True)
    run.accept(0, "worker-1")
    run.add("worker-2", "completed", job=0, attempt=1, worker="worker-2", ok=True)
    run.master("duplicate_dropped", job=0, attempt=1, worker="worker-2")
    return run


def test_no_overlap_allows_two_runs_once_the_first_lease_was_taken_back() -> None:
    verdict = judge(_two_runs(taken_back=True).history(), ["no_overlap"])
    assert verdict.status == "pass"
    assert verdict.evidence == (("no_overlap", 1, "pairs of runs at once"),)


def test_no_overlap_fails_two_runs_under_two_standing_leases() -> None:
    [violation] = no_overlap(_two_runs(taken_back=False).history())
    assert violation.jobs == (0,)
    assert "ran on worker-1 and worker-2 at once" in violation.message


def test_no_overlap_with_runs_one_after_the_other_proved_nothing() -> None:
    run = HistoryBuilder()
    run.submit(0)
    run.lease(0, "worker-1")
    run.add("worker-1", "started", job=0, attempt=1, worker="worker-1")
    run.add("worker-1", "completed", job=0, attempt=1, worker="worker-1", ok=True)
    run.accept(0, "worker-1")
    assert judge(run.history(), ["no_overlap"]).status == "unknown"


def _fresh_restart(*, stale: bool, resumed: bool = False) -> HistoryBuilder:
    """worker-1 holds job 0 of the first master; the master is restarted (afresh, or on its
    journal); job 0 of the new one is leased to worker-2, and the result accepted comes
    from worker-1 (its old lease) or from worker-2."""
    run = HistoryBuilder()
    run.master("master_ready", address="127.0.0.1:1", pid=1)
    run.submit(0)
    run.master("worker_joined", worker="worker-1", pid=2, host="h")
    run.lease(0, "worker-1")
    run.fault("restart_master", "master")
    run.effect(0, "restart_master", "master", down_t=run.t + 0.001)
    run.submit(0)
    ready = {"resumed": True} if resumed else {}
    run.master("master_ready", address="127.0.0.1:1", pid=3, **ready)
    run.lease(0, "worker-2")
    run.accept(0, "worker-1" if stale else "worker-2")
    return run


def test_a_fresh_master_starts_a_new_epoch() -> None:
    history = _fresh_restart(stale=False).history()
    first, second = history.incarnations()
    assert (first.epoch, second.epoch, second.resumed) == (0, 1, False)
    assert [(lease.worker, lease.epoch, lease.end) for lease in history.leases(0)] == [
        ("worker-1", 0, "open"),  # died with its master, never superseded by the new one's
        ("worker-2", 1, "completed"),
    ]
    assert history.submitted()[0].line == 6  # the new master's submission, not line 1
    resumed = _fresh_restart(stale=False, resumed=True).history()
    assert [inc.epoch for inc in resumed.incarnations()] == [0, 0]
    assert [lease.end for lease in resumed.leases(0)] == ["superseded", "completed"]


def test_no_stale_results_fails_an_old_masters_lease_answered_to_a_fresh_one() -> None:
    [violation] = no_stale_results(_fresh_restart(stale=True).history())
    assert violation.jobs == (0,)
    assert "held job 0 of an earlier master (epoch 0)" in violation.message
    assert judge(_fresh_restart(stale=False).history(), ["no_stale_results"]).status == "pass"
    # On its journal the master is the same one: the old lease is its own.
    resumed = _fresh_restart(stale=True, resumed=True).history()
    assert judge(resumed, ["no_stale_results"]).status == "pass"


def test_clean_exits_lets_a_worker_of_a_master_restarted_afresh_exit_5() -> None:
    codes = {"master": 0, "worker-1": 5, "worker-2": 0}
    context = CheckContext(exit_codes=codes, documented=DISTQ_EXITS)
    assert clean_exits(_fresh_restart(stale=False).history(), context) == []
    [violation] = clean_exits(_fresh_restart(stale=False, resumed=True).history(), context)
    assert violation.message == "worker-1 exited with 5, expected 0"


def test_exactly_once_reads_the_results_output_of_a_master_restarted_afresh() -> None:
    """The first master accepted job 0 and wrote it out; the fresh one writes job 0 (its own
    job 0) after it in the same output: twice is right, three times is not."""
    run = HistoryBuilder()
    run.master("master_ready", address="127.0.0.1:1", pid=1)
    run.submit(0)
    run.lease(0, "worker-1")
    run.accept(0, "worker-1")
    run.fault("restart_master", "master")
    run.effect(0, "restart_master", "master", down_t=run.t + 0.001)
    run.submit(0)
    run.master("master_ready", address="127.0.0.1:1", pid=3)
    run.lease(0, "worker-2")
    run.accept(0, "worker-2")
    for _ in range(2):
        run.add("results", "result_output", job=0, ok=True, value=0)
    assert judge(run.history(), ["exactly_once"]).status == "pass"
    run.add("results", "result_output", job=0, ok=True, value=0)
    [violation] = judge(run.history(), ["exactly_once"]).violations
    assert violation.message == "job 0 is 3 times in the results output"
