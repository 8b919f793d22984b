"""The scenario plugin end to end, the way pytest-xdist's acceptance tests drive theirs.

Each test writes scenario files into a scratch directory and runs a real ``pytest`` in a
subprocess (the plugin is loaded from its ``pytest11`` entry point), so real clusters run
and ``-n 2`` really starts xdist workers. Scenarios are tiny: a few square jobs, one worker.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.scenario import ClusterSpec

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.processes

TIMEOUT_S = 120
BROKEN_SYSTEM = """
[system]
command = ["python", "-m", "tests.broken_distq"]
env = { DISTQ_BROKEN = "wrong-value" }
"""


def scenario(
    name: str, *, count: int = 3, slow: bool = False, extra: str = "", expect: str = ""
) -> str:
    """A small valid scenario: ``count`` square jobs on one worker, within 30 s."""
    return (
        f'scenario = 1\nname = "{name}"\ndescription = "{name}, for the plugin tests"\n'
        f"slow = {str(slow).lower()}\n\n"
        f"[cluster]\nworkers = 1\n\n[jobs]\ncount = {count}\n\n"
        f"[expect]\nwithin_s = 30\n{expect}\n{extra}"
    )


def wrong_value(name: str, expect: str = "") -> str:
    """The broken system that reports square(7) + 1: job 7 fails correct_values."""
    return scenario(name, count=8, expect=expect, extra=BROKEN_SYSTEM)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=TIMEOUT_S)


def collected_ids(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if "::" in line]


def test_collects_one_item_per_scenario_file_and_nothing_else(pytester: pytest.Pytester) -> None:
    # Written out of order, so a sorted result is the plugin's (and pytest's) doing.
    pytester.makefile(".toml", zebra=scenario("last"))
    pytester.makefile(".toml", alpha=scenario("first"))
    pytester.mkdir("family")
    (pytester.path / "family" / "middle.toml").write_text(scenario("in a directory"))
    pytester.makefile(
        ".toml",
        pyproject='[build-system]\nrequires = ["setuptools"]\n\n[project]\nname = "x"\n',
        other='title = "not a scenario"\n\n[owner]\nscenario = "a key in a table, not ours"\n',
    )
    pytester.makefile(".txt", notes=scenario("not TOML"))
    first = run(pytester, "--collect-only", "-q")
    second = run(pytester, "--collect-only", "-q")
    assert first.ret == 0
    expected = ["alpha.toml::alpha", "family/middle.toml::middle", "zebra.toml::zebra"]
    assert collected_ids(first) == expected
    assert collected_ids(second) == expected
    first.stdout.fnmatch_lines(["3 tests collected in *"])


@pytest.mark.engines
def test_engine_scenarios_carry_the_engines_marker(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", squares=scenario("distq squares"))
    pytester.makefile(
        ".toml", rq=scenario("rq squares", extra='[system]\nkind = "engine"\nengine = "rq"\n')
    )
    only_engines = run(pytester, "--collect-only", "-q", "-m", "engines")
    assert collected_ids(only_engines) == ["rq.toml::rq"]
    without = run(pytester, "--collect-only", "-q", "-m", "not engines")
    assert collected_ids(without) == ["squares.toml::squares"]


def test_passing_scenario_passes(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", squares=scenario("three squares"))
    result = run(pytester, "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["squares.toml::squares PASSED*"])


def test_an_unknown_verdict_is_reported_as_unknown_and_fails_the_session(
    pytester: pytest.Pytester,
) -> None:
    # By the time job 0 is complete nobody holds it: the kill cannot land, so the run
    # proves nothing about a killed holder.
    fault = '[[faults]]\nwhen = { job_completed = 0 }\ndo = "kill"\ntarget = "holder"\n'
    pytester.makefile(
        ".toml",
        missed=scenario(
            "a kill that finds nobody", expect='checks = ["fault_coverage"]', extra=fault
        ),
    )
    pytester.makefile(".toml", squares=scenario("three squares"))
    result = run(pytester, "-v", "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines_random(
        [
            "*UNKNOWN missed.toml::missed*",
            "*PASSED squares.toml::squares*",
            "*= UNKNOWN VERDICTS =*",
            "unknown fault_coverage: fault 0 (kill holder) did not fire: nobody held job 0",
            "UNKNOWN missed.toml::missed - fault_coverage: fault 0 (kill holder) did not fire: *",
            "*= 1 passed, 1 unknown in *",
        ]
    )
    result.stdout.no_fnmatch_line("*FAILED*")


def test_failing_scenario_reports_verdict_violation_history_logs_and_run_dir(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".toml", wrong=wrong_value("job seven is off by one"))
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ scenario: job seven is off by one _*",
            "job seven is off by one: fail",
            "verdict: fail (* violation(s), 0 unknown; checks: exactly_once: 8 jobs, "
            "correct_values: * values compared, liveness: 1 run)",
            "fail correct_values: job 7: square(7) = 49, but accepted value 50 [[]jobs 7]",
            "    #* master job_submitted job=7 task=square args=[[]7] *",
            "    #* master result_accepted job=7 attempt=1 worker=worker-1 ok=true value=50",
            "--- last lines of master.log (exit 0) ---",
            "READY 127.0.0.1:*",
            "distq master: 8 jobs, 8 results *",
            "run directory: *",
            "report: file://*/report.html",
            "FAILED wrong.toml::wrong - job seven is off by one: fail",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    # A failure's run directory is kept, whatever the options: it is the evidence.
    # The report names its run directory (newer pytest repeats it in the short summary).
    named = {line for line in result.stdout.lines if line.startswith("run directory: ")}
    [line] = named
    run_dir = Path(line.removeprefix("run directory: "))
    assert (run_dir / "master.log").is_file()
    assert (run_dir / "jobs.jsonl").read_text().count("\n") == 8
    assert (run_dir / "report.html").is_file()


def test_malformed_file_is_a_collection_error_of_one_line(pytester: pytest.Pytester) -> None:
    path = pytester.makefile(".toml", typo=scenario("typo").replace("workers =", "workerz ="))
    pytester.makefile(".toml", fine=scenario("fine"))
    result = run(pytester)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR collecting typo.toml _*",
            f"{path}: unknown key cluster.workerz (expected one of: "
            f"{', '.join(ClusterSpec.__struct_fields__)})",
            "*short test summary info*",
        ],
        consecutive=True,
    )
    result.stdout.no_fnmatch_line("*Traceback*")


def test_expect_violation_passes_while_the_bug_is_there_and_fails_once_fixed(
    pytester: pytest.Pytester,
) -> None:
    known = 'expect_violation = "correct_values"'
    pytester.makefile(".toml", still_broken=wrong_value("still broken", expect=known))
    pytester.makefile(".toml", fixed=scenario("fixed", expect=known))
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "fixed: fail: expect_violation names correct_values but the run had no such "
            "violation (verdict pass); if the bug is fixed, remove expect_violation",
            "verdict: pass (0 violation(s), 0 unknown; *)",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(
        ["PASSED still_broken.toml::still_broken", "FAILED fixed.toml::fixed - fixed: fail: *"]
    )
    # A passing known-bug run says which violations it matched (-rA shows passes' sections).
    result.stdout.fnmatch_lines(
        [
            "*known violations*",
            "still broken: pass (the known correct_values is still there)",
            "correct_values: job 7: *",
        ]
    )


def test_two_scenarios_on_two_xdist_workers(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", good=scenario("good"))
    pytester.makefile(".toml", wrong=wrong_value("wrong"))
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["created: 2/2 workers", "2 workers [[]2 items[]]"])
    # The report crosses from the xdist worker to the controller intact.
    result.stdout.fnmatch_lines(
        [
            "*_ scenario: wrong _*",
            "*gw* linux -- Python *",
            "wrong: fail",
            "verdict: fail *",
            "fail correct_values: job 7: *",
            "run directory: */popen-gw*/scenario-runs/wrong.toml_wrong",
        ]
    )


def test_runs_dir_holds_passing_runs_only_with_keep_runs(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", squares=scenario("squares"))
    runs_dir = pytester.path / "runs"
    run_dir = runs_dir / "squares.toml_squares"

    run(pytester, "--runs-dir", str(runs_dir)).assert_outcomes(passed=1)
    assert runs_dir.is_dir()
    assert not run_dir.exists()

    run(pytester, "--runs-dir", str(runs_dir), "--keep-runs").assert_outcomes(passed=1)
    assert (run_dir / "jobs.jsonl").read_text().count("\n") == 3
    assert (run_dir / "master.log").read_text().startswith("READY ")
    assert (run_dir / "harness.events.jsonl").is_file()


def test_slow_scenarios_carry_the_slow_marker(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", quick=scenario("quick"))
    pytester.makefile(".toml", lengthy=scenario("lengthy", slow=True))

    fast = run(pytester, "-m", "not slow", "-rA")
    fast.assert_outcomes(passed=1, deselected=1)
    fast.stdout.fnmatch_lines(["PASSED quick.toml::quick"])

    slow = run(pytester, "-m", "slow", "--collect-only", "-q")
    assert collected_ids(slow) == ["lengthy.toml::lengthy"]
    slow.stdout.fnmatch_lines(["1/2 tests collected (1 deselected) in *"])


def test_a_passing_scenario_shows_what_its_checks_measured(pytester: pytest.Pytester) -> None:
    kill = '[[faults]]\nwhen = { job_started = 3 }\ndo = "kill"\ntarget = "holder"\n'
    text = scenario("killed holder", count=12)
    text = text.replace("workers = 1", "workers = 2").replace(
        "[jobs]\ncount = 12", "[jobs]\ncount = 12\ndelay_s = 0.1"
    )
    expect = 'checks = ["exactly_once", "recovery_latency"]'
    pytester.makefile(
        ".toml", killed=text.replace("within_s = 30\n", f"within_s = 30\n{expect}\n") + kill
    )
    result = run(pytester, "-rP")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines(
        [
            r".*Captured measurements call.*",
            r"recovery_latency: measured: job 3 of worker-\d after kill \(close path\): \d+\.\d{3} s",
        ]
    )


# -- a light plugin ------------------------------------------------------------------------

#: Run pytest as if the harness's dependencies were not installed (``pip install .`` only).
WITHOUT_EXTRAS = """
import sys
import pytest

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("msgspec", "psutil", "hypothesis"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Missing())
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_loading_the_plugin_imports_none_of_the_harness_dependencies(
    pytester: pytest.Pytester,
) -> None:
    probe = "import sys, harness.plugin; print(sorted({'msgspec', 'psutil', 'asyncio'} & set(sys.modules)))"
    result = pytester.run(sys.executable, "-c", probe, timeout=TIMEOUT_S)
    assert result.ret == 0, result.stderr.str()
    assert result.stdout.lines == ["[]"]


def test_without_the_extras_other_tests_pass_and_a_scenario_says_what_to_install(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_unrelated="def test_one():\n    assert 1 + 1 == 2\n")
    # The plugins of the extras are not installed there either.
    args = (
        "-c",
        WITHOUT_EXTRAS,
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-p",
        "no:hypothesispytest",
    )
    unrelated = pytester.run(sys.executable, *args, "test_unrelated.py", timeout=TIMEOUT_S)
    assert unrelated.ret == 0, unrelated.stdout.str()
    unrelated.stdout.fnmatch_lines(["*1 passed*"])

    pytester.makefile(".toml", lone=scenario("needs the harness"))
    collected = pytester.run(sys.executable, *args, "lone.toml", timeout=TIMEOUT_S)
    assert collected.ret == pytest.ExitCode.INTERRUPTED
    line = (
        "lone.toml: msgspec is not installed: scenario files need the harness's dependencies "
        "(pip install 'distq[test]')"
    )
    assert line in collected.stdout.str()
    assert "Traceback" not in collected.stdout.str()


WITHOUT_CELERY = """
import sys
import pytest

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "celery":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Missing())
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_a_file_whose_engine_is_not_installed_is_skipped_saying_what_to_install(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(
        ".toml",
        celery_file=(
            'scenario = 2\nname = "c"\ndescription = "celery"\n[system]\nkind = "engine"\n'
            'engine = "celery"\n[expect]\nchecks = ["exactly_once"]\n'
        ),
    )
    args = ("-c", WITHOUT_CELERY, "-p", "no:cacheprovider", "-p", "no:xdist", "-rs")
    result = pytester.run(sys.executable, *args, "celery_file.toml", timeout=TIMEOUT_S)
    # skipped, not an error: the run is not interrupted (pytest says no test ran)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            # (fnmatch: [engines] would be a character class)
            "*celery_file.toml: system: engine 'celery' is not installed: pip install 'distq?engines?'"
        ]
    )
