"""A BaseManager app on hosts of their own: its relays live in the serving host, so a
worker's traffic crosses the lab's bridge, and the harness still catches a broken app.

Skipped, saying why, where the machine cannot build a lab.
"""

from __future__ import annotations

import json
from ipaddress import ip_address
from pathlib import Path

import pytest

from harness.net.hosts import LAB_NETWORK, lab_unavailable
from harness.scenario import load_scenario, run_scenario
from tests.support import REPO

pytestmark = [pytest.mark.processes]

WHY = lab_unavailable()
needs_lab = pytest.mark.skipif(WHY is not None, reason=WHY or "")
BROKEN = REPO / "scenarios" / "apps" / "random_tasks_broken.toml"


def on_hosts(path: Path, into: Path) -> Path:
    """The scenario at ``path`` on hosts of their own, the master binding its host's address
    and each worker dialling the master's, with no violation pinned: a plain run."""
    text = path.read_text()
    text = text.replace('cwd = "../../examples/apps"', f'cwd = "{REPO / "examples" / "apps"}"')
    text = text.replace('"12", "7"]', '"12", "7", "--host", "{host}"]')
    text = text.replace('"--lose", "3"]', '"--lose", "3", "--host", "{master_host}"]')
    lines = [line for line in text.splitlines() if not line.startswith("expect_violation")]
    text = "\n".join(lines) + "\n\n[network]\nhosts = true\n"
    assert text.count("{host}") == 1, "the broken file's master argv changed"
    assert text.count("{master_host}") == 1, "the broken file's worker argv changed"
    into.write_text(text)
    return into


def harness_events(run_dir: Path) -> list[dict[str, object]]:
    lines = (run_dir / "harness.events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@needs_lab
def test_a_broken_app_is_caught_on_hosts_through_relays_in_the_masters_host(
    tmp_path: Path,
) -> None:
    scenario = load_scenario(on_hosts(BROKEN, tmp_path / "broken_on_hosts.toml"))
    outcome = run_scenario(scenario, tmp_path / "run")
    assert outcome.status == "fail", outcome.report()
    lost = [v for v in outcome.result.verdict.violations if v.check == "exactly_once"]
    assert [v.jobs for v in lost] == [(0,)], outcome.report()
    assert lost[0].cause == "holder_exited", outcome.report()
    # The relay listened inside the master's host, and the worker reached it from its own:
    # the traffic crossed the bridge, where kernel faults act.
    events = harness_events(outcome.result.run_dir)
    listening = {str(e["proxy"]): e for e in events if e["ev"] == "proxy_listening"}
    master_host = str(listening["master"]["address"][0])  # type: ignore[index]
    worker_relay = listening["worker-1"]
    assert ip_address(master_host) in LAB_NETWORK
    assert worker_relay["address"][0] == master_host  # type: ignore[index]
    peers = {
        str(e["peer"]).rpartition(":")[0]
        for e in events
        if e["ev"] == "proxy_connection" and e["proxy"] == "worker-1" and e["state"] == "opened"
    }
    assert peers, "the worker never reached its relay"
    assert all(ip_address(peer) in LAB_NETWORK and peer != master_host for peer in peers), peers
