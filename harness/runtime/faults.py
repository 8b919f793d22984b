"""Fault actions, their triggers and targets, and the injector that fires them.

Triggers follow the event logs as they are written: after T seconds, when job N is
leased / started / completed, when K results are in, when batch k closes. Targets are a
named worker, ``holder`` (the worker holding the trigger's job) or ``random`` (from the
run's seed). Every fault injected is written as a ``fault`` event of the harness, with
what the checkers need to tell whether it hit its window (``expect``).
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import contract
from harness.contract import (
    ACTIONS,
    HOST_ACTIONS,
    NETWORK_ACTIONS,
    TRIGGERS,
    WINDOW_ENDS,
    ActionName,
    EventWriter,
    fault_action,
)
from harness.net.hosts import KernelFault, LabError
from harness.net.toxics import Toxic
from harness.runtime.cluster import Cluster
from harness.runtime.effects import Effect, Pause, Scope, pause_tree, signal_tree, verify_gone
from harness.systems.base import MASTER, WORKER, HoldsFrames, attack_source, parse_address

#: The actions that end another's window (resume, heal, heal_hosts), from the facts table.
_WINDOW_ENDINGS = frozenset(WINDOW_ENDS.values())

__all__ = [
    "ACTIONS",
    "NETWORK_ACTIONS",
    "TRIGGERS",
    "Fault",
    "FaultInjector",
    "Trigger",
    "run_until",
]

ATTEMPT_TRIGGERS = frozenset({"job_leased", "job_started"})
#: The host the harness's own attack connections come from, on hosts of their own.
ATTACKER = "attacker"
#: How long a restarted worker has to join the master again (a loaded machine is slow).
REJOIN_BOUND_S = 30.0


@dataclass(frozen=True, slots=True)
class Trigger:
    kind: str
    value: float | int  # seconds for after_s; a job id, batch index or count otherwise
    attempt: int | None = None  # job_leased/job_started: that attempt (None: the first seen)
    hold: bool = False  # the system holds the frame that fires it until the fault has acted
    wait_s: float = 0.0  # an event trigger: act this long after the event

    def __post_init__(self) -> None:
        if self.kind not in TRIGGERS:
            raise ValueError(
                f"unknown trigger {self.kind!r} (expected one of {', '.join(TRIGGERS)})"
            )
        if not (math.isfinite(self.wait_s) and self.wait_s >= 0):
            raise ValueError(f"wait_s = {self.wait_s!r} is not a number of seconds >= 0")
        if self.wait_s and self.kind == "after_s":
            raise ValueError("wait_s follows an event trigger; with after_s, add it to after_s")
        if self.attempt is not None:
            if self.kind not in ATTEMPT_TRIGGERS:
                raise ValueError(
                    f"attempt applies to {' and '.join(sorted(ATTEMPT_TRIGGERS))}, not {self.kind}"
                )
            if self.attempt < 1:
                raise ValueError(f"attempt counts from 1, got {self.attempt}")

    @property
    def job(self) -> int | None:
        return int(self.value) if self.kind.startswith("job_") else None

    def record(self) -> dict[str, float | int]:
        """As written in a fault event: ``{kind: value}``, plus the attempt if given."""
        fields: dict[str, float | int] = {self.kind: self.value}
        if self.attempt is not None:
            fields["attempt"] = self.attempt
        if self.hold:
            fields["hold"] = True
        if self.wait_s:
            fields["wait_s"] = self.wait_s
        return fields


@dataclass(frozen=True, slots=True)
class Fault:
    when: Trigger
    do: ActionName
    target: str = "random"
    count: int = 1
    duration_s: float | None = None
    expect: str | None = None  # "holder" | "outlast_lease" | None; derived when None
    toxic: Toxic | None = None  # for add_toxic
    toxic_name: str | None = None  # for remove_toxic
    scope: Scope = "tree"  # kill, terminate, pause, resume: the target's tree or its top
    #: partition_hosts, one_way: the hosts on the other side (default: every other host;
    #: the master's)
    peers: tuple[str, ...] = ()
    probability: float | None = None  # loss: per packet
    rate_kbit: float | None = None  # bandwidth: the token bucket's rate
    delay_ms: float | None = None  # delay: each packet, each way
    output: str | None = None  # disk_full, truncate: "results" or "events"
    keep_bytes: int | None = None  # truncate: the bytes kept...
    keep_fraction: float | None = None  # ...or the share of the file kept
    mid_line: bool = False  # truncate: cut there, not back at the start of that line

    def __post_init__(self) -> None:
        if self.do not in ACTIONS:
            raise ValueError(
                f"unknown fault action {self.do!r} (expected one of {', '.join(ACTIONS)})"
            )
        if self.do == "loss" and self.probability is None:
            raise ValueError("loss needs a probability")
        if self.do == "bandwidth" and self.rate_kbit is None:
            raise ValueError("bandwidth needs rate_kbit")
        if self.do == "delay" and self.delay_ms is None:
            raise ValueError("delay needs delay_ms")
        if self.do == "add_toxic" and self.toxic is None:
            raise ValueError("add_toxic needs a toxic")
        if self.do == "remove_toxic" and not self.toxic_name:
            raise ValueError("remove_toxic needs toxic_name")

    @property
    def expected(self) -> str | None:
        if self.expect is not None:
            return self.expect
        if self.target == "holder" and fault_action(self.do).strikes_holder:
            return "holder"
        return None


@dataclass(slots=True)
class _Tracker:
    """What the injector knows from the logs so far: holders, results, batches."""

    holder: dict[int, str] = field(default_factory=dict)
    leased: dict[int, dict[int, str]] = field(default_factory=dict)  # job -> attempt -> worker
    started: dict[int, dict[int, str]] = field(default_factory=dict)  # job -> attempt -> worker
    completed: set[int] = field(default_factory=set)
    results: int = 0
    closed_batches: set[int] = field(default_factory=set)
    joined: int = 0
    rejected: int = 0

    def event(self, event: dict[str, Any]) -> None:
        """Take in one event of the run, from any log (routed by its ``src``)."""
        src = event.get("src")
        if src == contract.MASTER:
            self.master_event(event)
        elif src not in (contract.HARNESS, contract.RESULTS):
            self.worker_event(event)

    def master_event(self, event: dict[str, Any]) -> None:
        ev, job = event.get("ev"), event.get("job")
        if ev == contract.LEASED and isinstance(job, int):
            self.holder[job] = str(event["worker"])
            attempts = self.leased.setdefault(job, {})
            attempts.setdefault(int(event.get("attempt", 1)), str(event["worker"]))
        elif ev in contract.TERMINAL_EVENTS and isinstance(job, int):
            self.holder.pop(job, None)
            self.completed.add(job)
            self.results += 1
        elif ev in (contract.ATTEMPT_FAILED, contract.REQUEUED) and isinstance(job, int):
            self.holder.pop(job, None)
        elif ev == contract.BATCH_CLOSED:
            self.closed_batches.add(int(event["batch"]))
        elif ev == contract.WORKER_JOINED:
            self.joined += 1
        elif ev == contract.AUTH_REJECTED:
            count = event.get("count", 1)  # a summary line counts several
            self.rejected += count if isinstance(count, int) and count > 0 else 1

    def worker_event(self, event: dict[str, Any]) -> None:
        job = event.get("job")
        if event.get("ev") == contract.STARTED and isinstance(job, int):
            attempts = self.started.setdefault(job, {})
            # A re-run after a crash repeats "started" for one attempt: the first counts.
            attempts.setdefault(int(event.get("attempt", 1)), str(event.get("src")))

    def worker_of(self, trigger: Trigger) -> str | None:
        """The worker a job trigger saw lease or start that job (at that attempt)."""
        job = trigger.job
        if job is None:
            return None
        if trigger.kind == "job_started":
            return _of_attempt(self.started.get(job, {}), trigger.attempt)
        if trigger.kind == "job_leased" and trigger.attempt is not None:
            return _of_attempt(self.leased.get(job, {}), trigger.attempt)
        return self.holder.get(job)

    def fired(self, trigger: Trigger, elapsed_s: float) -> bool:
        kind, value = trigger.kind, trigger.value
        if kind == "after_s":
            return elapsed_s >= value
        if kind == "job_leased":
            return _of_attempt(self.leased.get(int(value), {}), trigger.attempt) is not None
        if kind == "job_started":
            return _of_attempt(self.started.get(int(value), {}), trigger.attempt) is not None
        if kind == "job_completed":
            return int(value) in self.completed
        if kind == "results":
            return self.results >= value
        if kind == "workers_joined":
            return self.joined >= value
        if kind == "auth_rejected":
            return self.rejected >= value
        return int(value) in self.closed_batches  # batch_closed


def _of_attempt(attempts: dict[int, str], attempt: int | None) -> str | None:
    """The worker of ``attempt``, or of the first attempt seen when it is None."""
    if attempt is None:
        return next(iter(attempts.values()), None)
    return attempts.get(attempt)


def tear_last_line(path: Path) -> int:
    """Cut ``path`` in the middle of its last line, as a process killed mid-write leaves
    it; returns how many bytes were cut (0: the file has no line)."""
    data = _read(path)
    body = data[:-1] if data.endswith(b"\n") else data
    if not body:
        return 0
    start = body.rfind(b"\n") + 1  # where the last line begins
    return _cut(path, len(data), start + max(1, (len(body) - start) // 2))


def cut_output(
    path: Path,
    keep_bytes: int | None = None,
    keep_fraction: float | None = None,
    *,
    mid_line: bool = False,
) -> int:
    """Cut ``path`` to ``keep_bytes``, or to ``keep_fraction`` of its size; unless
    ``mid_line``, back to the start of the line that point falls in. Returns how many
    bytes were cut (0: the file was no longer than that)."""
    data = _read(path)
    if keep_bytes is not None:
        keep = min(keep_bytes, len(data))
    else:
        keep = int(len(data) * (keep_fraction if keep_fraction is not None else 1.0))
    if not mid_line:
        keep = data.rfind(b"\n", 0, keep) + 1  # keep whole lines only
    return _cut(path, len(data), keep)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _cut(path: Path, size: int, keep: int) -> int:
    if keep >= size:
        return 0
    os.truncate(path, keep)
    return size - keep


class FaultInjector:
    """Fires a fault plan against a running cluster; call ``step()`` in a loop."""

    def __init__(self, cluster: Cluster, faults: list[Fault], seed: int, log: EventWriter) -> None:
        self.cluster = cluster
        self.faults = faults
        self.pending = list(enumerate(faults))
        self.rng = random.Random(seed)
        self.log = log
        self.tracker = _Tracker()
        # A cursor into the run's events, not the follower's fresh batch: the cluster polls
        # the same follower (waiting for READY, for a worker to join) and those events
        # would otherwise never reach the triggers.
        self._seen = 0
        self.ready_at = time.monotonic()
        # Until released, time triggers wait (they count from a cluster whose workers are
        # all in); event triggers fire whenever their event happens.
        self.time_held = False
        self._resumes: list[tuple[float, int, str, str]] = []  # (when, fault, worker, action)
        # faults whose event came, waiting out their wait_s: (when to act, index, fault)
        self._waiting: list[tuple[float, int, Fault]] = []
        # target -> (index, action) of what paused it, what it stopped, when all had stopped
        self._paused: dict[str, tuple[tuple[int, str], Pause, float]] = {}
        self._cut: dict[str, tuple[int, str]] = {}  # proxy -> (index, action) of what cut it
        # kernel faults standing: (index, action, target as written, its filters and buckets)
        self._kernel: list[tuple[int, str, str, KernelFault]] = []
        # a restarted worker -> (its restart's index, its new pid, when to give up on it)
        self._rejoining: dict[str, tuple[int, int, float]] = {}
        self._sockets: list[socket.socket] = []
        self._wrong_key_workers = 0
        self._holds = cluster.system if isinstance(cluster.system, HoldsFrames) else None
        for fault in faults:
            if fault.when.hold and self._holds is not None:
                self._holds.hold(fault.when.kind, int(fault.when.value), fault.when.attempt)

    @property
    def done(self) -> bool:
        return not self.pending and not self._resumes and not self._waiting

    def step(self) -> None:
        if self.pending:  # once every fault has fired, the logs are the history's to read
            follower = self.cluster.run_events
            follower.poll()
            for event in follower.events[self._seen :]:
                self.tracker.event(event)
            self._seen = len(follower.events)
        now = time.monotonic()
        self._check_rejoined(now)
        for scheduled in list(self._resumes):
            when, index, worker, action = scheduled
            if now >= when:
                self._resumes.remove(scheduled)
                self.log.write(
                    contract.FAULT, fault=index, action=action, target=worker, scheduled=True
                )
                self._undo(worker, action)
        elapsed = -1.0 if self.time_held else now - self.ready_at
        for index, fault in list(self.pending):
            if self.tracker.fired(fault.when, elapsed):
                self.pending.remove((index, fault))
                self._waiting.append((now + fault.when.wait_s, index, fault))
        for waiting in sorted(self._waiting, key=lambda item: (item[0], item[1])):
            when, index, fault = waiting
            if now >= when:
                self._waiting.remove(waiting)
                try:
                    self._fire(index, fault)
                finally:
                    self._let_go(fault.when)

    def release_time(self) -> None:
        """Start the clock of ``after_s`` triggers now."""
        self.time_held = False
        self.ready_at = time.monotonic()

    def _let_go(self, trigger: Trigger) -> None:
        """The fault a held frame waited for has acted: the frame goes on (once every
        fault on that trigger has fired)."""
        if not trigger.hold or self._holds is None:
            return
        unfired = [f for _, f in self.pending] + [f for _, _, f in self._waiting]
        if not any(f.when == trigger for f in unfired):
            self._holds.release(trigger.kind, int(trigger.value), trigger.attempt)

    def close(self) -> None:
        """Resume anything still paused, let every held frame go and close the harness's
        raw sockets."""
        if self._holds is not None:
            for fault in [f for _, f in self.pending] + [f for _, _, f in self._waiting]:
                if fault.when.hold:
                    self._holds.release(fault.when.kind, int(fault.when.value), fault.when.attempt)
        for _, _, worker, action in self._resumes:
            self._undo(worker, action)
        self._resumes.clear()
        for target in list(self._paused):
            self._resume(target, "tree")
        for target in list(self._cut):
            self._heal(target)
        self._heal_hosts("all")
        self._check_rejoined(time.monotonic(), ending=True)
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def _undo(self, worker: str, action: str) -> None:
        """Carry out ``action``, the one that ends a window (the facts table's ``ended_by``)."""
        if fault_action(action).network:
            self._heal(worker)
        elif fault_action(action).kernel:
            self._heal_hosts(worker)
        else:
            self._resume(worker, "tree")

    def _check_rejoined(self, now: float, ending: bool = False) -> None:
        """A restarted worker proves its restart by joining the master again."""
        for name, (index, pid, deadline) in list(self._rejoining.items()):
            if self.cluster.joined(name):
                effect = Effect(True, (pid,))
            elif ending or now > deadline:
                why = "the run ended before" if ending else f"not within {REJOIN_BOUND_S:g} s:"
                effect = Effect(False, (pid,), f"{why} the restarted {name} never joined")
            else:
                continue
            del self._rejoining[name]
            self._effect(index, "restart", name, effect)

    def _heal(self, target: str) -> None:
        """Heal the target's partition, first judging it: no byte may have crossed the cut."""
        proxy = self.cluster.proxies.get(target)
        if proxy is None:
            return
        passed = proxy.heal()
        cut = self._cut.pop(target, None)
        if cut is not None and passed is not None:
            index, action = cut
            why = "" if passed == 0 else f"{passed} byte(s) crossed the cut while it stood"
            effect = Effect(passed == 0, (), why)
            self._effect(index, action, target, effect, passed_bytes=passed)

    # -- actions ------------------------------------------------------------------------------

    def _resolve(self, fault: Fault) -> str | None:
        live = sorted(
            p.name
            for p in self.cluster.workers()
            if p.alive() and not p.name.startswith("intruder")
        )
        if fault.target == "holder":
            return self.tracker.worker_of(fault.when)
        if fault.target == "random":
            return self.rng.choice(live) if live else None
        return fault.target

    def _why_no_target(self, fault: Fault) -> str:
        if fault.target == "holder":
            job, attempt = fault.when.job, fault.when.attempt
            if job is None:
                return "no job to find a holder of"
            return f"nobody held job {job}" + ("" if attempt is None else f" (attempt {attempt})")
        if fault.target == "random":
            return "no live worker"
        return f"no worker named {fault.target}"

    def _fire(self, index: int, fault: Fault) -> None:
        record: dict[str, Any] = {
            "fault": index,
            "action": fault.do,
            "trigger": fault.when.record(),
        }
        if fault.expected is not None:
            record["expect"] = fault.expected
        if fault.do in NETWORK_ACTIONS and fault.target == "all":
            record["target"] = "all"
            self.log.write(contract.FAULT, **record)
            for name in sorted(self.cluster.proxies):
                self._act_on_network(index, fault, name)
            return
        if fault.do in HOST_ACTIONS and fault.target == "all":
            record["target"] = "all"
            self.log.write(contract.FAULT, **record)
            workers = [p.name for p in self.cluster.workers() if not p.name.startswith("intruder")]
            self._act_on_hosts(index, fault, sorted(workers), "all")
            return
        if ACTIONS[fault.do]:
            target = self._resolve(fault)
            if target is None or target not in self.cluster.procs:
                self.log.write(
                    contract.FAULT, target=target, missed=self._why_no_target(fault), **record
                )
                return
            record["target"] = target
            record["target_pid"] = self.cluster.procs[target].pid
            # Record before acting: the history must show the fault before its effects.
            self.log.write(contract.FAULT, **record)
            if fault.do in NETWORK_ACTIONS:
                self._act_on_network(index, fault, target)
            elif fault.do in HOST_ACTIONS:
                self._act_on_hosts(index, fault, [target], target)
            else:
                self._act_on_worker(index, fault, target)
            return
        record["count"] = fault.count
        if fault_action(fault.do).attack == "intruder":
            for _ in range(fault.count):  # one event per intruder, named, for the auth check
                self._wrong_key_workers += 1
                name = f"intruder-{self._wrong_key_workers}"
                self.log.write(contract.FAULT, **{**record, "count": 1, "target": name})
                key = b"" if fault.do == "empty_key_worker" else os.urandom(16).hex().encode()
                self.cluster.add_worker(name, authkey=key, direct=True)
            return
        self.log.write(contract.FAULT, **record)
        lab = self.cluster.lab
        if lab is not None and fault_action(fault.do).attack:
            # On hosts of their own the harness attacks from a host of its own: the sockets
            # opened in there belong to the lab, and reach the master's host address.
            lab.run_in(ATTACKER, lambda: self._act_on_cluster(index, fault))
            return
        self._act_on_cluster(index, fault)

    def _act_on_worker(self, index: int, fault: Fault, target: str) -> None:
        cluster = self.cluster
        facts = fault_action(fault.do)
        scope: Scope = fault.scope if facts.scoped else "main" if facts.reach == "main" else "tree"
        if facts.ends == "abrupt" or facts.reach == "children":  # a SIGKILL, by its reach
            if facts.reach != "children":
                struck = signal_tree(cluster.procs[target].pid, signal.SIGKILL, scope)
                self._effect(index, fault.do, target, verify_gone(struck), scope=scope)
            elif not cluster.kill_processes(target, children_only=True):
                self.log.write(
                    contract.FAULT,
                    fault=index,
                    action=fault.do,
                    target=target,
                    missed="no process under the target",
                )
        elif fault.do == "terminate":
            signal_tree(cluster.procs[target].pid, signal.SIGTERM, scope)
        elif facts.suspends:  # pause (the table's word: it stops the target until its end)
            if target in self._paused:  # paused already: resume that pause's processes first
                self._resume(target, scope)
            pause = pause_tree(cluster.procs[target].pid, scope)
            self._paused[target] = ((index, fault.do), pause, self.log.now())
            if fault.duration_s is not None:
                self._resumes.append(
                    (time.monotonic() + fault.duration_s, index, target, facts.ended_by)
                )
        elif fault.do in _WINDOW_ENDINGS:  # resume
            self._resume(target, scope)
        elif fault.do == "restart" and cluster.procs[target].role != WORKER:
            started = cluster.restart_role(target)  # back once the system says it is ready
            self._effect(index, fault.do, target, Effect(True, (started.pid,)))
        elif fault.do == "restart":
            started = cluster.restart_worker(target)
            self._rejoining[target] = (index, started.pid, time.monotonic() + REJOIN_BOUND_S)

    def _resume(self, target: str, scope: Scope) -> None:
        """SIGCONT the target, first judging its pause (if one stopped it): the tree must
        have stayed stopped and made no progress."""
        paused = self._paused.pop(target, None)
        if paused is None:
            signal_tree(self.cluster.procs[target].pid, signal.SIGCONT, scope)
            return
        (index, action), pause, stopped_t = paused
        # Judged and recorded before the SIGCONT: the history's window ends with this event.
        record = {"stopped_t": round(stopped_t, 6), "scope": pause.scope}
        self._effect(index, action, target, pause.verify(), **record)
        pause.resume()

    def _effect(
        self, index: int, action: str, target: str, effect: Effect, **fields: object
    ) -> None:
        record = {**effect.record(), **fields}
        self.log.write(contract.FAULT_EFFECT, fault=index, action=action, target=target, **record)

    def _act_on_network(self, index: int, fault: Fault, target: str) -> None:
        facts = fault_action(fault.do)
        proxy = self.cluster.proxies.get(target)
        if proxy is None:
            self.log.write(
                contract.FAULT, fault=index, action=fault.do, target=target, missed="no proxy"
            )
            return
        if fault.do == "add_toxic":
            assert fault.toxic is not None
            if fault.toxic.name not in {toxic.name for toxic in proxy.toxics}:
                proxy.add_toxic(fault.toxic)
        elif fault.do == "remove_toxic":
            assert fault.toxic_name is not None
            if fault.toxic_name in {toxic.name for toxic in proxy.toxics}:
                proxy.remove_toxic(fault.toxic_name)
        elif facts.suspends:  # partition
            proxy.partition()
            self._cut.setdefault(target, (index, fault.do))
            if fault.duration_s is not None:
                self._resumes.append(
                    (time.monotonic() + fault.duration_s, index, target, facts.ended_by)
                )
        elif fault.do in _WINDOW_ENDINGS:  # heal
            self._heal(target)

    def _served_from(self) -> list[str]:
        """The host the workers connect to (the master's; an engine's broker; a BaseManager
        app's server): a one-way cut's other side unless the fault names its peers."""
        lab, address = self.cluster.lab, self.cluster.address
        if lab is not None and address is not None:
            ip = address.rsplit(":", 1)[0]
            found = [name for name, host in lab.hosts.items() if host.address == ip]
            if found:
                return found[:1]
        return [MASTER]

    def _act_on_hosts(self, index: int, fault: Fault, hosts: list[str], target: str) -> None:
        """A kernel fault on the hosts of ``hosts`` (``target`` as the history names it)."""
        lab = self.cluster.lab
        if fault.do == "heal_hosts":
            self._heal_hosts(target)
            return
        if fault.do == "reject" and lab is not None:
            reset = lab.reject(hosts)
            why = "" if reset else "the target's host had no TCP connection to reset"
            self._effect(index, fault.do, target, Effect(reset > 0, (), why), reset=reset)
            return
        if lab is None or not hosts:
            why = "the run has no hosts of their own" if lab is None else "no live worker"
            self.log.write(contract.FAULT, fault=index, action=fault.do, target=target, missed=why)
            return
        try:
            if fault.do == "isolate":
                standing = lab.isolate(hosts)
            elif fault.do == "partition_hosts":
                others = [name for name in lab.hosts if name not in hosts]
                standing = lab.partition(hosts, list(fault.peers) or others, fault.do)
            elif fault.do == "one_way":
                standing = lab.one_way(hosts, list(fault.peers) or self._served_from(), fault.do)
            elif fault.do == "loss":
                assert fault.probability is not None
                standing = lab.loss(hosts, fault.probability, fault.do)
            elif fault.do == "delay":
                assert fault.delay_ms is not None
                standing = lab.delay(hosts, fault.delay_ms, fault.do)
            else:
                assert fault.rate_kbit is not None
                standing = lab.bandwidth(hosts, fault.rate_kbit, fault.do)
        except (OSError, LabError) as exc:
            why = f"the kernel refused it: {exc}"
            self.log.write(contract.FAULT, fault=index, action=fault.do, target=target, missed=why)
            return
        self._kernel.append((index, fault.do, target, standing))
        ended_by = fault_action(fault.do).ended_by
        if fault.duration_s is not None:
            self._resumes.append((time.monotonic() + fault.duration_s, index, target, ended_by))

    def _heal_hosts(self, target: str) -> None:
        """End the kernel faults aimed at ``target`` (``all``: every one), each judged by
        the kernel's counters: it must have dropped or held back packets while it stood."""
        lab = self.cluster.lab
        for entry in list(self._kernel):
            index, action, aimed, standing = entry
            if lab is None or (target != "all" and aimed != target):
                continue
            self._kernel.remove(entry)
            evidence = lab.heal(standing)
            took = evidence.dropped > 0 or evidence.held_back > 0
            why = "" if took else "the kernel dropped and held back no packet while it stood"
            self._effect(index, action, aimed, Effect(took, (), why), **evidence.record())

    def _cut_output(self, index: int, fault: Fault) -> None:
        """tear_results, tear_events, truncate: SIGKILL the master, cut one of its outputs
        while it is down, start it again."""
        facts = fault_action(fault.do)
        path = self.cluster.output_path(fault.output or facts.tears)
        cut: list[int] = []
        down: list[float] = []  # when the old master was gone: a new incarnation from there

        def while_down() -> None:
            down.append(self.log.now())
            if facts.tears:
                cut.append(tear_last_line(path))
            else:
                keep = (fault.keep_bytes, fault.keep_fraction)
                cut.append(cut_output(path, *keep, mid_line=fault.mid_line))
            self.cluster.output_cut(path)

        started = self.cluster.restart_master(while_down)
        if facts.tears:
            why, field = f"{path.name} had no line to tear", "torn_bytes"
        else:
            why, field = f"{path.name} was no longer than the part kept", "cut_bytes"
        took = bool(cut and cut[0])
        effect = Effect(took, (started.pid,), "" if took else why)
        self._effect(
            index, fault.do, MASTER, effect, **{field: cut[0] if cut else 0}, down_t=down[0]
        )

    def _fill(self, index: int, fault: Fault) -> None:
        """disk_full: fill the filesystem of the master's output, wait for the master to
        stop on its own, note what it had written and what it printed, free the room and
        start it again with the workers that left with it."""
        cluster = self.cluster
        assert fault.output is not None and cluster.master is not None
        disk = cluster.disks.get(fault.output)
        if disk is None:
            why = f"the {fault.output} output is not on a filesystem of the run's own"
            self.log.write(contract.FAULT, fault=index, action=fault.do, missed=why)
            return
        master = cluster.master
        said_from = master.log_path.stat().st_size if master.log_path.exists() else 0
        taken = disk.fill()
        free = disk.free_bytes()
        try:
            code: int | None = master.popen.wait(timeout=FULL_STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            code = None
        stopped_t = self.log.now()
        written = _job_ids(_read(cluster.results_path).splitlines(keepends=True))
        with open(master.log_path, "rb") as said:
            said.seek(said_from)
            printed = _job_ids(said.read().splitlines())
        disk.free()
        record = {
            "output": fault.output,
            "taken_bytes": taken,
            "free_bytes": free,
            "exit_code": code,
            "stopped_t": round(stopped_t, 6),
            "written": sorted(set(written)),
            "printed": printed,
        }
        if code is None:
            why = f"the master did not stop within {FULL_STOP_BOUND_S:g} s of its disk filling"
            self._effect(index, fault.do, MASTER, Effect(False, (master.pid,), why), **record)
            return
        if code == cluster.system.exit_codes.ok:
            why = f"nothing was refused: the master finished its work (exit {code}) first"
            self._effect(index, fault.do, MASTER, Effect(False, (master.pid,), why), **record)
            return
        # The workers a stopping master told to leave are on their way out: wait for them
        # (bounded), so that none is still exiting when the new master needs it.
        deadline = time.monotonic() + WORKERS_LEAVE_BOUND_S
        while any(w.alive() for w in cluster.workers()) and time.monotonic() < deadline:
            time.sleep(0.02)
        left = [worker.name for worker in cluster.workers() if not worker.alive()]
        started = cluster.start_master()
        for name in left:
            cluster.restart_worker(name)
        self._effect(
            index,
            fault.do,
            MASTER,
            Effect(True, (started.pid,)),
            **record,
            restarted=left,
            down_t=round(stopped_t, 6),
        )

    def _act_on_cluster(self, index: int, fault: Fault) -> None:
        cluster = self.cluster
        assert cluster.address is not None
        if fault.do == "add_worker":
            for _ in range(fault.count):
                cluster.add_worker()
        elif fault.do == "disk_full":
            self._fill(index, fault)
        elif fault_action(fault.do).tears or fault.do == "truncate":
            self._cut_output(index, fault)
        elif fault.do == "restart_master":
            down = []
            # back once the system says it is ready; ``down_t``: when the old one was gone
            # (the history's master incarnations start there)
            started = cluster.restart_master(lambda: down.append(self.log.now()))
            self._effect(index, fault.do, MASTER, Effect(True, (started.pid,)), down_t=down[0])
        elif fault.do == "kill_master":
            assert cluster.master is not None
            struck = signal_tree(cluster.master.pid, signal.SIGKILL, "tree")
            cluster.master.popen.wait()
            self._effect(index, fault.do, MASTER, verify_gone(struck))
        elif fault.do == "idle_sockets":
            address = parse_address(cluster.address)
            for number in range(fault.count):
                with suppress(OSError):
                    self._sockets.append(
                        socket.create_connection(
                            address, timeout=5, source_address=attack_source(address, number)
                        )
                    )
        elif fault.do == "garbage":
            address = parse_address(cluster.address)
            for number in range(fault.count):
                with (
                    suppress(OSError),
                    socket.create_connection(
                        address, timeout=5, source_address=attack_source(address, number)
                    ) as sock,
                ):
                    sock.sendall(self.rng.randbytes(self.rng.randint(1, 512)))
        elif fault.do == "bad_handshakes":
            # Its own randomness: the plan's seeded choices stay the same whatever it draws.
            cluster.system.attack_handshake(cluster.address, fault.count, random.Random())


#: How long a master whose output is full has to stop on its own (a loaded machine is slow).
FULL_STOP_BOUND_S = 30.0
#: How long the workers a master stopped by a full disk told to leave have to exit.
WORKERS_LEAVE_BOUND_S = 10.0


def _job_ids(lines: list[bytes]) -> list[int]:
    """The ``job`` of each line that is a JSON object naming one (a result line)."""
    ids = []
    for line in lines:
        event = contract.parse_line(line)
        if event is not None and isinstance(event.get("job"), int):
            ids.append(int(event["job"]))
    return ids


def run_until(
    injector: FaultInjector,
    finished: Callable[[], bool],
    bound_s: float,
    poll_s: float = 0.01,
) -> bool:
    """Step the injector until ``finished()`` or the bound; True when finished in time."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        injector.step()
        if finished():
            injector.step()
            return True
        time.sleep(poll_s)
    return False
