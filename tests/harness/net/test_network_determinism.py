"""The same seed gives the same toxic decisions; a different seed gives different ones.

Each fault proxy draws, per connection and toxic, whether a ``probability < 1`` toxic
applies, from the run's seed. A scenario is run twice with one seed and once with another,
each into its own run directory, and the ``toxic`` decision events of the proxies (in
``harness.events.jsonl``) are compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.scenario import load_scenario, run_scenario

pytestmark = pytest.mark.processes

SEED = 101
OTHER_SEED = 202  # checked to draw differently from SEED for these proxies and toxics

SCENARIO = """\
scenario = 1
name = "toxic decisions from the seed"
description = "Three probability 0.5 toxics on each of three workers' proxies."
seed = {seed}

[cluster]
workers = 3

[jobs]
count = 9
delay_s = 0.02

[network]
proxy = true

[[network.toxics]]
name = "lag"
kind = "latency"
probability = 0.5
latency_ms = 5
jitter_ms = 3

[[network.toxics]]
name = "shred"
kind = "slicer"
direction = "upstream"
probability = 0.5
chunk_bytes = 32
chunk_delay_ms = 1

[[network.toxics]]
name = "lingering"
kind = "slow_close"
probability = 0.5
delay_ms = 50

[expect]
checks = ["exactly_once", "correct_values", "liveness", "clean_exits"]
within_s = 30
"""

Decision = tuple[str, int, str]  # (toxic, connection, decision)


def run_decisions(tmp_path: Path, seed: int, label: str) -> dict[str, list[Decision]]:
    """Run the scenario with ``seed``; each proxy's toxic decisions, in the order drawn."""
    path = tmp_path / f"{label}.toml"
    path.write_text(SCENARIO.format(seed=seed), encoding="utf-8")
    run_dir = tmp_path / f"run-{label}"
    outcome = run_scenario(load_scenario(path), run_dir)
    assert outcome.status == "pass", outcome.report()
    decisions: dict[str, list[Decision]] = {}
    lines = (run_dir / "harness.events.jsonl").read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    # Every proxy closed, and every connection's end recorded, before the run's end: what a
    # toxic did to a connection is evidence the checks count.
    finished = [event["ev"] for event in events].index("run_finished")
    closed = {event["proxy"] for event in events[:finished] if event["ev"] == "proxy_closed"}
    assert closed == {"worker-1", "worker-2", "worker-3"}
    links = [event for event in events if event["ev"] == "proxy_connection"]
    opened = {(link["proxy"], link["connection"]) for link in links if link["state"] == "opened"}
    ended = [link for link in events[:finished] if link.get("state") == "closed"]
    assert {(link["proxy"], link["connection"]) for link in ended} == opened
    for event in events:
        if event["ev"] == "toxic":
            decisions.setdefault(event["proxy"], []).append(
                (event["toxic"], event["connection"], event["decision"])
            )
    return decisions


def test_the_same_seed_gives_the_same_toxic_decisions(tmp_path: Path) -> None:
    first = run_decisions(tmp_path, SEED, "first")
    second = run_decisions(tmp_path, SEED, "second")
    other = run_decisions(tmp_path, OTHER_SEED, "other")

    assert sorted(first) == ["worker-1", "worker-2", "worker-3"]
    drawn = {decision for per_proxy in first.values() for _, _, decision in per_proxy}
    assert drawn == {"applied", "skipped"}
    # Every toxic met every connection of every proxy, once.
    for per_proxy in first.values():
        connections = {connection for _, connection, _ in per_proxy}
        assert len(per_proxy) == 3 * len(connections)

    assert second == first
    assert other != first
