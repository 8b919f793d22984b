"""Kernel faults in a run: they catch a broken queue, a fault that dropped nothing proves
nothing (unknown), and a machine that cannot build a lab runs nothing and says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from harness.net.hosts import lab_unavailable, netem_unavailable
from harness.scenario import ScenarioOutcome, load_scenario, run_scenario
from tests.support import REPO, net_namespaces, wait_until

pytestmark = [pytest.mark.processes]

WHY = lab_unavailable()
needs_lab = pytest.mark.skipif(WHY is not None, reason=WHY or "")
ISOLATE = REPO / "scenarios" / "hosts" / "isolate_holder_lease_expires.toml"
#: Root without the capabilities a lab needs: what an unprivileged CI runner has.
UNPRIVILEGED = [
    "setpriv",
    "--bounding-set",
    "-sys_admin,-net_admin",
    "--inh-caps",
    "-sys_admin,-net_admin",
]
needs_setpriv = pytest.mark.skipif(
    shutil.which("setpriv") is None or WHY is not None,
    reason="needs setpriv and a machine that can build a lab (to take the right away)",
)


def _run_with_fault(base: Path, fault: str, checks: str, tmp_path: Path) -> ScenarioOutcome:
    """``base`` with its faults and expectations replaced by ``fault`` and ``checks``."""
    text = base.read_text().split("[[faults]]")[0]
    path = tmp_path / "scenario.toml"
    path.write_text(f"{text}[[faults]]\n{fault}\n[expect]\nchecks = {checks}\nwithin_s = 40\n")
    return run_scenario(load_scenario(path), tmp_path / "run")


@needs_lab
def test_isolation_catches_a_queue_that_accepts_the_late_result_twice(tmp_path: Path) -> None:
    broken = {
        "command": ["python", "-m", "tests.broken_distq"],
        "env": {"DISTQ_BROKEN": "no-dedup"},
    }
    loaded = load_scenario(ISOLATE)
    scenario = msgspec.structs.replace(loaded, system={**loaded.system, **broken})
    outcome = run_scenario(scenario, tmp_path / "run")
    assert outcome.status == "fail", outcome.report()
    checks = {violation.check for violation in outcome.result.verdict.violations}
    assert "exactly_once" in checks, outcome.report()


@needs_lab
def test_a_kernel_fault_that_dropped_nothing_proves_nothing(tmp_path: Path) -> None:
    # Workers never talk to each other: a one-way cut between two of them drops nothing.
    outcome = _run_with_fault(
        ISOLATE,
        'when = { job_started = 3 }\ndo = "one_way"\ntarget = "worker-1"\n'
        'peers = ["worker-2"]\nduration_s = 1.0\n',
        '["exactly_once", "correct_values"]',
        tmp_path,
    )
    assert outcome.status == "unknown", outcome.report()
    unknowns = [violation.message for violation in outcome.result.verdict.unknowns]
    assert any("the kernel dropped and held back no packet" in m for m in unknowns), unknowns


def _unprivileged(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*UNPRIVILEGED, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@needs_setpriv
def test_without_the_right_to_build_a_lab_harness_run_exits_3_saying_why(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "harness", "run", str(ISOLATE), "--runs-dir", str(tmp_path)]
    done = _unprivileged(argv, tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "hosts need network namespaces (CAP_NET_ADMIN, as root)" in done.stderr


@needs_setpriv
def test_without_the_right_to_build_a_lab_pytest_skips_the_scenario(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "pytest", str(ISOLATE), "-q", "-rs", "-p", "no:randomly"]
    done = _unprivileged(argv, REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert "hosts need network namespaces" in done.stdout


def _held_by(pid: int) -> set[int]:
    """The network namespaces process ``pid`` holds a descriptor of."""
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("net:["):
                held.add(int(target[5:-1]))
    return held


@needs_lab
def test_a_sigkilled_harness_run_leaves_no_namespace_and_no_process(tmp_path: Path) -> None:
    scenario = REPO / "scenarios" / "hosts" / "isolate_holder_reconnect.toml"
    argv = [sys.executable, "-m", "harness", "run", str(scenario), "--runs-dir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as harness:
        ready = tmp_path / "001-isolate_holder_reconnect" / "worker-2.events.jsonl"
        wait_until(
            lambda: ready.exists() and "connected" in ready.read_text(), "worker-2 to connect"
        )
        lab = _held_by(harness.pid)
        assert len(lab) >= 4  # the parent namespace, the master's and two workers'
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    wait_until(lambda: not lab & net_namespaces(), "the lab's namespaces to be gone")


@needs_lab
def test_delay_runs_where_the_kernel_has_netem_and_says_why_not_where_it_has_none(
    tmp_path: Path,
) -> None:
    text = ISOLATE.read_text().split("[[faults]]")[0] + (
        '[[faults]]\nwhen = { job_started = 3 }\ndo = "delay"\ntarget = "holder"\n'
        "delay_ms = 50.0\nduration_s = 1.0\n\n"
        '[expect]\nchecks = ["exactly_once", "correct_values", "fault_coverage"]\n'
        "within_s = 30\n"
    )
    path = tmp_path / "delay_holder.toml"
    path.write_text(text)
    outcome = run_scenario(load_scenario(path), tmp_path / "run")
    missing = netem_unavailable()
    if missing is None:
        assert outcome.status == "pass", outcome.report()
        effects = outcome.result.history.select("fault_effect")
        delays = [effect for effect in effects if effect.get("action") == "delay"]
        assert delays, outcome.report()
        assert delays[0].get("held_back", 0) > 0, outcome.report()
    else:  # nothing ran, and the one line says what the kernel lacks
        assert outcome.status == "unknown", outcome.report()
        unknowns = [violation.message for violation in outcome.result.verdict.unknowns]
        assert unknowns == [f"no run: {missing}"], unknowns
        assert "netem" in missing


@needs_lab
@pytest.mark.engines
def test_a_one_way_cut_without_peers_cuts_the_host_the_workers_reach(tmp_path: Path) -> None:
    # An engine's workers reach the broker's host, not the producer's (the master role): a
    # one-way cut that names no peers drops what the worker sends to the broker, and proves
    # it by the packets its filter dropped.
    outcome = _run_with_fault(
        REPO / "scenarios" / "hosts" / "rq_worker_isolated.toml",
        'when = { job_started = 2 }\ndo = "one_way"\ntarget = "holder"\nduration_s = 1.0\n',
        '["exactly_once", "correct_values", "fault_coverage"]',
        tmp_path,
    )
    assert outcome.status == "pass", outcome.report()
    [effect] = outcome.result.history.select("fault_effect")
    assert effect.get("verified") is True, effect
