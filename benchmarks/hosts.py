"""Hosts of their own: what a lab costs, and what running on hosts costs distq.

Two measurements. (1) Build a lab of 1 + 8 hosts (a parent namespace, a bridge, nine host
namespaces with their veth pairs, addresses and clsact hooks) and let it go; the median
of ``--repeat`` builds and teardowns, against a target of 1 s for both. (2) The same
no-fault distq run (N ``square`` jobs, ``--workers`` workers) on the machine's loopback and
on hosts of their own, taking turns; the rate is N / (first ``started`` -> last
``completed``) from the workers' own events, and each run must pass exactly_once and
correct_values. Target: hosts at least 0.8x loopback. The last line is one JSON object.
Needs what a lab needs (root or CAP_NET_ADMIN, pyroute2): exits 3 saying why otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from harness import contract
from harness.history import History
from harness.net.hosts import Lab, lab_unavailable
from harness.scenario import Scenario, run_scenario

HOSTS = ["master", *(f"worker-{n}" for n in range(1, 9))]
BOUND_S = 300.0


class BenchmarkFailed(Exception):
    pass


def lab_times(repeat: int) -> tuple[float, float]:
    """Median seconds to build a lab of ``HOSTS``, and to let it go."""
    builds, teardowns = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        lab = Lab().__enter__()
        try:
            for name in HOSTS:
                lab.host(name)
            built = time.perf_counter()
        finally:
            lab.close()
        ended = time.perf_counter()
        builds.append(built - started)
        teardowns.append(ended - built)
    return statistics.median(builds), statistics.median(teardowns)


def scenario_for(jobs: int, workers: int, hosts: bool) -> Scenario:
    raw: dict[str, Any] = {
        "scenario": 2,
        "name": "distq throughput " + ("on hosts" if hosts else "on loopback"),
        "description": "no fault: how fast tiny jobs go through",
        "cluster": {"workers": workers},
        "jobs": {"task": "square", "count": jobs},
        "network": {"hosts": hosts},
        "expect": {"checks": ["exactly_once", "correct_values"], "within_s": BOUND_S},
    }
    return msgspec.convert(raw, Scenario)


def busy_window_s(history: History) -> float:
    started = [e.t for e in history.select(contract.STARTED) if e.src != contract.MASTER]
    completed = [e.t for e in history.select(contract.COMPLETED) if e.src != contract.MASTER]
    if not started or not completed:
        raise BenchmarkFailed("no started/completed events: nothing ran")
    return max(completed) - min(started)


def rate(jobs: int, workers: int, hosts: bool, run_dir: Path) -> float:
    outcome = run_scenario(scenario_for(jobs, workers, hosts), run_dir)
    if outcome.status != "pass":
        raise BenchmarkFailed(f"the run did not pass\n{outcome.report()}")
    return jobs / busy_window_s(outcome.result.history)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="tiny jobs per run (2000)")
    parser.add_argument("--workers", type=int, default=2, help="workers per run (2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, median (3)")
    options = parser.parse_args(argv)
    if options.jobs < 1 or options.workers < 1 or options.repeat < 1:
        print("hosts: error: --jobs, --workers and --repeat must be positive", file=sys.stderr)
        return 2
    missing = lab_unavailable()
    if missing is not None:
        print(f"hosts: {missing}", file=sys.stderr)
        return 3
    build_s, teardown_s = lab_times(max(options.repeat, 5))
    print(f"lab of {len(HOSTS)} hosts: build {build_s:.3f} s, teardown {teardown_s:.4f} s")
    samples: dict[str, list[float]] = {"loopback": [], "hosts": []}
    try:
        with tempfile.TemporaryDirectory(prefix="distq-hosts-bench-") as root:
            for attempt in range(options.repeat):
                for where in samples:
                    run_dir = Path(root) / f"{where}-{attempt}"
                    measured = rate(options.jobs, options.workers, where == "hosts", run_dir)
                    samples[where].append(measured)
                    print(f"{where:<9} {measured:>9.0f} jobs/s", file=sys.stderr)
    except BenchmarkFailed as exc:
        print(f"hosts: {exc}", file=sys.stderr)
        return 1
    rates = {where: statistics.median(values) for where, values in samples.items()}
    print(
        json.dumps(
            {
                "benchmark": "hosts",
                "hosts": len(HOSTS),
                "build_s": round(build_s, 4),
                "teardown_s": round(teardown_s, 4),
                "jobs": options.jobs,
                "workers": options.workers,
                "repeat": options.repeat,
                "jobs_per_s": {where: round(value, 1) for where, value in rates.items()},
                "hosts_over_loopback": round(rates["hosts"] / rates["loopback"], 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
