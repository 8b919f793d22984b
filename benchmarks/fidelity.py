"""Replay fidelity: how often each library scenario gives its expected outcome, run after run.

Runs every scenario file under the given directories (default ``scenarios/``) ``--repeat``
times (default 5) on the machine as it is, ``--jobs`` at a time, and prints per scenario the
share of runs whose outcome was the expected one (``pass``: a known-bug file passes while its
pinned violations are there), then the overall share. A scenario that is not reproducible is
a bug of the scenario (a window too narrow, a trigger on time where an event would do): the
table names each and what its other outcomes said. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.cli import expand
from harness.scenario import Scenario, ScenarioError, load_scenario, run_scenario

REPO = Path(__file__).resolve().parent.parent


def _one(path: Path, scenario: Scenario, run_dir: Path) -> tuple[str, str, float]:
    outcome = run_scenario(scenario, run_dir)
    first = ""
    if outcome.status != "pass":
        verdict = outcome.result.verdict
        said = (*verdict.violations, *verdict.unknowns)
        first = f"{said[0].check}: {said[0].message}" if said else outcome.message
    return outcome.status, first[:160], outcome.result.elapsed_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=[str(REPO / "scenarios")], metavar="PATH")
    parser.add_argument("--repeat", type=int, default=5, metavar="K", help="runs per scenario")
    parser.add_argument("--jobs", type=int, default=2, metavar="N", help="runs at a time")
    options = parser.parse_args()
    if options.repeat < 1 or options.jobs < 1:
        parser.error("--repeat and --jobs are at least 1")
    loaded: list[tuple[Path, Scenario]] = []
    for path in expand(options.paths):
        try:
            loaded.append((path, load_scenario(path)))
        except ScenarioError as exc:
            print(f"fidelity: {exc}", file=sys.stderr)
            return 2
    if not loaded:
        print("fidelity: no scenario files found", file=sys.stderr)
        return 2
    started = time.monotonic()
    outcomes: dict[Path, list[tuple[str, str, float]]] = {path: [] for path, _ in loaded}
    with (
        tempfile.TemporaryDirectory(prefix="fidelity-") as scratch,
        ThreadPoolExecutor(options.jobs) as pool,
    ):
        futures = {
            pool.submit(_one, path, scenario, Path(scratch) / f"{n:03d}-{k}"): path
            for n, (path, scenario) in enumerate(loaded)
            for k in range(options.repeat)
        }
        for future, path in futures.items():
            outcomes[path].append(future.result())
    rows, expected_runs = [], 0
    width = max(
        len(str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)) for path in outcomes
    )
    for path, runs in outcomes.items():
        name = str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
        counts = Counter(status for status, _, _ in runs)
        good = counts["pass"]
        expected_runs += good
        share = good / len(runs)
        other = next((said for status, said, _ in runs if status != "pass"), "")
        print(
            f"{name:<{width}}  {share:>5.0%}  {dict(counts)}"
            + (f"  first other: {other}" if other else "")
        )
        rows.append(
            {"scenario": name, "expected": good, "runs": len(runs), "outcomes": dict(counts)}
        )
    total = len(loaded) * options.repeat
    flaky = [row["scenario"] for row in rows if row["expected"] != row["runs"]]
    print(
        f"overall: {expected_runs}/{total} runs gave the expected outcome ({expected_runs / total:.1%})"
    )
    print(
        json.dumps(
            {
                "scenarios": len(loaded),
                "repeat": options.repeat,
                "runs": total,
                "expected_runs": expected_runs,
                "expected_share": round(expected_runs / total, 4),
                "not_reproducible": flaky,
                "wall_s": round(time.monotonic() - started, 1),
                "per_scenario": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
