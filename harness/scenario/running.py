"""A scenario as a run: its run spec, running it, and the outcome of that run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from harness import systems
from harness.checks import CheckContext, Outcome, Status
from harness.runtime.faults import Fault
from harness.runtime.run import RunResult, RunSpec, run
from harness.scenario.model import (
    Scenario,
)

#: In ``[jobs] args``, the job's number (0, 1, ...).
JOB_NUMBER = "{n}"


def _jobs(scenario: Scenario) -> Iterator[dict[str, Any]]:
    """Each job of the scenario in order (one at a time: a soak run has a million)."""
    spec = scenario.jobs
    for number in range(spec.count):
        if spec.args is not None:  # a template: "{n}" stands for the job's number
            args: list[Any] = [number if arg == JOB_NUMBER else arg for arg in spec.args]
        elif spec.task == "square" and spec.delay_s:
            args = [number, spec.delay_s]
        elif spec.task in ("square", "echo"):
            args = [number]
        else:
            args = []
        job: dict[str, Any] = {"task": spec.task, "args": args}
        if spec.time_limit_s is not None:
            job["time_limit_s"] = spec.time_limit_s
        yield job
    for extra in spec.extra:
        for _ in range(extra.count):
            job = {"task": extra.task, "args": list(extra.args)}
            if extra.time_limit_s is not None:
                job["time_limit_s"] = extra.time_limit_s
            yield job


_encode = msgspec.json.Encoder().encode


def _job_line(job: dict[str, Any]) -> bytes:
    return _encode(job) + b"\n"


def _prefetch(scenario: Scenario) -> int | None:
    """The most jobs one lease may hold, if the system states it (``[system] prefetch``)."""
    value = scenario.system.get("prefetch")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def to_run_spec(scenario: Scenario, run_dir: Path) -> RunSpec:
    """Write the job set into ``run_dir`` and translate the scenario into a run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    jobs_path = run_dir.resolve() / "jobs.jsonl"  # the master runs inside the run directory
    # msgspec: a million jobs' lines in well under a second (json.dumps took seconds).
    jobs_path.write_bytes(b"".join(map(_job_line, _jobs(scenario))))
    cluster = scenario.cluster
    settings = msgspec.structs.asdict(cluster)  # workers included: a producer waits for them
    faults = tuple(
        Fault(
            f.when.trigger(),
            f.do,
            f.target,
            f.count,
            f.duration_s,
            f.expect,
            None if f.toxic is None else f.toxic.to_toxic(),
            f.toxic_name,
            f.scope or "tree",
            tuple(f.peers),
            f.probability,
            f.rate_kbit,
            f.delay_ms,
            f.output,
            f.keep_bytes,
            f.keep_fraction,
            f.mid_line,
        )
        for f in scenario.faults
    )
    checks: list[str] = list(scenario.expect.checks)
    if scenario.faults:  # a fault that missed, or a run that never ended, proves nothing
        checks += [name for name in ("fault_coverage", "liveness") if name not in checks]
    checks += [known for known in scenario.expect.known_checks if known not in checks]
    if scenario.expect.reached and "reached" not in checks:
        checks.append("reached")
    return RunSpec(
        workers=cluster.workers,
        faults=faults,
        seed=scenario.seed,
        bound_s=scenario.expect.within_s,
        checks=tuple(checks),
        lease_timeout_s=cluster.lease_timeout_s,
        system=systems.build(scenario.system),
        jobs_path=jobs_path,
        settings=settings,
        proxy_seed=scenario.seed if scenario.network.proxy else None,
        hosts=scenario.network.hosts,
        initial_toxics=tuple((t.to_toxic(), frozenset(t.workers)) for t in scenario.network.toxics),
        title=scenario.name,
        known_violations=scenario.expect.known_violations,
        context=CheckContext(
            max_attempts=cluster.max_attempts,
            prefetch=_prefetch(scenario),
            batch_size=cluster.batch_size,
            recovery_bound_s=scenario.expect.recovery_bound_s,
            time_limit_slack_s=scenario.expect.time_limit_slack_s,
            reached=scenario.expect.reaches,
            expected_exits=dict(scenario.expect.exit_codes),
        ),
    )


@dataclass(frozen=True, slots=True)
class ScenarioOutcome:
    """A scenario's run and what it means, ``expect_violation`` taken into account."""

    scenario: Scenario
    result: RunResult
    outcome: Outcome

    @property
    def status(self) -> Status:
        return self.outcome.status

    @property
    def message(self) -> str:
        return self.outcome.message

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code

    def report(self) -> str:
        return f"{self.message}\n{self.result.report()}"


def run_scenario(scenario: Scenario, run_dir: Path) -> ScenarioOutcome:
    result = run(to_run_spec(scenario, run_dir), run_dir)
    outcome = result.outcome
    if outcome is None:
        status = result.verdict.status
        outcome = Outcome(status, f"{scenario.name}: {status}")
    return ScenarioOutcome(scenario, result, outcome)
