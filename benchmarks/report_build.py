"""How long building ``report.html`` and ``trace.json`` takes for the 5,000-job load scenario,
and how big they are.

Runs ``scenarios/load/five_thousand_random_kills.toml`` once (or takes a kept run directory
with ``--run-dir``), then rebuilds its report ``--repeat`` times as ``python -m harness
report`` does: load the history from the event logs, build the timeline, write the files.
Reports the best and median build time (and, apart, reading the logs and drawing) and the
file sizes; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.history import History
from harness.report import REPORT_NAME, rebuild_report, write_report
from harness.scenario import load_scenario, run_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios/load/five_thousand_random_kills.toml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="a kept run directory (default: run one)")
    parser.add_argument("--repeat", type=int, default=5, help="builds to time (default 5)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="report-build-") as scratch:
        run_dir = options.run_dir
        status = "given"
        if run_dir is None:
            run_dir = Path(scratch) / "run"
            outcome = run_scenario(load_scenario(SCENARIO), run_dir)
            status = outcome.status
            print(f"{SCENARIO.name}: {outcome.status} in {outcome.result.elapsed_s:.1f} s")
        times, loads, draws = [], [], []
        for _ in range(max(1, options.repeat)):
            started = time.perf_counter()
            rebuild_report(run_dir)
            times.append(time.perf_counter() - started)
            # The same, in two parts: reading the logs, then drawing (timeline, page, trace).
            started = time.perf_counter()
            history = History.load_run(run_dir)
            loaded = time.perf_counter()
            write_report(run_dir, history, None)
            loads.append(loaded - started)
            draws.append(time.perf_counter() - loaded)
        rebuild_report(run_dir)  # leave the report with its recorded verdict
        history_lines = sum(path.read_text().count("\n") for path in run_dir.glob("*.events.jsonl"))
        report_bytes = (run_dir / REPORT_NAME).stat().st_size
        trace_bytes = (run_dir / "trace.json").stat().st_size
        print(f"build: best {min(times):.3f} s, median {statistics.median(times):.3f} s")
        print(f"of which: read the logs {min(loads):.3f} s, draw {min(draws):.3f} s (best)")
        print(f"report.html {report_bytes / 1e6:.2f} MB, trace.json {trace_bytes / 1e6:.2f} MB")
        print(
            json.dumps(
                {
                    "scenario": SCENARIO.name,
                    "run_verdict": status,
                    "history_lines": history_lines,
                    "build_best_s": round(min(times), 3),
                    "build_median_s": round(statistics.median(times), 3),
                    "load_history_best_s": round(min(loads), 3),
                    "draw_best_s": round(min(draws), 3),
                    "report_html_bytes": report_bytes,
                    "trace_json_bytes": trace_bytes,
                    "builds": len(times),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
