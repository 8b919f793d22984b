"""The history contract: the event-log format every system under test writes, and its vocabulary.

A log is JSON lines, one event per line: ``t`` (seconds since the run's shared epoch, read
from ``EPOCH_ENV``), ``src`` (``master``, ``worker-2``, ``harness``...), ``ev`` and the ids
that apply. Standard library only: task code running inside another system may import it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ACTIONS",
    "ENGINE_EVENTS",
    "EPOCH_ENV",
    "EVENTS_ENV",
    "EVENTS_GLOB",
    "FAULT_ACTIONS",
    "HARNESS",
    "HARNESS_EVENTS",
    "HOST_ACTIONS",
    "ID_FIELDS",
    "KILLS",
    "LOST_CAUSES",
    "MASTER",
    "MASTER_ACTIONS",
    "MASTER_RESTARTS",
    "NETWORK_ACTIONS",
    "OBSERVER_EVENTS",
    "PROCESS_DEATHS",
    "PROCESS_ENV",
    "PRODUCER_EVENTS",
    "RESERVED_FIELDS",
    "RESULTS",
    "SUSPENDS",
    "SYSTEM_EVENTS",
    "TERMINAL_EVENTS",
    "TORN_MARK",
    "TRIGGERS",
    "WINDOW_ENDS",
    "ActionName",
    "CorruptLog",
    "EventWriter",
    "FaultAction",
    "actions_where",
    "events_name",
    "fault_action",
    "master_saw_join",
    "parse_line",
    "read_log",
    "run_epoch",
]

#: Every process of a run reads its time origin (a ``time.monotonic()`` reading, which is
#: system-wide on Linux) from this variable, so the logs of several processes merge into one
#: order. The name predates the seam; distq reads the same variable.
EPOCH_ENV = "DISTQ_T0"

#: Every process the harness spawns finds its name (its ``src``) and the path of its event
#: log in these, so code running inside it (an engine's task module) can write events.
PROCESS_ENV = "HARNESS_PROCESS"
EVENTS_ENV = "HARNESS_EVENTS"

#: The fields of every event, and the ids an event carries when they apply.
RESERVED_FIELDS = ("t", "src", "ev")
ID_FIELDS = ("job", "attempt", "lease", "worker", "batch")

#: ``src`` values with a meaning. ``master`` is the authoritative record of the queue's
#: state, whoever writes it: the system's master itself, a wire relay watching it, or the
#: producer of an engine. Any other ``src`` is a worker (named as the harness named it).
MASTER = "master"
HARNESS = "harness"
RESULTS = "results"  # lines of a results output the harness loads after the run

#: Each process writes ``<name>.events.jsonl`` in the run directory; the history is them all.
EVENTS_GLOB = "*.events.jsonl"

# -- the events a system (or its observer) writes ------------------------------------------
MASTER_READY = "master_ready"  # address=HOST:PORT, pid, lease_timeout_s?, heartbeat_interval_s?
SUBMISSIONS_CLOSED = "submissions_closed"
MASTER_STOPPED = "master_stopped"
JOB_SUBMITTED = "job_submitted"  # job, task, args, batch?, time_limit_s?
BATCH_OPENED = "batch_opened"  # batch
BATCH_CLOSED = "batch_closed"  # batch
LEASED = "leased"  # job, attempt, lease, worker
STARTED = "started"  # (from a worker) job, attempt
COMPLETED = "completed"  # (from a worker) job, attempt, ok, value
RESULT_ACCEPTED = "result_accepted"  # job, attempt, worker, ok, value
DUPLICATE_DROPPED = "duplicate_dropped"
ATTEMPT_FAILED = "attempt_failed"  # job, attempt: a counted attempt ended without a result
STALE_FAILURE = "stale_failure"
UNEXPECTED_REPORT = "unexpected_report"
LEASE_EXPIRED = "lease_expired"  # job, worker
REQUEUED = "requeued"
DEAD = "dead"  # job: attempts exhausted, its one terminal error
CONNECTED = "connected"
WORKER_JOINED = "worker_joined"  # worker
WORKER_REJOINED = "worker_rejoined"  # worker, handed_back: jobs returned, no attempt counted
RECONNECTED = "reconnected"
WORKER_LEFT = "worker_left"  # worker, handed_back: jobs returned, no attempt counted
WORKER_LOST = "worker_lost"  # worker, jobs: the leases that went back; counted?
WORKER_EXIT = "worker_exit"  # (from a worker) code
RUNNER_KILLED = "runner_killed"  # (from a worker) job, attempt, time_limit_s? (the limit enforced)
AUTH_REJECTED = "auth_rejected"  # peer, kind; count: a summary line for that many
HANDSHAKE_TIMEOUT = "handshake_timeout"  # peer; count: a summary line for that many
ACCEPT_FAILED = "accept_failed"  # reason: the master could not accept (out of descriptors)

SYSTEM_EVENTS = frozenset(
    {
        MASTER_READY,
        SUBMISSIONS_CLOSED,
        MASTER_STOPPED,
        JOB_SUBMITTED,
        BATCH_OPENED,
        BATCH_CLOSED,
        LEASED,
        STARTED,
        COMPLETED,
        RESULT_ACCEPTED,
        DUPLICATE_DROPPED,
        ATTEMPT_FAILED,
        STALE_FAILURE,
        UNEXPECTED_REPORT,
        LEASE_EXPIRED,
        REQUEUED,
        DEAD,
        CONNECTED,
        WORKER_JOINED,
        WORKER_REJOINED,
        RECONNECTED,
        WORKER_LEFT,
        WORKER_LOST,
        WORKER_EXIT,
        RUNNER_KILLED,
        AUTH_REJECTED,
        HANDSHAKE_TIMEOUT,
        ACCEPT_FAILED,
    }
)
#: Events only an observer of a system writes (a wire relay in front of a BaseManager app).
UNKEYED_ITEM = "unkeyed_item"  # item, route, key: a task item the scenario's job key misses
UNMATCHED_RESULT = "unmatched_result"  # value, how: a result that answers no job seen
#: role (tasks/results), typeid, created: a typeid the scenario names that the app never
#: created on the wire. The run cannot be judged: every verdict would rest on a misreading.
TYPEID_UNSEEN = "typeid_unseen"
#: route, bound_s: a frame held for a fault went on without it (the fault never acted).
HOLD_EXPIRED = "hold_expired"
OBSERVER_EVENTS = frozenset({UNKEYED_ITEM, UNMATCHED_RESULT, TYPEID_UNSEEN, HOLD_EXPIRED})
#: What an engine's producer writes besides the above (harness.systems.engine).
BROKER_ERROR = "broker_error"  # during, error: the broker did not answer; it tries again
#: What an engine's own hooks report of a user's app (harness.systems.engines.hooks).
RETRY = "retry"  # job, attempt, error: the engine will run the job again
CHILD_LOST = "child_lost"  # job, attempt, error: the engine saw the process running it die
ENGINE_EVENTS = frozenset({BROKER_ERROR, RETRY, CHILD_LOST})
#: What a producer writes (a process whose submissions are jobs, ``[system] producer``),
#: with its own name as ``src``: the master's record stays the authoritative one.
FLUSHED = "flushed"  # jobs, count: the master acknowledged these submissions (a flush returned)
PRODUCER_DONE = "producer_done"  # submitted, results, duplicates, refused, missing: its tally
PRODUCER_EVENTS = frozenset({FLUSHED, PRODUCER_DONE})

#: The master's events that end a job; exactly one per job is the contract.
TERMINAL_EVENTS = frozenset({RESULT_ACCEPTED, DEAD})

# -- the events the harness writes (src ``harness``, or ``results``) -----------------------
FAULT = "fault"  # fault, action, trigger, target?, expect?, missed?, count?, scheduled?
HANG = "hang"
RUN_FINISHED = "run_finished"  # elapsed_s, bound_s, timed_out, exit_codes
RESULT_OUTPUT = "result_output"  # a line of the results output (src ``results``)
PROXY_LISTENING = "proxy_listening"
PROXY_CLOSED = "proxy_closed"
PROXY_CONNECTION = "proxy_connection"
PROXY_UPSTREAM = "proxy_upstream"
TOXIC_ADDED = "toxic_added"
TOXIC_REMOVED = "toxic_removed"
TOXIC = "toxic"  # a toxic met a connection: decision applied | skipped
TOXIC_TRIGGERED = "toxic_triggered"
TOXIC_FIRED = "toxic_fired"
#: toxic, kind, connection, bytes, delayed_ms, closes: what a toxic did to one connection,
#: written when the toxic leaves it (removed, or the connection closed)
TOXIC_EFFECT = "toxic_effect"
#: fault, action, target, verified, pids, why?, stopped_t?, down_t? (a restarted master:
#: when the old one was gone): what a fault measurably did
FAULT_EFFECT = "fault_effect"
PARTITION = "partition"
HEAL = "heal"

HARNESS_EVENTS = frozenset(
    {
        FAULT,
        HANG,
        RUN_FINISHED,
        RESULT_OUTPUT,
        PROXY_LISTENING,
        PROXY_CLOSED,
        PROXY_CONNECTION,
        PROXY_UPSTREAM,
        TOXIC_ADDED,
        TOXIC_REMOVED,
        TOXIC,
        TOXIC_TRIGGERED,
        TOXIC_FIRED,
        TOXIC_EFFECT,
        FAULT_EFFECT,
        PARTITION,
        HEAL,
    }
)

# -- the fault vocabulary, as the history records it (``fault`` events) --------------------

#: Trigger kinds and what their value means.
TRIGGERS: dict[str, str] = {
    "after_s": "seconds since the master was ready",
    "job_leased": "job id: when the master leases it (first time, or `attempt`)",
    "job_started": "job id: when a worker starts running it (first time, or `attempt`)",
    "job_completed": "job id: when the master accepts its result",
    "results": "count: when this many results have been accepted",
    "batch_closed": "batch index: when every job of the batch is terminal",
    "workers_joined": "count: when this many workers have joined the master",
    "auth_rejected": "count: when the master has turned this many connections away",
}

# -- the fault actions: one row of facts each ---------------------------------------------
#
# Everything the harness knows about a fault action is in its row: faults (what to
# signal), checks and causes (is it a death, what ends its window), the report (how it is
# drawn), scenario validation and the generators. No other module lists actions in a set.

#: What ``target`` names: a process of the cluster (a worker, or the master or a broker by
#: name), the master itself, the cluster as a whole (new processes, raw connections), the
#: network link of a worker (its fault proxy; ``all`` is every link), or the host a process
#: runs on (``[network] hosts = true``: its namespace, faulted in the kernel; ``all`` is
#: every worker's host).
Aim = Literal["process", "master", "cluster", "link", "host"]
#: How the target's process ends: not at all, by SIGTERM (it may hand its work back), or
#: by SIGKILL.
Ending = Literal["", "graceful", "abrupt"]
#: Which of the target's processes the action signals: the top process, its whole tree,
#: only the processes under it, or none (not a signal).
Reach = Literal["main", "tree", "children", ""]
#: What the action does to the handshake: starts a worker with a bad key, opens connections
#: that fail it (each must be rejected), or connections that never answer.
Attack = Literal["", "intruder", "handshake", "idle"]
#: What proves it took effect (a ``fault_effect`` event, judged by fault_coverage): its
#: processes stopped and made no progress until resumed, they are gone, no byte crossed
#: the cut until it healed, it came back ready (a worker: joined again), the kernel dropped
#: or held back packets while it stood (its filters' counters), the kernel reset the
#: target's connections, a write was refused (the disk was full and the target stopped on
#: its own), or "" (proved by other checks: a rejection, a proxy's events).
Effect = Literal["", "stopped", "gone", "cut", "ready", "dropped", "reset", "refused"]
#: How the report draws it: a kill mark, a band until its end, a plain mark, or not at all
#: (network faults are drawn from the proxy's own events).
Drawn = Literal["kill", "band", "mark", "network"]
#: Which output of the master the action tears while the master is down: the results file
#: or the master's event log (a crash mid-write leaves its last line torn), or "" (none).
Tears = Literal["", "results", "events"]
#: What a generated plan may use it as: a permanent death, a fault the run survives, the
#: same with proxies, or with a journal; "" is never generated.
Generated = Literal["", "death", "survivable", "network", "journal", "hosts"]


@dataclass(frozen=True, slots=True)
class FaultAction:
    """The facts of one fault action."""

    name: str
    does: str
    aims: Aim
    #: Whether ``target`` must name a process or link (else the action needs none).
    takes_target: bool
    ends: Ending = ""
    reach: Reach = ""
    #: The target is started again afterwards (a restart).
    comes_back: bool = False
    #: The action that ends this one's window (``pause`` -> ``resume``), or "".
    ended_by: str = ""
    #: During its window the target makes no progress (stopped, or cut off).
    suspends: bool = False
    #: It starts ``count`` worker processes.
    starts_workers: bool = False
    attack: Attack = ""
    #: With ``target = "holder"``, the struck worker is expected to hold the job.
    strikes_holder: bool = False
    #: It takes ``scope = "tree" | "main"``: the target's whole process tree (the default,
    #: ``reach``) or its top process only.
    scoped: bool = False
    effect: Effect = ""
    drawn: Drawn = "mark"
    generated: Generated = ""
    tears: Tears = ""
    #: It takes ``output = "results" | "events"``: the master's output it acts on.
    names_output: bool = False

    @property
    def ends_target(self) -> bool:
        """The target's process is gone afterwards (a death, unless it comes back)."""
        return self.ends != ""

    @property
    def network(self) -> bool:
        return self.aims == "link"

    @property
    def kernel(self) -> bool:
        """A packet fault of the kernel, on the target's host."""
        return self.aims == "host"


def _row(name: str, does: str, aims: Aim, takes_target: bool, **facts: Any) -> FaultAction:
    return FaultAction(name, does, aims, takes_target, **facts)


#: The name of every fault action, for a type checker (the same as ``FAULT_ACTIONS``'s keys,
#: which a test holds it to): code that dispatches on an action's name is checked against it.
ActionName = Literal[
    "kill",
    "kill_tree",
    "kill_child",
    "terminate",
    "pause",
    "resume",
    "restart",
    "add_worker",
    "kill_master",
    "restart_master",
    "tear_results",
    "tear_events",
    "disk_full",
    "truncate",
    "wrong_key_worker",
    "empty_key_worker",
    "idle_sockets",
    "garbage",
    "bad_handshakes",
    "add_toxic",
    "remove_toxic",
    "partition",
    "heal",
    "isolate",
    "partition_hosts",
    "one_way",
    "loss",
    "bandwidth",
    "delay",
    "heal_hosts",
    "reject",
]

FAULT_ACTIONS: Mapping[str, FaultAction] = {
    row.name: row
    for row in (
        _row("kill", "SIGKILL the target (its whole tree; scope = \"main\": its top process)",
             "process", True, ends="abrupt", reach="tree", scoped=True, effect="gone",
             strikes_holder=True, drawn="kill", generated="death"),
        _row("kill_tree", "SIGKILL the target and every process under it (its machine dies)",
             "process", True, ends="abrupt", reach="tree", effect="gone", strikes_holder=True,
             drawn="kill"),
        _row("kill_child", "SIGKILL the processes under the target (the one running the job); "
             "the target lives on", "process", True, reach="children", strikes_holder=True,
             drawn="kill"),
        _row("terminate", "SIGTERM the target (its whole tree at once; scope = \"main\": its "
             "top process)", "process", True, ends="graceful", reach="tree", scoped=True,
             strikes_holder=True, generated="death"),
        _row("pause", "SIGSTOP the target's tree (scope = \"main\": its top process); "
             "SIGCONT after duration_s (if given)", "process", True, reach="tree", scoped=True,
             ended_by="resume", suspends=True, effect="stopped", strikes_holder=True,
             drawn="band", generated="survivable"),
        _row("resume", "SIGCONT what the pause stopped, and the target's tree", "process", True,
             reach="tree", scoped=True),
        _row("restart", "stop the target's tree, start a worker of the same name; a broker: "
             "SIGKILL, start again", "process", True, ends="graceful", reach="tree",
             comes_back=True, effect="ready", strikes_holder=True, generated="survivable"),
        _row("add_worker", "start `count` more workers", "cluster", False, starts_workers=True,
             generated="survivable"),
        _row("kill_master", "SIGKILL the master", "master", False, ends="abrupt", reach="tree",
             effect="gone", drawn="kill"),
        _row("restart_master", "SIGKILL the master and start it again (it resumes if it "
             "journals)", "master", False, ends="abrupt", reach="main", comes_back=True,
             effect="ready", generated="journal"),
        _row("tear_results", "SIGKILL the master, cut the results file in the middle of its "
             "last line (as a crash mid-write leaves it), start the master again (it resumes "
             "if it journals)", "master", False, ends="abrupt", reach="main", comes_back=True,
             effect="ready", drawn="kill", tears="results"),
        _row("tear_events", "SIGKILL the master, cut its event log in the middle of its last "
             "line, start the master again (it resumes if it journals)", "master", False,
             ends="abrupt", reach="main", comes_back=True, effect="ready", drawn="kill",
             tears="events"),
        _row("disk_full", "fill the small filesystem that holds the master's `output` (the "
             "run puts it on a tmpfs of its own): its next write that needs room fails with "
             "ENOSPC; once the master has stopped on its own, free the room and start it "
             "again (it resumes if it journals), and the workers that left with it",
             "master", False, ends="graceful", comes_back=True, effect="refused",
             names_output=True),
        _row("truncate", "SIGKILL the master, cut its `output` to `keep_bytes` or "
             "`keep_fraction` of its size (at a line boundary, or `mid_line`), start the "
             "master again (it resumes if it journals)", "master", False, ends="abrupt",
             reach="main", comes_back=True, effect="ready", drawn="kill", names_output=True),
        _row("wrong_key_worker", "start `count` workers whose authkey is wrong", "cluster", False,
             starts_workers=True, attack="intruder", generated="survivable"),
        _row("empty_key_worker", "start `count` workers whose authkey is empty (each must "
             "refuse it)", "cluster", False, starts_workers=True, attack="intruder"),
        _row("idle_sockets", "open `count` connections that never answer the handshake",
             "cluster", False, attack="idle"),
        _row("garbage", "open `count` connections that send random bytes", "cluster", False,
             attack="handshake"),
        _row("bad_handshakes", "`count` handshakes with a wrong key, from the harness",
             "cluster", False, attack="handshake", generated="survivable"),
        _row("add_toxic", "add `toxic` to the target's proxy", "link", True,
             ended_by="remove_toxic", drawn="network", generated="network"),
        _row("remove_toxic", "remove the toxic named `toxic_name`", "link", True,
             drawn="network"),
        _row("partition", "cut the target off the master; heal after duration_s (if given)",
             "link", True, ended_by="heal", suspends=True, effect="cut", strikes_holder=True,
             drawn="network",
             generated="network"),
        _row("heal", "end the target's partition", "link", True, drawn="network"),
        _row("isolate", "cut the target's host off every other host, both ways, silently (no "
             "FIN, no RST: a dead host); heal_hosts after duration_s (if given)", "host", True,
             ended_by="heal_hosts", suspends=True, effect="dropped", strikes_holder=True,
             drawn="band", generated="hosts"),
        _row("partition_hosts", "drop every packet between the target's host and the hosts "
             "`peers` names (default: every other host); heal_hosts after duration_s (if "
             "given)", "host", True, ended_by="heal_hosts", suspends=True, effect="dropped",
             strikes_holder=True, drawn="band"),
        _row("one_way", "drop the packets the target's host sends to the hosts `peers` names "
             "(default: the host the workers reach: the master's, an engine's broker's, a "
             "BaseManager server's); the other way still works", "host", True,
             ended_by="heal_hosts", suspends=True, effect="dropped", strikes_holder=True,
             drawn="band"),
        _row("loss", "drop each packet to or from the target's host with `probability` (the "
             "kernel draws, per packet)", "host", True, ended_by="heal_hosts",
             effect="dropped", drawn="band", generated="hosts"),
        _row("bandwidth", "a token bucket of `rate_kbit` on the target's link, both ways",
             "host", True, ended_by="heal_hosts", effect="dropped", drawn="band",
             generated="hosts"),
        _row("delay", "hold each packet to and from the target's host `delay_ms` (the "
             "kernel's netem qdisc, on both ends of its link; refused where the kernel has "
             "none)", "host", True, ended_by="heal_hosts", effect="dropped", drawn="band"),
        _row("heal_hosts", "end every kernel fault on the target's host (`all`: on every host)",
             "host", True),
        _row("reject", "reset every TCP connection of the target's host at once: an RST to "
             "each peer, as a firewall that rejects; its listening sockets stay", "host", True,
             effect="reset", strikes_holder=True),
    )
}  # fmt: skip


def actions_where(test: Callable[[FaultAction], bool]) -> frozenset[str]:
    """The names of the actions whose facts pass ``test``."""
    return frozenset(name for name, row in FAULT_ACTIONS.items() if test(row))


def fault_action(name: object) -> FaultAction:
    """The facts of the action called ``name`` (a history's ``action`` field); a name the
    table lacks gets a row that claims nothing (no death, no window, drawn as a mark)."""
    row = FAULT_ACTIONS.get(name) if isinstance(name, str) else None
    return row or FaultAction(str(name), "an action the harness does not know", "cluster", False)


#: Actions and whether they take a target (the scenario format's ``do``), in table order.
ACTIONS: Mapping[str, bool] = {name: row.takes_target for name, row in FAULT_ACTIONS.items()}
#: Network faults, on the worker's fault proxy (the cluster must have proxies).
NETWORK_ACTIONS = actions_where(lambda row: row.network)
#: Kernel faults, on the target's host (the run must have hosts of their own).
HOST_ACTIONS = actions_where(lambda row: row.kernel)
#: Actions aimed at the master: they prove something only while it still has work.
MASTER_ACTIONS = actions_where(lambda row: row.aims == "master")
#: Actions whose window another action ends, and that one: pause -> resume, ...
WINDOW_ENDS: Mapping[str, str] = {
    name: row.ended_by for name, row in FAULT_ACTIONS.items() if row.ended_by
}
#: Actions whose window stops the target's progress, and the action that ends it.
SUSPENDS: Mapping[str, str] = {
    name: row.ended_by for name, row in FAULT_ACTIONS.items() if row.suspends
}
#: Actions that leave a process of the cluster gone (a death, unless it comes back).
PROCESS_DEATHS = actions_where(lambda row: row.aims == "process" and row.ends_target)
#: Actions that SIGKILL their target for good (a worker by name, or the master).
KILLS = actions_where(lambda row: row.ends == "abrupt" and not row.comes_back)
#: Actions that start the master again: each begins a new master incarnation.
MASTER_RESTARTS = actions_where(lambda row: row.aims == "master" and row.comes_back)


# -- why a job was lost: the causes a lost-job violation may name -----------------------

#: Each cause a check may give for a job with no terminal result, and what it means. A
#: known-bug scenario pins a loss to one of them (``expect_violation``'s ``cause``).
LOST_CAUSES: Mapping[str, str] = {
    "never_handed_out": "no worker ever took it",
    "handed_to_dead_get": "a server thread left blocked in a dead worker's get took it and "
    "wrote it to a closed connection",
    "result_after_shutdown": "its result was put after the master shut down",
    "result_unanswered": "its result was put but never reached the app",
    "result_not_taken": "its result was put but the master never took it",
    "no_result": "it was held and no result came, its holder alive",
    "holder_killed": "a fault ended its holder while it held the job",
    "holder_exited": "its holder exited by itself while it held the job",
    "holder_lost": "its holder's connection closed while it held the job, with no fault "
    "or exit of its own to explain it",
    "connection_cut": "its holder's connection was cut by the app",
    "master_shut_down": "the master shut down while it was held",
}


class CorruptLog(ValueError):
    """A line in the middle of an event log that is not a JSON object: the log is damaged."""


def master_saw_join(worker: str, events: Iterable[dict[str, Any]]) -> bool:
    """Whether the master's record says ``worker`` joined (a master that writes the contract)."""
    return any(
        event.get("ev") == WORKER_JOINED
        and event.get("src") == MASTER
        and event.get("worker") == worker
        for event in events
    )


def events_name(process: str) -> str:
    """The file name of a process's event log in the run directory."""
    return f"{process}.events.jsonl"


def run_epoch() -> float:
    """The run's time origin: ``EPOCH_ENV`` if the spawner set it, else now."""
    raw = os.environ.get(EPOCH_ENV)
    if raw:
        try:
            return float(raw)
        except ValueError:
            pass
    return time.monotonic()


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """One event from one complete line; None for a blank line or anything not an object."""
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


#: A writer that resumes a log whose last line a killed predecessor tore (a master
#: restarted on its journal) ends that line with this mark: readers skip it.
TORN_MARK = "#torn"


def read_log(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the events of one log, in file order.

    A torn last line (a process killed mid-write: no newline at the end) is skipped, and
    so is a torn line ended with ``TORN_MARK`` by a writer that resumed the log; any other
    line that is not a JSON object raises :class:`CorruptLog` naming file and line.
    """
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                return
            if not line.strip() or line.endswith(TORN_MARK + "\n"):
                continue
            event = parse_line(line)
            if event is None:
                shown = line.strip()
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise CorruptLog(f"{path}:{number}: not a JSON event object: {shown}")
            yield event


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), default=repr)


class EventWriter:
    """Appends events to a log in the contract's format; a no-op when ``path`` is None.

    Each call is one ``write`` on an ``O_APPEND`` descriptor, so lines written by several
    threads or processes into one file never interleave.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None, src: str, epoch: float | None = None
    ) -> None:
        self.src = src
        self.epoch = run_epoch() if epoch is None else epoch
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        if self.path is not None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def now(self) -> float:
        return time.monotonic() - self.epoch

    def write(self, ev: str, **fields: Any) -> None:
        self.write_all([{"ev": ev, **fields}])

    def write_all(self, events: Iterable[dict[str, Any]]) -> None:
        """Write events; those without ``t`` are stamped now, those without ``src`` get ours."""
        lines = []
        for event in events:
            fields = dict(event)
            t = fields.pop("t", None)
            t = round(self.now() if t is None else float(t), 6)
            head = {"t": t, "src": fields.pop("src", self.src), "ev": fields.pop("ev")}
            lines.append(_dumps({**head, **fields}))
        if not lines:
            return
        payload = ("\n".join(lines) + "\n").encode()
        with self._lock:
            if self._fd is None:
                return
            view = memoryview(payload)
            while view:
                view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
