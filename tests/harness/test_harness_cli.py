"""``python -m harness check | run``: scenario files outside pytest, with exit codes 0/1/2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.runtime.faults import ACTIONS
from harness.scenario import ScenarioError, load_scenario
from tests.support import REPO, TESTS

pytestmark = pytest.mark.processes  # every test runs `python -m harness` in a subprocess

TIMEOUT_S = 120
MALFORMED = TESTS / "malformed"


def scenario(name: str, *, count: int = 3, broken: str = "") -> str:
    """A small valid scenario: ``count`` square jobs on one worker; ``broken`` picks a
    variant of tests/broken_distq.py as the system under test."""
    text = (
        f'scenario = 1\nname = "{name}"\ndescription = "{name}, for the CLI tests"\n\n'
        f"[cluster]\nworkers = 1\n\n[jobs]\ncount = {count}\n\n[expect]\nwithin_s = 30\n"
    )
    if broken:
        text += (
            '\n[system]\ncommand = ["python", "-m", "tests.broken_distq"]\n'
            f'env = {{ DISTQ_BROKEN = "{broken}" }}\n'
        )
    return text


def harness(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def table_rows(stdout: str) -> list[list[str]]:
    """The summary table, each row split on runs of two or more spaces."""
    lines = stdout.splitlines()
    assert lines[0].split() == ["scenario", "verdict", "mean", "s", "run", "directory"], stdout
    return [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]


# -- check --------------------------------------------------------------------------------


def test_check_valid_file_says_ok(tmp_path: Path) -> None:
    path = tmp_path / "fine.toml"
    path.write_text(scenario("fine"))
    done = harness("check", path, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"ok {path}\n", "")


def test_check_malformed_file_gives_its_one_line_and_exit_2(tmp_path: Path) -> None:
    path = MALFORMED / "unknown_action.toml"
    done = harness("check", path, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"{path}: faults[0].do: got 'explode', expected one of: {', '.join(ACTIONS)}\n"
    )


def test_check_directory_reports_every_file(tmp_path: Path) -> None:
    (tmp_path / "fine.toml").write_text(scenario("fine"))
    (tmp_path / "typo.toml").write_text(scenario("typo").replace("within_s", "within"))
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    done = harness("check", ".", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == (
        "ok fine.toml\n"
        "skipped pyproject.toml: no 'scenario = N' at its top level, so not a scenario file\n"
    )
    assert done.stderr == (
        "typo.toml: unknown key expect.within (expected one of: checks, within_s, "
        "expect_violation, recovery_bound_s, reached, time_limit_slack_s, exit_codes)\n"
    )


def error_of(path: Path) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    return str(caught.value)


def test_check_the_whole_malformed_corpus_one_line_each(tmp_path: Path) -> None:
    """Each file's line is exactly the loader's (tests/harness/scenario/test_scenario_format.py pins those)."""
    corpus = sorted(MALFORMED.glob("*.toml"))
    assert len(corpus) >= 19
    done = harness("check", MALFORMED, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [error_of(path) for path in corpus]


def test_check_and_run_without_scenario_files_exit_2(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    skipped = f"skipped {tmp_path / 'pyproject.toml'}: no 'scenario = N' at its top level"
    for command in ("check", "run"):
        done = harness(command, tmp_path, cwd=tmp_path)
        assert done.returncode == 2, command
        assert done.stdout == (f"{skipped}, so not a scenario file\n" if command == "check" else "")
        assert done.stderr == f"python -m harness {command}: error: no scenario files found\n"
    done = harness("run", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "python -m harness run: error: the following arguments are required: FILE "
        "(see python -m harness run --help)"
    )


# -- run ----------------------------------------------------------------------------------


def test_run_passing_scenario_exits_0_with_a_summary(tmp_path: Path) -> None:
    (tmp_path / "squares.toml").write_text(scenario("squares"))
    runs_dir = tmp_path / "runs"
    done = harness("run", "squares.toml", "--runs-dir", runs_dir, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [[name, verdict, mean_s]] = table_rows(done.stdout)
    assert (name, verdict) == ("squares.toml", "pass")
    assert 0 < float(mean_s) < 30
    assert re.fullmatch(r"\[1/1\] squares\.toml: pass in \d+\.\d s\n", done.stderr)
    assert not (runs_dir / "001-squares").exists(), "a passing run is removed without --keep-runs"


def test_run_failing_scenario_exits_1_with_the_report(tmp_path: Path) -> None:
    (tmp_path / "wrong.toml").write_text(scenario("wrong", count=8, broken="wrong-value"))
    runs_dir = tmp_path / "runs"
    done = harness("run", "wrong.toml", "--runs-dir", runs_dir, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    [[name, verdict, _mean_s, run_dir]] = table_rows(done.stdout)
    assert (name, verdict, run_dir) == ("wrong.toml", "fail", str(runs_dir / "001-wrong"))
    assert (runs_dir / "001-wrong" / "master.log").is_file()
    stderr = done.stderr.splitlines()
    assert re.fullmatch(r"\[1/1\] wrong\.toml: fail in \d+\.\d s", stderr[0])
    assert stderr[1] == "wrong: fail"
    assert "fail correct_values: job 7: square(7) = 49, but accepted value 50 [jobs 7]" in stderr
    assert stderr[-2] == f"run directory: {runs_dir / '001-wrong'}"
    report = (runs_dir / "001-wrong" / "report.html").resolve()
    assert stderr[-1] == f"report: {report.as_uri()}"
    assert report.is_file()


def test_run_repeat_counts_the_verdicts_and_keep_runs_keeps_each(tmp_path: Path) -> None:
    (tmp_path / "squares.toml").write_text(scenario("squares", count=2))
    runs_dir = tmp_path / "runs"
    done = harness(
        "run", "squares.toml", "--repeat", "2", "--runs-dir", runs_dir, "--keep-runs", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    [[name, verdict, _mean_s, kept]] = table_rows(done.stdout)
    assert (name, verdict, kept) == ("squares.toml", "pass 2/2", str(runs_dir / "001-squares-1"))
    assert [line.split(": ")[0] for line in done.stderr.splitlines()] == [
        "[1/1] squares.toml (1/2)",
        "report",
        "[1/1] squares.toml (2/2)",
        "report",
    ]
    assert (runs_dir / "001-squares-2" / "report.html").is_file()
    assert sorted(p.name for p in runs_dir.iterdir()) == ["001-squares-1", "001-squares-2"]
    assert (runs_dir / "001-squares-2" / "jobs.jsonl").read_text().count("\n") == 2


def test_run_with_one_malformed_file_runs_the_rest_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "squares.toml").write_text(scenario("squares", count=2))
    bad = MALFORMED / "negative_timeout.toml"
    done = harness("run", "squares.toml", bad, "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert done.returncode == 2
    assert (
        done.stderr.splitlines()[0] == f"{bad}: expect.within_s: got -5, expected a number >= 0.001"
    )
    [[name, verdict, _mean_s], [invalid, invalid_verdict, _zero]] = table_rows(done.stdout)
    assert (name, verdict) == ("squares.toml", "pass")
    assert (invalid, invalid_verdict) == (str(bad), "invalid")


def test_run_unknown_verdict_exits_3_and_says_which_check_could_not_decide(
    tmp_path: Path,
) -> None:
    # By the time job 0 is complete nobody holds it: the kill cannot land.
    fault = '\n[[faults]]\nwhen = { job_completed = 0 }\ndo = "kill"\ntarget = "holder"\n'
    checks = '\n[expect]\nchecks = ["fault_coverage"]\n'
    text = scenario("missed", count=3).replace("\n[expect]\n", fault + checks)
    (tmp_path / "missed.toml").write_text(text)
    done = harness("run", "missed.toml", "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    [[name, verdict, _mean_s, _run_dir]] = table_rows(done.stdout)
    assert (name, verdict) == ("missed.toml", "unknown")
    assert "unknown fault_coverage: fault 0 (kill holder) did not fire: nobody held job 0" in (
        done.stderr.splitlines()
    )


def test_run_directories_of_same_named_files_do_not_collide(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.toml").write_text(scenario("broken x", count=8, broken="wrong-value"))
    (tmp_path / "b" / "x.toml").write_text(scenario("fine x", count=2))
    done = harness("run", "a/x.toml", "b/x.toml", "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    rows = table_rows(done.stdout)
    assert [row[:2] for row in rows] == [["a/x.toml", "fail"], ["b/x.toml", "pass"]]
    failed_run_dir = Path(rows[0][3])
    assert (failed_run_dir / "master.log").is_file(), f"{failed_run_dir} is gone"


def test_run_of_an_app_whose_master_cannot_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    app = REPO / "examples" / "apps"
    path = tmp_path / "typo.toml"
    path.write_text(
        'scenario = 2\nname = "typo"\ndescription = "a master file that is not there"\n\n'
        f'[system]\nkind = "managers"\ncwd = "{app}"\n'
        'master = ["{python}", "deque_jobz.py", "master", "{port}", "{authkey}", "3"]\n'
        'worker = ["{python}", "deque_jobs.py", "worker", "{port}", "{authkey}"]\n'
        'tasks = "get_jobs"\nresults = "get_results"\n',
        encoding="utf-8",
    )
    done = harness("run", path, "--runs-dir", tmp_path / "runs", cwd=tmp_path)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if "setup:" in line]
    assert line.startswith(f"{path}: setup: the master exited with code 2 before it was ready")
    assert "deque_jobz.py" in line
