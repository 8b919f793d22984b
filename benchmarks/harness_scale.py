"""How the harness scales with a run's size: each phase of a plain square scenario's run,
timed, with the harness process's peak memory, for 10^4 jobs by default (``--sizes``).

Each size runs in a fresh process of its own (so its peak memory is its own): the run
itself (cluster, faults, history, checks, report, as ``python -m harness run`` does), then,
again on the kept run directory, each phase alone: loading the history, each check, the
report page, the trace. Prints a line per size and phase, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHECKS = ("exactly_once", "correct_values", "one_terminal", "attempts_bounded", "liveness")


def _scenario(jobs: int) -> str:
    within_s = 60 + jobs / 500  # generous: the bound is not what is measured
    return (
        f'scenario = 2\nname = "scale {jobs}"\ndescription = "{jobs} square jobs, no fault"\n'
        f'[cluster]\nworkers = 2\n[jobs]\ntask = "square"\ncount = {jobs}\n'
        f"[expect]\nchecks = {json.dumps(list(CHECKS))}\nwithin_s = {within_s:.0f}\n"
    )


def _one(jobs: int, scratch: Path) -> dict[str, Any]:
    from harness.checks import CheckContext, judge
    from harness.history import History
    from harness.report import write_report
    from harness.scenario import load_scenario, run_scenario
    from harness.systems.distq import builtin_expected

    path = scratch / "scale.toml"
    path.write_text(_scenario(jobs), encoding="utf-8")
    run_dir = scratch / "run"
    started = time.perf_counter()
    outcome = run_scenario(load_scenario(path), run_dir)
    whole_s = time.perf_counter() - started
    phases: dict[str, float] = {}
    started = time.perf_counter()
    history = History.load_run(run_dir)
    phases["history_load"] = time.perf_counter() - started
    context = CheckContext(expected=builtin_expected, max_attempts=3)
    for check in CHECKS:
        started = time.perf_counter()
        judge(history, [check], context)
        phases[check] = time.perf_counter() - started
    started = time.perf_counter()
    write_report(run_dir, history, outcome.result.verdict)
    phases["report_and_trace"] = time.perf_counter() - started
    lines = len(history.events)
    return {
        "jobs": jobs,
        "status": outcome.status,
        "history_lines": lines,
        "cluster_run_s": round(outcome.result.elapsed_s, 3),
        "whole_command_s": round(whole_s, 3),
        "phases_s": {name: round(seconds, 3) for name, seconds in phases.items()},
        "load_and_checks_lines_per_s": round(
            lines / max(1e-9, phases["history_load"] + sum(phases[c] for c in CHECKS))
        ),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "report_html_bytes": (run_dir / "report.html").stat().st_size,
        "trace_json_bytes": (run_dir / "trace.json").stat().st_size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000], metavar="JOBS")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size
    options = parser.parse_args()
    if options.one is not None:
        with tempfile.TemporaryDirectory(prefix="harness-scale-") as scratch:
            print(json.dumps(_one(options.one, Path(scratch))))
        return 0
    if any(size < 1 for size in options.sizes):
        parser.error("--sizes are job counts, at least 1")
    results = []
    for size in options.sizes:
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(size)], capture_output=True, text=True
        )
        if done.returncode != 0:
            print(f"{size} jobs: the run failed:\n{done.stderr}", file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(
            f"{size} jobs: {result['status']}, {result['history_lines']} history lines; cluster "
            f"{result['cluster_run_s']} s, whole command {result['whole_command_s']} s, peak "
            f"{result['peak_memory_mb']} MB, report {result['report_html_bytes'] / 1e6:.1f} MB"
        )
        for phase, seconds in result["phases_s"].items():
            print(f"    {phase}: {seconds} s")
    print(json.dumps({"sizes": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
