"""How the harness scales with a run's size: each phase of a plain square scenario's run,
timed, with the harness process's peak memory, for 10^4 jobs by default (``--sizes``, e.g.
``--sizes 10000 100000 1000000``).

Each size runs in a fresh process of its own (so its peak memory is its own): the run
itself (cluster, faults, history, checks, report, as ``python -m harness run`` does) and
the harness's peak memory at its end; then, in another fresh process on the kept run
directory, each phase alone: loading the history and each check (``--repeat`` times, the
median), the timeline, the report page, the trace, and the peak memory of the process that
reads half the logs of a soak-sized history beside it. Prints a line per size and phase, then one JSON object with each size's
figures and whether it meets the targets (``TARGETS``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

CHECKS = ("exactly_once", "correct_values", "one_terminal", "attempts_bounded", "liveness")
#: What a soak-sized run should cost the harness, on a 2-core machine.
TARGETS = {
    "load_and_checks_lines_per_s": 500_000,  # at least
    "whole_over_cluster": 1.5,  # at most
    "peak_memory_mb": 1500,  # below
    "report_html_bytes": 10_000_000,  # below
}


def _scenario(jobs: int) -> str:
    within_s = 60 + jobs / 500  # generous: the bound is not what is measured
    return (
        f'scenario = 2\nname = "scale {jobs}"\ndescription = "{jobs} square jobs, no fault"\n'
        f'[cluster]\nworkers = 2\n[jobs]\ntask = "square"\ncount = {jobs}\n'
        f"[expect]\nchecks = {json.dumps(list(CHECKS))}\nwithin_s = {within_s:.0f}\n"
    )


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _one(jobs: int, scratch: Path, repeat: int) -> dict[str, Any]:
    from harness.scenario import load_scenario, run_scenario

    path = scratch / "scale.toml"
    path.write_text(_scenario(jobs), encoding="utf-8")
    run_dir = scratch / "run"
    started = time.perf_counter()
    outcome = run_scenario(load_scenario(path), run_dir)
    whole_s = time.perf_counter() - started
    run_peak_mb = _peak_mb()
    status, cluster_s = outcome.status, outcome.result.elapsed_s
    report_bytes = (run_dir / "report.html").stat().st_size
    trace_bytes = (run_dir / "trace.json").stat().st_size
    detail = run_dir / "report.detail.js"
    detail_bytes = detail.stat().st_size if detail.exists() else 0
    del outcome
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--phases",
            str(run_dir),
            str(scratch / "trace.json"),
            str(repeat),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the phases of {jobs} jobs failed:\n{done.stderr}")
    phases, lines, phases_peak_mb, reader_peak_mb = json.loads(done.stdout.strip().splitlines()[-1])
    load_and_checks_s = phases["history_load"] + sum(phases[c] for c in CHECKS)
    lines_per_s = round(lines / max(1e-9, load_and_checks_s))
    over_cluster = round(whole_s / max(cluster_s, 1e-9), 2)
    result: dict[str, Any] = {
        "jobs": jobs,
        "status": status,
        "history_lines": lines,
        "cluster_run_s": round(cluster_s, 3),
        "whole_command_s": round(whole_s, 3),
        "whole_over_cluster": over_cluster,
        "phases_s": {name: round(seconds, 3) for name, seconds in phases.items()},
        "phases_lines_per_s": {
            name: round(lines / max(seconds, 1e-9)) for name, seconds in phases.items()
        },
        "load_and_checks_lines_per_s": lines_per_s,
        "peak_memory_mb": run_peak_mb,
        "phases_peak_memory_mb": phases_peak_mb,
        "log_reader_peak_memory_mb": reader_peak_mb,
        "report_html_bytes": report_bytes,
        "report_detail_bytes": detail_bytes,
        "trace_json_bytes": trace_bytes,
    }
    result["meets"] = {
        "load_and_checks_lines_per_s": lines_per_s >= TARGETS["load_and_checks_lines_per_s"],
        "whole_over_cluster": over_cluster <= TARGETS["whole_over_cluster"],
        "peak_memory_mb": run_peak_mb < TARGETS["peak_memory_mb"],
        "report_html_bytes": report_bytes < TARGETS["report_html_bytes"],
    }
    return result


def _phases(run_dir: Path, trace_path: Path, repeat: int) -> tuple[dict[str, float], int, int, int]:
    """Each phase alone on a kept run directory: seconds by phase (of the history load and
    the checks, the median of ``repeat`` runs: this machine's neighbours vary), the
    history's lines, this process's peak memory and its log reader's."""
    from harness.checks import CheckContext, judge
    from harness.history import History
    from harness.report import render_html
    from harness.report.page import detail_script
    from harness.report.timeline import build_timeline
    from harness.report.trace import write_trace
    from harness.systems.distq import builtin_expected

    phases: dict[str, float] = {}
    times: dict[str, list[float]] = {}
    # The log reader's memory, sampled (its own peak would count what it shared at fork).
    readers: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        me = psutil.Process()
        while not sampling.wait(0.05):
            for child in me.children():
                with contextlib.suppress(psutil.Error):
                    readers.append(round(child.memory_info().rss / 2**20))

    threading.Thread(target=sample, daemon=True).start()

    def timed(name: str, started: float) -> None:
        phases[name] = time.perf_counter() - started

    context = CheckContext(expected=builtin_expected, max_attempts=3)
    for _ in range(repeat):  # the load and the checks: the median of ``repeat`` runs
        started = time.perf_counter()
        history = History.load_run(run_dir)
        times.setdefault("history_load", []).append(time.perf_counter() - started)
        for check in CHECKS:
            started = time.perf_counter()
            verdict = judge(history, [check], context)
            times.setdefault(check, []).append(time.perf_counter() - started)
        if len(times["history_load"]) < repeat:
            del history, verdict  # the next load's memory is its own
            gc.collect()  # a history's views refer back to it: a cycle
    phases.update({name: statistics.median(seconds) for name, seconds in times.items()})
    started = time.perf_counter()
    timeline = build_timeline(history, verdict)
    timed("timeline", started)
    started = time.perf_counter()
    render_html(timeline, history)
    if timeline.plain is not None:
        detail_script(timeline.plain)
    timed("report_page", started)
    started = time.perf_counter()
    write_trace(trace_path, timeline)
    timed("trace", started)
    sampling.set()
    return phases, len(history), _peak_mb(), max(readers, default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000], metavar="JOBS")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep each size's run directory as DIR/<jobs> (to open its report)",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="N",
        help="load the history and run the checks N times, and report the median (default 3)",
    )
    parser.add_argument("--phases", nargs=3, help=argparse.SUPPRESS)  # a child: the phases
    options = parser.parse_args()
    if options.phases is not None:
        run_dir, trace_path, repeat = options.phases
        print(json.dumps(_phases(Path(run_dir), Path(trace_path), int(repeat))))
        return 0
    if options.repeat < 1:
        parser.error("--repeat is a count, at least 1")
    if options.one is not None:
        if options.keep is not None:
            scratch = options.keep / str(options.one)
            scratch.mkdir(parents=True, exist_ok=False)
            print(json.dumps(_one(options.one, scratch, options.repeat)))
            return 0
        with tempfile.TemporaryDirectory(prefix="harness-scale-") as scratch_name:
            print(json.dumps(_one(options.one, Path(scratch_name), options.repeat)))
        return 0
    if any(size < 1 for size in options.sizes):
        parser.error("--sizes are job counts, at least 1")
    results = []
    for size in options.sizes:
        keep = [] if options.keep is None else ["--keep", str(options.keep)]
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--repeat", str(options.repeat), *keep],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(f"{size} jobs: the run failed:\n{done.stderr}", file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(
            f"{size} jobs: {result['status']}, {result['history_lines']} history lines; cluster "
            f"{result['cluster_run_s']} s, whole command {result['whole_command_s']} s "
            f"({result['whole_over_cluster']}x), peak {result['peak_memory_mb']} MB, history "
            f"load and checks {result['load_and_checks_lines_per_s']} lines/s, report "
            f"{result['report_html_bytes'] / 1e6:.2f} MB (+ {result['report_detail_bytes'] / 1e6:.2f}"
            f" MB detail), trace {result['trace_json_bytes'] / 1e6:.2f} MB"
        )
        for phase, seconds in result["phases_s"].items():
            print(f"    {phase}: {seconds} s ({result['phases_lines_per_s'][phase]} lines/s)")
        missed = [name for name, met in result["meets"].items() if not met]
        print(f"    targets missed: {', '.join(missed) or 'none'}")
    print(json.dumps({"targets": TARGETS, "sizes": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
