"""Run one cluster under a fault plan, within a bound, and judge its history.

This is the one place that strings the harness together: spawn (cluster), break
(faults), record (history) and check (checks). A scenario file, a Hypothesis example and
a hand-written test all become a ``RunSpec``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import contract, systems
from harness.checks import (
    NO_CONTEXT,
    CheckContext,
    Outcome,
    Pin,
    Verdict,
    Violation,
    judge,
    known_bug_outcome,
)
from harness.contract import EventWriter
from harness.history import History, HistoryError
from harness.net.hosts import Lab, kernel_unavailable
from harness.net.toxics import Toxic
from harness.report import write_report, write_verdict
from harness.runtime.cluster import Cluster, Proc, kill_tree
from harness.runtime.disks import disks_unavailable
from harness.runtime.faults import Fault, FaultInjector, run_until
from harness.systems import MASTER, WORKER, System

__all__ = ["RunResult", "RunSpec", "run"]

#: How long workers get to notice the end of the run and exit on their own.
WORKER_EXIT_GRACE_S = 15.0


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything one run needs: the system under test (default distq), its workload
    (``jobs_path``) and knobs (``settings``, a ``[cluster]`` table), and extra arguments
    for its master and workers."""

    master_args: tuple[str, ...] = ()
    workers: int = 2
    worker_args: tuple[str, ...] = ()
    faults: tuple[Fault, ...] = ()
    seed: int = 0
    bound_s: float = 60.0
    checks: tuple[str, ...] = ("exactly_once", "correct_values")
    lease_timeout_s: float | None = None
    system: System = field(default_factory=systems.default_system)
    jobs_path: Path | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # added to the processes' environment
    proxy_seed: int | None = None  # workers reach the master through seeded fault proxies
    initial_toxics: tuple[tuple[Toxic, frozenset[str]], ...] = ()
    #: Each process runs on a host of its own, in a lab built for the run (``net.hosts``).
    hosts: bool = False
    #: What the scenario states, for the checks to hold the system to.
    context: CheckContext = NO_CONTEXT
    title: str = ""  # what the report calls the run; default: its directory's name
    #: A known-bug reproduction's ``expect_violation``: the run's outcome is judged against
    #: these pins (``checks.known_bug_outcome``) and its report says so.
    known_violations: tuple[Pin, ...] = ()


@dataclass(frozen=True, slots=True)
class RunResult:
    run_dir: Path
    verdict: Verdict
    history: History
    timed_out: bool
    elapsed_s: float
    exit_codes: dict[str, int | None]
    log_tails: dict[str, str]
    stacks_dumped: tuple[str, ...] = ()
    report_path: Path | None = None  # report.html, when it could be built
    report_error: str = ""
    outcome: Outcome | None = None  # what the run means for a known-bug reproduction

    def report(self) -> str:
        """The verdict, each violation with its history lines, and each process's log tail."""
        parts = [self.verdict.report(self.history)]
        for name, tail in sorted(self.log_tails.items()):
            if tail.strip():
                parts.append(
                    f"--- last lines of {name}.log (exit {self.exit_codes.get(name)}) ---\n{tail}"
                )
        parts.append(f"run directory: {self.run_dir}")
        if self.report_path is not None:
            parts.append(f"report: {self.report_path.as_uri()}")
        elif self.report_error:
            parts.append(f"report: not built ({self.report_error})")
        return "\n".join(parts)


def _all_done(cluster: Cluster) -> bool:
    """The run is over when the master has exited and every worker has too."""
    if cluster.master is None or cluster.master.alive():
        return False
    return not any(proc.alive() for proc in cluster.workers())


def run(spec: RunSpec, run_dir: Path) -> RunResult:
    """Start the cluster, drive its fault plan until it is done (or the bound runs
    out), then collect the exits and logs, judge the history and draw the report."""
    run_dir = Path(run_dir).resolve()  # processes run inside it: no relative paths
    missing = disks_unavailable() if _filled_outputs(spec) else None
    if missing is not None:  # nothing ran, so nothing is proved: unknown, never a pass
        run_dir.mkdir(parents=True, exist_ok=True)
        why = Violation("disks", f"no run: {missing}", severity="unknown")
        verdict = Verdict("unknown", (), (why,), spec.checks)
        return RunResult(run_dir, verdict, History(()), False, 0.0, {}, {})
    if not spec.hosts:
        return _run(spec, run_dir, None)
    missing = kernel_unavailable(fault.do for fault in spec.faults)
    if missing is not None:  # nothing ran, so nothing is proved: unknown, never a pass
        run_dir.mkdir(parents=True, exist_ok=True)
        why = Violation("hosts", f"no run: {missing}", severity="unknown")
        verdict = Verdict("unknown", (), (why,), spec.checks)
        return RunResult(run_dir, verdict, History(()), False, 0.0, {}, {})
    with Lab() as lab:
        return _run(spec, run_dir, lab)


def _run(spec: RunSpec, run_dir: Path, lab: Lab | None) -> RunResult:
    started = time.monotonic()
    timed_out = False
    dumped: list[str] = []
    cluster = _new_cluster(spec, run_dir, lab)
    log = EventWriter(
        run_dir / contract.events_name(contract.HARNESS), contract.HARNESS, cluster.epoch
    )
    cluster.on_proxy_event = log.write
    try:
        with cluster:
            try:
                if not _drive_until_done(spec, cluster, log):
                    timed_out = True
                    dumped = cluster.dump_stacks()
                    log.write(contract.HANG, bound_s=spec.bound_s, stacks=dumped)
                else:  # the master and every worker are gone: nothing more crosses a proxy
                    # A link a toxic swallowed may not have seen its ends close yet: closing
                    # the proxies records its effect while the run's log is still open.
                    cluster.close_proxies()
            finally:
                elapsed = time.monotonic() - started
                _log_run_finished(log, spec, cluster, elapsed, timed_out)
                log.close()
    finally:
        log.close()  # also when the master never became ready
    # Teardown is done: every log is complete, and the history reads it whole.
    cluster.run_events.forget()
    exits = _collect_exits(cluster)
    try:
        history = History.load_run(run_dir)
    except HistoryError as exc:  # a damaged log proves nothing: it fails the run
        damaged = Violation("history", f"the run's history cannot be read: {exc}")
        verdict = Verdict("fail", (damaged,), (), spec.checks)
        return RunResult(
            run_dir,
            verdict,
            History(()),
            timed_out,
            elapsed,
            exits.codes,
            exits.tails,
            tuple(dumped),
        )
    verdict, outcome = _judge(spec, run_dir, cluster, history, exits)
    report_path, report_error = _draw_report(spec, run_dir, history, verdict, outcome)
    return RunResult(
        run_dir,
        verdict,
        history,
        timed_out,
        elapsed,
        exits.codes,
        exits.tails,
        tuple(dumped),
        report_path,
        report_error,
        outcome,
    )


def _new_cluster(spec: RunSpec, run_dir: Path, lab: Lab | None = None) -> Cluster:
    """The cluster ``spec`` describes, not started yet."""
    return Cluster(
        run_dir,
        spec.master_args,
        system=spec.system,
        jobs_path=spec.jobs_path,
        settings=spec.settings,
        worker_args=spec.worker_args,
        env={**os.environ, **spec.env},
        proxy_seed=spec.proxy_seed,
        initial_toxics=spec.initial_toxics,
        lab=lab,
        ready_timeout_s=_ready_timeout_s(spec.jobs_path),
        small_disks=_filled_outputs(spec),
    )


def _filled_outputs(spec: RunSpec) -> tuple[str, ...]:
    """The outputs a ``disk_full`` of the plan fills: each needs a filesystem of its own."""
    return tuple(
        sorted({f.output for f in spec.faults if f.do == "disk_full" and f.output is not None})
    )


#: How long a master may take to be ready: this long, and this long more per job it loads
#: first (a soak run's master submits a million jobs before it is ready).
READY_TIMEOUT_S, READY_PER_JOB_S = 30.0, 50e-6


def _ready_timeout_s(jobs_path: Path | None) -> float:
    if jobs_path is None or not jobs_path.is_file():
        return READY_TIMEOUT_S
    with open(jobs_path, "rb") as jobs:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: jobs.read(1 << 20), b""))
    return READY_TIMEOUT_S + READY_PER_JOB_S * lines


def _drive_until_done(spec: RunSpec, cluster: Cluster, log: EventWriter) -> bool:
    """Start the workers and apply the fault plan until the master and then every worker
    have exited. False when that did not happen within the bound (a hang)."""
    # The injector first: it arms the frames its faults hold before any worker's link is up.
    injector = FaultInjector(cluster, list(spec.faults), spec.seed, log)
    first = [cluster.add_worker() for _ in range(spec.workers)]
    injector.time_held = True
    # after_s counts from a cluster whose workers are all in; event triggers fire
    # meanwhile (the first worker may be busy long before the last one joins).
    run_until(injector, lambda: _joined(cluster, first), spec.bound_s)
    injector.release_time()
    try:
        finished = run_until(injector, lambda: _master_done(cluster), spec.bound_s)
        if finished and spec.system.workers_outlive_master:
            for proc in cluster.workers():  # an engine's workers never stop alone
                kill_tree(proc.pid, cluster.grace_s)
        if finished:
            # Workers notice the end (or a lost master) on their own, within a grace.
            finished = run_until(injector, lambda: _all_done(cluster), WORKER_EXIT_GRACE_S)
    finally:
        injector.close()
    return finished


def _log_run_finished(
    log: EventWriter, spec: RunSpec, cluster: Cluster, elapsed: float, timed_out: bool
) -> None:
    exit_codes = {name: proc.returncode for name, proc in cluster.procs.items()}
    log.write(
        contract.RUN_FINISHED,
        elapsed_s=round(elapsed, 3),
        bound_s=spec.bound_s,
        timed_out=timed_out,
        exit_codes=exit_codes,
    )


@dataclass(frozen=True, slots=True)
class _Exits:
    """How each process of a torn-down cluster ended, and what it logged."""

    codes: dict[str, int | None]
    tails: dict[str, str]  # the last lines of each log, for the report
    logs: dict[str, str]  # each whole log, for the checks


def _collect_exits(cluster: Cluster) -> _Exits:
    return _Exits(
        codes={name: proc.returncode for name, proc in cluster.procs.items()},
        tails={name: proc.log_tail(15) for name, proc in cluster.procs.items()},
        logs={
            name: proc.log_path.read_text(errors="replace")
            for name, proc in cluster.procs.items()
            if proc.log_path.exists()
        },
    )


def _judge(
    spec: RunSpec, run_dir: Path, cluster: Cluster, history: History, exits: _Exits
) -> tuple[Verdict, Outcome | None]:
    """The verdict of the spec's checks on ``history``, and for a known-bug reproduction
    what that verdict means."""
    system = spec.system
    context = replace(
        spec.context,
        # A service the system needs (a broker) runs until the harness stops it: only the
        # master's and the workers' exits are the system's to document, and those of the
        # roles the system says end on their own with a meaning (distq's producer).
        exit_codes={
            name: code
            for name, code in exits.codes.items()
            if cluster.procs[name].role in getattr(system, "exit_judged_roles", (MASTER, WORKER))
        },
        logs=exits.logs,
        faults_planned=len(spec.faults),
        expected=system.expected,
        documented=system.exit_codes,
        lease_timeout_s=(
            spec.context.lease_timeout_s if spec.lease_timeout_s is None else spec.lease_timeout_s
        ),
    )
    verdict = judge(history, spec.checks, context)
    outcome = None
    if spec.known_violations:
        name = spec.title or run_dir.name
        pins = spec.known_violations
        if any(pin.tasks is not None for pin in pins):  # named by task: numbered by this run
            submitted = [(job, sub.args) for job, sub in history.submitted().items()]
            pins = tuple(pin.on_jobs(submitted) for pin in pins)
        outcome = known_bug_outcome(name, pins, verdict)
    return verdict, outcome


def _draw_report(
    spec: RunSpec, run_dir: Path, history: History, verdict: Verdict, outcome: Outcome | None
) -> tuple[Path | None, str]:
    """Write ``verdict.json``, then draw the report: ``report.html``'s path, or None and why
    it could not be drawn. The verdict is written first and outside the ``try``: a picture
    that cannot be drawn never costs the run its recorded result."""
    title, planned = spec.title or run_dir.name, len(spec.faults)
    write_verdict(run_dir, verdict, title=title, faults_planned=planned, outcome=outcome)
    try:
        report_path = write_report(
            run_dir,
            history,
            verdict,
            title=title,
            faults_planned=planned,
            outcome=outcome,
        )
    except Exception as exc:  # a picture that cannot be drawn must not cost the verdict
        return None, f"{type(exc).__name__}: {exc}"
    return report_path, ""


def _joined(cluster: Cluster, procs: list[Proc]) -> bool:
    """Every one of ``procs`` has joined the master, or exited (its own business)."""
    joined = all(cluster.joined(proc.name) or not proc.alive() for proc in procs)
    return joined or _master_done(cluster)


def _master_done(cluster: Cluster) -> bool:
    """The master exited (and was not replaced by a restart still starting up)."""
    return cluster.master is not None and not cluster.master.alive()
