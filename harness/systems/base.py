"""The seam between the harness and a system under test: the ``System`` protocol.

The harness spawns, breaks, records and checks; a ``System`` says, for one kind of system,
how to launch each role, when a process is ready, where events come from, what it supports,
its documented exit codes, what a job's value should be and how to attack its handshake.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import msgspec

from harness.checks import ExitCodes

#: What a kind says when a package it needs is not installed (an extra): a file of that
#: kind is then skipped by the pytest plugin, saying what to install, never an error.
NOT_INSTALLED = "is not installed: pip install"

__all__ = [
    "BROKER",
    "MASTER",
    "NOT_INSTALLED",
    "WORKER",
    "Event",
    "EventSink",
    "ExitCodes",
    "HoldsFrames",
    "Kind",
    "Launch",
    "Observer",
    "Process",
    "ProcessSpec",
    "RunSetup",
    "System",
    "attack_source",
    "format_address",
    "parse_address",
]

Event = dict[str, Any]
#: Writes one event to the harness's log: ``sink("ev", field=value, ...)``.
EventSink = Callable[..., None]

#: Role names. ``master`` and ``worker`` every system has; ``broker`` is a process an engine
#: needs (a Redis-protocol server), started first. Faults aimed at a worker target ``worker``
#: processes; ``kill_master`` / ``restart_master`` the ``master``.
MASTER = "master"
WORKER = "worker"
BROKER = "broker"


@dataclass(frozen=True, slots=True)
class RunSetup:
    """What a run gives the system, the same for every process of the run."""

    run_dir: Path
    #: The workload, one JSON object a line: ``{"task", "args", "time_limit_s"?}``; None when
    #: the run brings no job set (the master's own arguments say what to do).
    jobs_path: Path | None
    #: The scenario's ``[cluster]`` table, every key (defaults filled in).
    cluster: Mapping[str, Any] = field(default_factory=dict)
    #: Extra argv for the master and worker roles (hand-written runs and tests).
    master_args: tuple[str, ...] = ()
    worker_args: tuple[str, ...] = ()
    #: The run's key; a system without one ignores it.
    authkey: bytes = b""
    #: Where the master's results output goes, if the system writes one (JSON lines with
    #: ``job``, ``ok``, ``value``: loaded into the history as ``result_output``).
    results_path: Path | None = None
    #: The run's time origin (a ``time.monotonic()`` reading), for observers that write
    #: events from the harness's process; None: the observer takes ``contract.run_epoch()``.
    epoch: float | None = None


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """One process the cluster is about to start."""

    role: str
    name: str  # also its ``src`` in the history: "master", "worker-2", "intruder-1", "broker"
    events_path: Path  # where its events go, if it writes them itself
    #: Addresses (``HOST:PORT``) of the roles already ready, as this process should reach
    #: them (a worker's "master" may be its fault proxy or a relay).
    addresses: Mapping[str, str]
    authkey: bytes  # the key it is given (a wrong or empty one for an intruder)
    #: Its host's address when the run gives each process a host of its own (``[network]
    #: hosts = true``): a server binds it; None on the machine's own loopback.
    host: str | None = None
    #: The harness's descriptor of that host's network namespace (``harness.net.netns``):
    #: sockets the harness makes inside it (a relay's) belong to the host. None off hosts.
    host_namespace: int | None = None


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start one process. ``python`` as ``argv[0]`` means the harness's interpreter."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # added to the cluster's environment
    cwd: Path | None = None  # default: the run directory


class Process(Protocol):
    """A spawned process, as a system may see it (``harness.cluster.Proc``)."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def events_path(self) -> Path: ...
    @property
    def log_path(self) -> Path: ...
    def alive(self) -> bool: ...


class Observer(Protocol):
    """An event source the harness runs beside the cluster: a wire relay, a producer...

    It writes events in the contract's format into the run directory (``contract.EventWriter``
    on ``<name>.events.jsonl``), with ``src`` ``master`` for what it sees of the master.
    """

    def master_ready(self, address: str) -> None:
        """The master (re)started and listens at ``address``."""

    def worker_address(self, worker: str, address: str) -> str:
        """The address ``worker`` should connect to, given the master's (or a proxy's)."""

    def close(self) -> None: ...


class System(Protocol):
    """One kind of system under test. One object per run: it may keep state between calls.

    Class-level facts (``kind``, ``roles``, the supported vocabularies, ``exit_codes``) are
    read by scenario validation before any run; the methods are called by the cluster,
    the fault injector and the runner.
    """

    #: The ``[system] kind`` that chooses it.
    kind: ClassVar[str]
    #: The roles it runs, in start order; every role but ``worker`` runs once.
    roles: ClassVar[tuple[str, ...]]
    #: The triggers, fault actions and checks it has evidence for (its events say so).
    triggers: ClassVar[frozenset[str]]
    actions: ClassVar[frozenset[str]]
    checks: ClassVar[frozenset[str]]
    #: The ``[cluster]`` keys it honours besides ``workers``; a scenario setting another fails.
    cluster_keys: ClassVar[frozenset[str]]
    #: What each exit code of its master and workers means (``clean_exits``). Per run: an
    #: unmodified app documents its own in its ``[system]`` table.
    exit_codes: ExitCodes
    #: The signal on which its processes write their Python stacks to their log (on a hang).
    stacks_signal: ClassVar[int | None]
    #: Its workers run until stopped (an engine's): once the master is done, the runner
    #: stops them instead of waiting for them to exit by themselves.
    workers_outlive_master: ClassVar[bool]
    #: It can run on hosts of their own: its servers bind ``ProcessSpec.host`` and its
    #: clients reach them at the addresses they report.
    binds_host: ClassVar[bool]

    def launch(self, process: ProcessSpec, setup: RunSetup) -> Launch:
        """argv, env and cwd for one process of ``process.role``."""
        ...

    def ready(self, process: Process, events: Sequence[Event]) -> str | None:
        """Its address (``HOST:PORT``) once ``process`` (a non-worker role) is ready, else None.

        Polled until the cluster's start-up bound; ``events`` is everything written to the
        run's event logs so far."""
        ...

    def joined(self, worker: str, events: Sequence[Event]) -> bool:
        """Whether ``worker`` has joined the master, from the run's events so far."""
        ...

    def observers(self, setup: RunSetup, sink: EventSink) -> Sequence[Observer]:
        """Event sources to run beside the cluster (none when the system writes its own)."""
        ...

    def expected(self, task: str, args: tuple[Any, ...]) -> Any:
        """The value ``task(*args)`` should yield, or ``checks.Expect.UNKNOWN`` / ``FAILURE``."""
        ...

    def attack_handshake(self, address: str, count: int, rng: random.Random) -> None:
        """Make ``count`` handshakes with a wrong key against ``address`` (``bad_handshakes``);
        each must be refused."""
        ...


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:5000"`` or ``"[::1]:5000"`` -> (host, port). Raises ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"address {text!r} is not HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port_text)


def attack_source(master: tuple[str, int], number: int) -> tuple[str, int] | None:
    """A source address for the ``number``-th attack connection on a master at
    127.0.0.1: spread over 127.0.0.2-127.0.0.201, so each is a whole handshake the master
    must refuse, not one a per-address limit turns away or slows down (a system may
    have such limits; they are tested on their own)."""
    if master[0] != "127.0.0.1":
        return None
    return (f"127.0.0.{2 + number % 200}", 0)


def format_address(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@runtime_checkable
class HoldsFrames(Protocol):
    """A system that can hold the frame that fires a trigger until the fault has acted
    (``when = { job_leased = N, hold = true }``): a fault lands inside the window of a
    job that would finish before the harness could strike."""

    def hold(self, trigger: str, job: int, attempt: int | None) -> None:
        """Before the run: hold the frame whose event fires ``trigger`` for ``job``."""

    def release(self, trigger: str, job: int, attempt: int | None) -> None:
        """The fault has acted (or the run ends): let that frame go on."""


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of system: its ``[system]`` keys and how to build its ``System`` for a run."""

    name: str
    #: The ``[system]`` table's keys besides ``kind`` (a ``forbid_unknown_fields`` Struct).
    config: type[msgspec.Struct]
    #: A ``System`` for one run, from the validated config.
    build: Callable[[Any], System]
    #: The class-level facts scenario validation reads (triggers, actions, checks...).
    facts: type[System]
