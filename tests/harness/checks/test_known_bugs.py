"""What a known-bug scenario (``expect_violation``) concludes from a run's verdict: a pin
names a check, and may name the exact jobs and their cause; anything else fails."""

from __future__ import annotations

from harness.checks import Pin, Verdict, Violation, known_bug_outcome
from harness.checks.verdict import task_text

LOST = Violation("exactly_once", "job 3 lost", jobs=(3,), cause="holder_killed")
LOST_TOO = Violation("exactly_once", "job 5 lost", jobs=(5,), cause="holder_killed")
MISSED = Violation("fault_coverage", "planned fault 0 never triggered", severity="unknown")
DIRTY = Violation("clean_exits", "worker-1 exited 1 with a traceback")


def outcome(pins: tuple[Pin, ...], *found: Violation) -> tuple[str, str]:
    fails = tuple(v for v in found if v.severity == "fail")
    unknowns = tuple(v for v in found if v.severity == "unknown")
    status = "fail" if fails else "unknown" if unknowns else "pass"
    result = known_bug_outcome("s", pins, Verdict(status, fails, unknowns))  # type: ignore[arg-type]
    assert result.expected == tuple(dict.fromkeys(pin.check for pin in pins))
    return result.status, result.message


def test_the_known_violation_alone_passes_and_says_which_it_matched() -> None:
    result = known_bug_outcome("s", (Pin("exactly_once"),), Verdict("fail", (LOST,)))
    assert (result.status, result.message) == (
        "pass",
        "s: pass (the known exactly_once is still there)",
    )
    assert result.matched == ("exactly_once: job 3 lost",)


def test_a_fixed_bug_fails_and_says_to_remove_expect_violation() -> None:
    status, message = outcome((Pin("exactly_once"),))
    assert status == "fail"
    assert "remove expect_violation" in message


def test_a_fault_that_missed_its_window_makes_the_reproduction_unknown() -> None:
    status, message = outcome((Pin("exactly_once"),), LOST, MISSED)
    assert status == "unknown"
    assert "fault_coverage could not decide (planned fault 0 never triggered)" in message


def test_a_failure_the_scenario_does_not_name_fails() -> None:
    status, message = outcome((Pin("exactly_once"),), LOST, DIRTY)
    assert status == "fail"
    assert (
        "failed clean_exits: worker-1 exited 1 with a traceback, which expect_violation" in message
    )


def test_every_listed_violation_must_be_there() -> None:
    status, message = outcome((Pin("batch_barrier"), Pin("exactly_once")), LOST)
    assert status == "fail"
    assert "names batch_barrier but the run had no such violation" in message


def test_a_pin_on_jobs_passes_for_exactly_those_jobs() -> None:
    pin = Pin("exactly_once", (3,), ("holder_killed",))
    assert outcome((pin,), LOST)[0] == "pass"


def test_a_pin_on_the_wrong_job_fails() -> None:
    status, message = outcome((Pin("exactly_once", (2,)),), LOST)
    assert status == "fail"
    assert "names exactly_once of job(s) 2 but the run had no such violation" in message


def test_more_losses_than_pinned_fail_naming_the_extra_one() -> None:
    """The pinned app lost one job; a run that lost two is a worse bug, not the known one."""
    status, message = outcome((Pin("exactly_once", (3,)),), LOST, LOST_TOO)
    assert status == "fail"
    assert "failed exactly_once: job 5 lost [holder_killed], which expect_violation" in message


def test_a_pin_on_the_wrong_cause_fails() -> None:
    status, message = outcome((Pin("exactly_once", causes=("master_shut_down",)),), LOST)
    assert status == "fail"
    assert "(master_shut_down) but the run had no such violation" in message


def test_a_pin_on_two_jobs_needs_both() -> None:
    status, message = outcome((Pin("exactly_once", (3, 5)),), LOST)
    assert status == "fail"
    assert "but the run had it for job(s) 3" in message
    assert outcome((Pin("exactly_once", (3, 5)),), LOST, LOST_TOO)[0] == "pass"


def test_a_pin_may_allow_several_causes() -> None:
    late = Violation("exactly_once", "job 6 lost", jobs=(6,), cause="result_not_taken")
    pin = Pin("exactly_once", causes=("holder_killed", "result_not_taken"))
    assert outcome((pin,), LOST, late)[0] == "pass"
    assert outcome((pin,), late)[0] == "pass"


def test_a_pin_on_tasks_names_the_jobs_of_those_tasks_whatever_their_numbers() -> None:
    """Two workers popleft() at once: task 7 may be seen taken after task 8, as job 8."""
    pin = Pin("exactly_once", causes=("holder_killed",), tasks=(task_text(7),))
    seen = [(6, [6]), (7, [8]), (8, [7]), (9, [[3, 7]])]
    assert pin.on_jobs(seen).jobs == (8,)
    lost_task = Violation("exactly_once", "job 8 lost", jobs=(8,), cause="holder_killed")
    assert outcome((pin.on_jobs(seen),), lost_task)[0] == "pass"
    status, message = outcome((pin.on_jobs(seen),), LOST)
    assert status == "fail"
    assert "names exactly_once of task(s) 7 (job(s) 8) (holder_killed)" in message
    # a task of several arguments, named as their list; one no job had
    assert Pin("exactly_once", tasks=(task_text([3, 7]),)).on_jobs(seen).jobs == (9,)
    # a task no job had fails, even beside a violation naming no job (a missing master log)
    gone = Pin("exactly_once", tasks=(task_text(99),)).on_jobs(seen)
    jobless = Violation("exactly_once", "no events from the master")
    for found in (LOST, jobless):
        status, message = outcome((gone,), found)
        assert status == "fail"
        assert "of task(s) 99 (job(s) none), but no job of this run had such a task" in message
    # a pin without tasks is left as it is
    assert Pin("exactly_once", (3,)).on_jobs(seen) == Pin("exactly_once", (3,))
