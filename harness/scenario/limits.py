"""What a scenario may ask for: every number finite and of a sane size, bounded totals of
processes, jobs and attack connections, and references that can be reached (a toxic that
was added, a batch that exists, a count of joins that can happen). A scenario that asks
for the impossible would prove nothing, or take the machine down; it is refused.
"""

from __future__ import annotations

import math
from typing import Any

from harness.contract import fault_action

__all__ = [
    "MAX_ATTACK_CONNECTIONS",
    "MAX_JOBS",
    "MAX_NUMBER",
    "MAX_PROCESSES",
    "check_numbers",
    "check_reachable",
]

MAX_NUMBER = 1e9  # no duration, count or rate in a scenario is near this
MAX_PROCESSES = 64  # workers a scenario may start in all: at the start, added, intruders
MAX_JOBS = 1_000_000  # jobs in all, [[jobs.extra]] included
MAX_ATTACK_CONNECTIONS = 10_000  # idle sockets, garbage and bad handshakes in all
MIN_DURATION_S = 0.001  # no duration a scenario gives is shorter (nor, above, longer)
#: Targets that name no process: the holder of the trigger's job, any live worker, every link.
_TARGET_WORDS = frozenset({"holder", "random", "all"})


def check_numbers(raw: Any, path: str = "") -> str | None:
    """The first float that is NaN, infinite or beyond ``MAX_NUMBER`` (as "key: got X,
    expected ..."), or None. Integers are bounded by each field's own limits."""
    if isinstance(raw, float):
        if not math.isfinite(raw) or abs(raw) > MAX_NUMBER:
            return f"{path or '$'}: got {raw!r}, expected a finite number of at most {MAX_NUMBER:g}"
        if path.endswith("_s") and 0 < raw < MIN_DURATION_S:
            return f"{path}: got {raw!r}, expected 0 or a duration of at least {MIN_DURATION_S:g} s"
        return None
    if isinstance(raw, dict):
        items: Any = raw.items()
    elif isinstance(raw, list):
        items = ((f"[{index}]", value) for index, value in enumerate(raw))
    else:
        return None
    for key, value in items:
        where = f"{path}{key}" if str(key).startswith("[") else f"{path}.{key}" if path else key
        found = check_numbers(value, where)
        if found:
            return found
    return None


def process_names(scenario: Any, roles: tuple[str, ...]) -> list[str]:
    """Every process the run of ``scenario`` will have a name for: its workers (those at the
    start and those added), the intruders its faults start, and its other roles."""
    faults = scenario.faults
    added = sum(
        f.count
        for f in faults
        if fault_action(f.do).starts_workers and not fault_action(f.do).attack
    )
    intruders = sum(f.count for f in faults if fault_action(f.do).attack == "intruder")
    names = [role for role in roles if role != "worker"]
    names += [f"worker-{n}" for n in range(1, scenario.cluster.workers + added + 1)]
    return names + [f"intruder-{n}" for n in range(1, intruders + 1)]


def check_targets(scenario: Any, roles: tuple[str, ...]) -> None:
    """Raise ValueError (one line) for a fault or toxic aimed at a process the run will never
    have (``worker-99`` of three workers)."""
    names = process_names(scenario, roles)
    known = set(names)

    def refuse(where: str, name: str) -> None:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise ValueError(f"{where} = {name!r} names no process of this run (it has: {shown})")

    for number, fault in enumerate(scenario.faults):
        if fault.target not in _TARGET_WORDS and fault.target not in known:
            refuse(f"faults[{number}].target", fault.target)
        for peer in getattr(fault, "peers", ()):
            if peer not in known:
                refuse(f"faults[{number}].peers", peer)
    for number, toxic in enumerate(scenario.network.toxics):
        for worker in toxic.workers:
            if worker not in known:
                refuse(f"network.toxics[{number}].workers", worker)


def check_reachable(scenario: Any) -> None:
    """Raise ValueError (one line) for totals over their bounds and references that
    cannot be reached. ``scenario`` is a ``harness.scenario.Scenario``."""
    faults = scenario.faults
    started = scenario.cluster.workers + sum(
        fault.count for fault in faults if fault_action(fault.do).starts_workers
    )
    if started > MAX_PROCESSES:
        raise ValueError(
            f"the scenario starts {started} workers in all (cluster.workers, add_worker and "
            f"wrong-key workers); at most {MAX_PROCESSES}"
        )
    jobs = scenario.jobs.count + sum(extra.count for extra in scenario.jobs.extra)
    if jobs > MAX_JOBS:
        raise ValueError(f"the scenario has {jobs} jobs in all; at most {MAX_JOBS}")
    attacks = sum(
        fault.count
        for fault in faults
        if fault_action(fault.do).attack and not fault_action(fault.do).starts_workers
    )
    if attacks > MAX_ATTACK_CONNECTIONS:
        raise ValueError(
            f"the scenario opens {attacks} attack connections in all; at most "
            f"{MAX_ATTACK_CONNECTIONS}"
        )
    toxics = {toxic.name for toxic in scenario.network.toxics}
    toxics |= {fault.toxic.name for fault in faults if fault.toxic is not None}
    batch_size = scenario.cluster.batch_size
    batches = math.ceil(jobs / batch_size) if batch_size else 0
    restarts_master = any(
        fault_action(fault.do).comes_back and fault_action(fault.do).aims == "master"
        for fault in faults
    )
    joins = (
        math.inf
        if restarts_master
        else scenario.cluster.workers
        + sum(
            fault.count if fault_action(fault.do).starts_workers else 1
            for fault in faults
            if fault.do == "add_worker"
            or (fault_action(fault.do).comes_back and fault_action(fault.do).aims == "process")
        )
    )
    for number, fault in enumerate(faults):
        where = f"faults[{number}]"
        if fault.do == "remove_toxic" and fault.toxic_name not in toxics:
            known = ", ".join(sorted(toxics)) or "none"
            raise ValueError(
                f"{where}.toxic_name = {fault.toxic_name!r} names no toxic the scenario adds "
                f"(it adds: {known})"
            )
        when = fault.when
        if when.batch_closed is not None and when.batch_closed >= batches:
            have = f"batches 0..{batches - 1}" if batches else "no batches (no cluster.batch_size)"
            raise ValueError(
                f"{where}.when.batch_closed = {when.batch_closed} can never happen: there are {have}"
            )
        if when.workers_joined is not None and when.workers_joined > joins:
            raise ValueError(
                f"{where}.when.workers_joined = {when.workers_joined} can never happen: at most "
                f"{joins} workers join (cluster.workers, add_worker, restart)"
            )
