"""outputs_kept and the exits a scenario expects: what a master owes its results when a
disk fills, and a producer's exit judged like any process's."""

from __future__ import annotations

from harness.checks import CheckContext, clean_exits
from harness.checks.outputs import outputs_kept
from harness.checks.registry import judge
from harness.systems.distq import DistqSystem
from tests.support import HistoryBuilder

DISTQ_EXITS = DistqSystem.exit_codes
CONTEXT = CheckContext(documented=DISTQ_EXITS)


def _stopped_by_a_full_disk(code: int, written: list[int], printed: list[int]) -> HistoryBuilder:
    run = HistoryBuilder()
    for job in range(4):
        run.submit(job)
    for job in range(4):
        run.lease(job, "worker-1")
        run.accept(job, "worker-1", job * job)
    run.fault("disk_full", "master")
    run.effect(
        0, "disk_full", "master", output="results", exit_code=code, written=written,
        printed=printed, stopped_t=run.t + 1,
    )  # fmt: skip
    return run


def test_every_accepted_result_written_or_printed_and_exit_8_passes() -> None:
    run = _stopped_by_a_full_disk(8, [0, 1], [2, 3])
    assert outputs_kept(run.history(), CONTEXT) == []


def test_an_accepted_result_neither_written_nor_printed_fails_naming_the_job() -> None:
    run = _stopped_by_a_full_disk(8, [0, 1], [2])
    [violation] = outputs_kept(run.history(), CONTEXT)
    assert violation.jobs == (3,)
    assert violation.severity == "fail"


def test_another_exit_code_than_the_documented_one_fails() -> None:
    run = _stopped_by_a_full_disk(1, [0, 1, 2, 3], [])
    [violation] = outputs_kept(run.history(), CONTEXT)
    assert "exit code 1" in violation.message
    assert "expected 8" in violation.message


def test_a_disk_that_refused_nothing_judges_nothing_so_the_verdict_is_unknown() -> None:
    run = _stopped_by_a_full_disk(0, [0, 1, 2, 3], [])
    run.events[-1]["verified"] = False
    verdict = judge(run.history(), ["outputs_kept"], CONTEXT)
    assert verdict.status == "unknown"


def test_a_producer_exiting_1_fails_clean_exits_unless_the_scenario_expects_it() -> None:
    run = HistoryBuilder()
    codes = {"master": 0, "worker-1": 0, "producer": 1}
    [violation] = clean_exits(run.history(), CheckContext(exit_codes=codes, documented=DISTQ_EXITS))
    assert violation.message == "producer exited with 1, expected 0"
    expecting = CheckContext(
        exit_codes=codes, documented=DISTQ_EXITS, expected_exits={"producer": 1}
    )
    assert clean_exits(run.history(), expecting) == []
    codes["producer"] = 0  # expected to fail, it did not
    [violation] = clean_exits(run.history(), expecting)
    assert violation.message == "producer exited with 0, expected 1"
