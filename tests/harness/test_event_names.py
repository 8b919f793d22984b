"""``distq.events.EVENT_NAMES`` is the list of every event distq writes: the checkers and
the scenario triggers read events by these names, so a renamed or new event must be
declared there. Checked on the source (every literal event name written is declared, every
declared name is written somewhere) and on a real run."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import distq
from distq.events import EVENT_NAMES, read_events
from harness.runtime.faults import Fault, Trigger
from harness.runtime.run import RunSpec, run

SOURCE = Path(distq.__file__).resolve().parent
HARNESS_ONLY = {"fault"}  # declared so that distq's logs and the harness's share a namespace


def written_names(path: Path) -> set[str]:
    """The first argument of every ``<x>.write("name", ...)`` and ``<x>._emit("name", ...)``
    call with keyword fields: the two ways distq writes an event."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("write", "_emit")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.isidentifier()
        ):
            names.add(node.args[0].value)
    return names


def test_every_event_written_is_declared_and_every_declared_one_is_written() -> None:
    by_file = {path.name: written_names(path) for path in sorted(SOURCE.glob("*.py"))}
    written = set().union(*by_file.values())
    undeclared = {name: [f for f, names in by_file.items() if name in names] for name in written}
    undeclared = {name: files for name, files in undeclared.items() if name not in EVENT_NAMES}
    assert undeclared == {}, "written but missing from EVENT_NAMES"
    assert EVENT_NAMES - HARNESS_ONLY - written == set(), "declared but never written"


def test_the_source_scan_would_see_a_new_event() -> None:
    # The scan is the test's eyes: it must find a name in the form distq writes them.
    sample = SOURCE.parent / "tests" / "tasks.py"
    assert "started" in written_names(SOURCE / "runner.py")
    assert "leased" in written_names(SOURCE / "board.py")
    assert written_names(sample) == set()


@pytest.mark.processes
def test_a_real_run_writes_only_declared_events(tmp_path: Path) -> None:
    # A holder SIGKILLed mid-job and a job over its time limit: most of the vocabulary.
    # Two attempts: whichever worker the kill hits, the survivor runs the hang job into
    # its time limit (runner_killed) and its last attempt ends it dead.
    jobs = tmp_path / "jobs.jsonl"
    lines: list[dict[str, object]] = [{"task": "square", "args": [n, 0.05]} for n in range(12)]
    lines.append({"task": "hang", "args": [], "time_limit_s": 0.3})
    jobs.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    spec = RunSpec(
        master_args=("--jobs", str(jobs), "--max-attempts", "2"),
        workers=2,
        faults=(Fault(Trigger("job_started", 4), "kill", "holder"),),
        checks=("exactly_once",),
    )
    result = run(spec, tmp_path / "run")
    assert result.verdict.status == "pass", result.report()
    logs = [
        p for p in (tmp_path / "run").glob("*.events.jsonl") if p.name != "harness.events.jsonl"
    ]
    assert len(logs) == 3, logs  # the master's and two workers'
    seen = {event["ev"] for log in logs for event in read_events(log)}
    assert {"leased", "result_accepted", "worker_lost", "runner_killed", "dead"} <= seen
    assert seen <= EVENT_NAMES, seen - EVENT_NAMES
