"""What a known-bug scenario (``expect_violation``) concludes from a run's verdict."""

from __future__ import annotations

from harness.checks import Verdict, Violation, known_bug_outcome

LOST = Violation("exactly_once", "job 3 lost", jobs=(3,))
MISSED = Violation("fault_coverage", "planned fault 0 never triggered", severity="unknown")
DIRTY = Violation("clean_exits", "worker-1 exited 1 with a traceback")


def outcome(known: tuple[str, ...], *found: Violation) -> tuple[str, str]:
    fails = tuple(v for v in found if v.severity == "fail")
    unknowns = tuple(v for v in found if v.severity == "unknown")
    status = "fail" if fails else "unknown" if unknowns else "pass"
    found_outcome = known_bug_outcome("s", known, Verdict(status, fails, unknowns))  # type: ignore[arg-type]
    assert found_outcome.expected == known
    return found_outcome.status, found_outcome.message


def test_the_known_violation_alone_passes() -> None:
    assert outcome(("exactly_once",), LOST) == (
        "pass",
        "s: pass (the known exactly_once violation is still there)",
    )


def test_a_fixed_bug_fails_and_says_to_remove_expect_violation() -> None:
    status, message = outcome(("exactly_once",))
    assert status == "fail" and "remove expect_violation" in message


def test_a_fault_that_missed_its_window_makes_the_reproduction_unknown() -> None:
    status, message = outcome(("exactly_once",), LOST, MISSED)
    assert status == "unknown"
    assert "fault_coverage could not decide (planned fault 0 never triggered)" in message


def test_a_failure_the_scenario_does_not_name_fails() -> None:
    status, message = outcome(("exactly_once",), LOST, DIRTY)
    assert status == "fail"
    assert "failed clean_exits, which expect_violation = 'exactly_once' does not name" in message


def test_every_listed_violation_must_be_there() -> None:
    status, message = outcome(("batch_barrier", "exactly_once"), LOST)
    assert status == "fail" and "no batch_barrier violation" in message
