"""Hypothesis strategies that generate whole scenarios: job sets, topologies, fault plans.

A generated example *is* a :class:`~harness.scenario.Scenario`, so a failure can be
written out as a scenario file and rerun by anyone. Every part is drawn so that
shrinking heads toward fewer faults, fewer jobs and fewer workers, and every plan can
finish: deaths without a replacement never take the last worker, pauses always resume.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import strategies as st

from harness import systems
from harness.contract import FAULT_ACTIONS, fault_action
from harness.scenario import (
    FORMAT_VERSION,
    ClusterSpec,
    ExpectSpec,
    ExtraJob,
    FaultSpec,
    JobsSpec,
    NetworkSpec,
    Scenario,
    ToxicSpec,
    WhenSpec,
)

__all__ = ["distq_fault_plans", "fault_plans", "job_sets", "scenarios", "topologies"]


def _generated(use: str) -> tuple[str, ...]:
    return tuple(name for name, row in FAULT_ACTIONS.items() if row.generated == use)


#: Faults that may be generated (the fault-action table's ``generated``): deaths remove a
#: worker for good; the others do not.
DEATHS = _generated("death")
SURVIVABLE = _generated("survivable")
#: Network faults (with proxies): a reset after a lease reply costs the worker its
#: connection (it exits), so it counts as a death; the others slow or cut, then heal.
NETWORK_DEATHS = ("reset_after_lease",)
NETWORK_SURVIVABLE = _generated("network")
#: With a journal, the master itself may be killed and restarted: the run goes on. (A
#: restarted worker would come back without --reconnect-s and die at the next restart.)
JOURNAL_SURVIVABLE = _generated("journal")
#: Long enough to outlast a master's restart, short enough that a worker which lost the
#: master just as it finished gives up well within the run's grace for workers to exit.
JOURNAL_WORKER_RECONNECT_S = 8.0


def _toxics(name: str) -> st.SearchStrategy[ToxicSpec]:
    """Toxics that slow a connection down but never break it."""
    probability = st.sampled_from([1.0, 0.5])
    return st.one_of(
        st.builds(
            ToxicSpec,
            name=st.just(name),
            kind=st.just("latency"),
            latency_ms=st.sampled_from([1.0, 10.0, 30.0]),
            jitter_ms=st.sampled_from([0.0, 5.0]),
            probability=probability,
        ),
        st.builds(
            ToxicSpec,
            name=st.just(name),
            kind=st.just("slicer"),
            direction=st.sampled_from(["upstream", "downstream", "both"]),
            chunk_bytes=st.sampled_from([1, 7, 64]),
            chunk_delay_ms=st.sampled_from([0.0, 1.0]),
            probability=probability,
        ),
        st.builds(
            ToxicSpec,
            name=st.just(name),
            kind=st.just("bandwidth"),
            rate_kbps=st.sampled_from([50.0, 500.0]),
            probability=probability,
        ),
    )


@st.composite
def job_sets(draw: st.DrawFn, max_jobs: int = 30, faulty_jobs: bool = True) -> JobsSpec:
    """Square jobs (some slow), plus a few jobs that sleep, fail or crash."""
    count = draw(st.integers(1, max_jobs))
    delay_s = draw(st.sampled_from([0.0, 0.01, 0.05]))
    extra: list[ExtraJob] = []
    if faulty_jobs:
        kinds = st.sampled_from(
            [
                ExtraJob(task="sleep", args=[0.2, "slow"]),
                ExtraJob(task="echo", args=["payload", 3]),
                ExtraJob(task="fail", args=["poison"]),
                ExtraJob(task="crash"),
            ]
        )
        extra = draw(st.lists(kinds, max_size=2))
    return JobsSpec(task="square", count=count, delay_s=delay_s, extra=extra)


@st.composite
def topologies(draw: st.DrawFn, max_workers: int = 4) -> ClusterSpec:
    return ClusterSpec(
        workers=draw(st.integers(1, max_workers)),
        lease_timeout_s=draw(st.sampled_from([1.0, 1.5, 3.0])),
        max_attempts=draw(st.integers(1, 4).map(lambda n: 5 - n)),  # shrinks toward 4
        batch_size=draw(st.none() | st.integers(1, 10)),
    )


@st.composite
def _trigger(draw: st.DrawFn, jobs: int) -> WhenSpec:
    kind = draw(st.sampled_from(["after_s", "job_started", "job_leased", "results"]))
    if kind == "after_s":
        return WhenSpec(after_s=draw(st.sampled_from([0.0, 0.2, 0.5, 1.0])))
    if kind == "results":
        return WhenSpec(results=draw(st.integers(1, max(1, jobs))))
    job = draw(st.integers(0, jobs - 1))
    return WhenSpec(job_started=job) if kind == "job_started" else WhenSpec(job_leased=job)


@st.composite
def distq_fault_plans(
    draw: st.DrawFn,
    jobs: int,
    workers: int,
    max_faults: int = 3,
    network: bool = False,
    journal: bool = False,
) -> list[FaultSpec]:
    """Up to ``max_faults`` faults; at most ``workers - 1`` permanent deaths. With
    ``journal``, master kills and restarts too."""
    plan: list[FaultSpec] = []
    deaths_left = workers - 1
    for number in range(draw(st.integers(0, max_faults))):
        when = draw(_trigger(jobs))
        choices = SURVIVABLE + (DEATHS if deaths_left > 0 else ())
        if journal:
            choices = tuple(c for c in choices if c != "restart") + JOURNAL_SURVIVABLE
        if network:
            choices += NETWORK_SURVIVABLE + (NETWORK_DEATHS if deaths_left > 0 else ())
        action = draw(st.sampled_from(choices))
        job_trigger = when.trigger().job is not None
        targets = ["random", *(f"worker-{n}" for n in range(1, workers + 1))]
        if job_trigger:
            targets.insert(0, "holder")
        if action == "reset_after_lease":
            target = draw(st.sampled_from(targets[1:] if job_trigger else targets))
            toxic = ToxicSpec(
                name=f"cut-{number}",
                kind="reset",
                after_frames=1,
                frames_direction="downstream",
                frames_matching="lease",
            )
            plan.append(FaultSpec(when=when, do="add_toxic", target=target, toxic=toxic))
            deaths_left -= 1
            continue
        fields: dict[str, Any] = {"when": when, "do": action}
        if action == "partition":
            fields["target"] = draw(st.sampled_from(targets))
            fields["duration_s"] = draw(st.sampled_from([0.5, 2.0, 4.0]))
        if action == "add_toxic":
            fields["target"] = draw(st.sampled_from(["all", *targets]))
            fields["toxic"] = draw(_toxics(f"slow-{number}"))
        if fault_action(action).aims == "process":
            fields["target"] = draw(st.sampled_from(targets))
        if action in DEATHS:
            deaths_left -= 1
        if action == "pause":
            fields["duration_s"] = draw(st.sampled_from([0.5, 2.0, 4.0]))
        if fault_action(action).starts_workers or fault_action(action).attack:
            fields["count"] = draw(st.integers(1, 2))
        plan.append(FaultSpec(**fields))
    return plan


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    max_jobs: int = 30,
    max_workers: int = 4,
    max_faults: int = 3,
    faulty_jobs: bool = True,
    system: dict[str, Any] | None = None,
    network: bool = False,
    journal: bool = False,
) -> Scenario:
    """A whole scenario whose checks are the properties every run must satisfy.

    With ``network``, workers reach the master through fault proxies, some start with a
    slowing toxic, and plans may partition, slow down or cut connections. With ``journal``,
    the master keeps one, workers rejoin a lost master, and plans may restart the master."""
    cluster = draw(topologies(max_workers))
    table = dict(system or {})
    if table.get("kind", systems.DEFAULT_KIND) == systems.DEFAULT_KIND:  # its own knobs
        table |= {"prefetch": draw(st.none() | st.integers(1, 8)), "handshake_timeout_s": 2.0}
        table = {key: value for key, value in table.items() if value is not None}
    if journal:
        table |= {"journal": True, "worker_reconnect_s": JOURNAL_WORKER_RECONNECT_S}
    jobs = draw(job_sets(max_jobs, faulty_jobs))
    total_jobs = jobs.count + sum(extra.count for extra in jobs.extra)
    faults = draw(distq_fault_plans(total_jobs, cluster.workers, max_faults, network, journal))
    network_spec = NetworkSpec()
    if network:
        initial = draw(st.lists(_toxics("initial"), max_size=1))
        network_spec = NetworkSpec(proxy=True, toxics=initial)
    checks: list[Any] = ["exactly_once", "correct_values", "one_terminal", "liveness"]
    if cluster.batch_size is not None:
        checks += ["batch_barrier", "batch_shape"]
    # Room for every attempt of every slow job, with a generous margin for a loaded machine.
    within_s = 30.0 + 3 * cluster.lease_timeout_s * cluster.max_attempts + 0.1 * total_jobs
    return Scenario(
        scenario=FORMAT_VERSION,
        name="generated",
        description="generated by harness.strategies.scenarios: every job yields exactly one correct result",
        seed=draw(st.integers(0, 2**16)),
        cluster=cluster,
        jobs=jobs,
        faults=faults,
        expect=ExpectSpec(checks=checks, within_s=round(within_s, 1)),
        system=table,
        network=network_spec,
    )


# -- fault plans against any system, from a base scenario ----------------------------------

#: Checks about the windows a base's own faults open (a holder taken away, a late
#: duplicate, an expiry, a time limit, two runs of a job at once, workers joining while
#: there is work): another plan may open none of them.
_WINDOW_CHECKS = frozenset(
    {
        "recovery_latency",
        "first_result_wins",
        "no_spurious_expiry",
        "time_limits",
        "reached",
        "no_overlap",
        "admitted",
    }
)
#: Triggers a plan may use, the ones that shrink best first.
_PLAN_TRIGGERS = ("job_leased", "job_started", "job_completed", "results", "after_s")
_DURATIONS_S = (0.5, 2.0, 4.0)


@st.composite
def fault_plans(draw: st.DrawFn, base: Scenario, max_faults: int = 3) -> Scenario:
    """``base`` with a drawn fault plan in place of its own: what its system supports (its
    actions, triggers and roles), network faults where it has proxies, broker faults where
    it has a broker, master restarts where it keeps a journal. Shrinks toward fewer faults,
    fewer workers and jobs (where the scenario sets them), earlier triggers. Every plan can
    finish: deaths never take the last worker, pauses and partitions end."""
    kind, config = systems.parse_table(base.system)
    facts = kind.facts
    roles = tuple(getattr(kind.build(config), "run_roles", facts.roles))
    workers = draw(st.integers(1, max(1, base.cluster.workers)))
    fixed_jobs = kind.name == "managers"  # the app decides its own work
    count = base.jobs.count if fixed_jobs else draw(st.integers(1, max(1, base.jobs.count)))
    total = count + sum(extra.count for extra in base.jobs.extra)
    uses = {"death", "survivable"}
    if base.network.proxy:
        uses.add("network")
    if base.system.get("journal"):
        uses.add("journal")
    if base.network.hosts:
        uses.add("hosts")
    actions = [
        name
        for name, row in FAULT_ACTIONS.items()
        if row.generated in uses and name in facts.actions and not row.attack
    ]
    # Event triggers fire whenever the run reaches them; a time trigger may come after a
    # short run has ended (the fault never fires: unknown), so it is a last resort.
    triggers = [t for t in _PLAN_TRIGGERS if t in facts.triggers and t != "after_s"]
    triggers = triggers or ["after_s"]
    others = [role for role in roles if role not in (systems.MASTER, systems.WORKER)]
    drawn = draw(st.lists(_fault(actions, triggers, others, workers, total), max_size=max_faults))
    plan: list[FaultSpec] = []
    deaths_left = workers - 1
    struck: set[str] = set()  # one process fault per process: two race (a pause of the dead)
    for fault in drawn:  # deaths beyond all but one worker are left out
        if fault_action(fault.do).aims == "process" and fault.target is not None:
            aimed = fault.target
            if aimed == "holder":
                aimed = f"holder of {fault.when.trigger().record()}"
            if aimed in struck:
                continue
            struck.add(aimed)
        if fault_action(fault.do).generated == "death":
            if deaths_left == 0:
                continue
            deaths_left -= 1
        plan.append(fault)
    seconds = sum(f.duration_s or 0.0 for f in plan)
    raw = msgspec.to_builtins(base)
    raw["faults"] = msgspec.to_builtins(plan)
    raw["cluster"]["workers"] = workers
    raw["jobs"]["count"] = count
    system = raw["system"]
    if isinstance(system.get("collect_s"), int | float):
        # A producer that collects for a fixed time: fewer workers take longer, and every
        # window of the plan delays the work by its length.
        scale = max(1.0, base.cluster.workers / workers)
        system["collect_s"] = round(float(system["collect_s"]) * scale + seconds, 1)
    expect = raw["expect"]
    expect.pop("expect_violation", None)  # a plan of its own: the base's pins say nothing
    # Checks of the base's own fault windows judge nothing under another plan (unknown):
    # they go, with its reached assertions; fault_coverage stays while there are faults.
    window_checks = _WINDOW_CHECKS | ({"fault_coverage"} if not plan else set())
    expect["checks"] = [c for c in expect["checks"] if c not in window_checks]
    expect["reached"] = []
    scale = max(1.0, base.cluster.workers / workers)
    expect["within_s"] = round(float(expect.get("within_s", 60)) * scale + seconds + 5.0, 1)
    raw["name"] = f"{base.name} (explored)"
    return msgspec.convert(raw, Scenario)


@st.composite
def _fault(
    draw: st.DrawFn,
    actions: list[str],
    triggers: list[str],
    others: list[str],
    workers: int,
    jobs: int,
) -> FaultSpec:
    """One fault: each part drawn on its own, so a plan shrinks fault by fault."""
    kind_of = draw(st.sampled_from(triggers))
    when = _when(draw, kind_of, jobs)
    action = draw(st.sampled_from(actions))
    facts_of = fault_action(action)
    fields: dict[str, Any] = {"when": when, "do": action}
    if facts_of.takes_target:
        targets = [f"worker-{n}" for n in range(1, workers + 1)]
        if kind_of in ("job_leased", "job_started") and facts_of.aims == "process":
            targets.insert(0, "holder")
        if facts_of.aims == "process" and (facts_of.suspends or facts_of.comes_back):
            targets += others  # a broker or server paused or restarted comes back
        fields["target"] = draw(st.sampled_from(targets))
    if facts_of.suspends:  # a window the plan ends by itself
        fields["duration_s"] = draw(st.sampled_from(_DURATIONS_S))
    if action == "add_toxic":
        fields["toxic"] = draw(_toxics("slow"))
    if action == "loss":
        fields["probability"] = draw(st.sampled_from([0.1, 0.2, 0.4]))
    if action == "bandwidth":
        fields["rate_kbit"] = draw(st.sampled_from([64.0, 512.0]))
    if action == "delay":
        fields["delay_ms"] = draw(st.sampled_from([50.0, 200.0]))
    if facts_of.starts_workers:
        fields["count"] = 1
    return FaultSpec(**fields)


def _when(draw: st.DrawFn, kind: str, jobs: int) -> WhenSpec:
    if kind == "after_s":
        return WhenSpec(after_s=draw(st.sampled_from([0.0, 0.2, 0.5, 1.0])))
    if kind == "results":
        return WhenSpec(results=draw(st.integers(1, max(1, jobs))))
    job = draw(st.integers(0, max(0, jobs - 1)))
    if kind == "job_leased":
        return WhenSpec(job_leased=job)
    return WhenSpec(job_started=job) if kind == "job_started" else WhenSpec(job_completed=job)
