"""distq as a system under test: its commands, flags, readiness, exit codes and tasks.

The only module of the harness that knows distq. distq writes the history contract
itself (``harness.contract``), so it needs no observer; its built-in tasks give
``correct_values`` their expected values.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any, ClassVar

import msgspec

from distq import errors
from harness import contract
from harness.checks import CHECKS, Expect
from harness.net.proxy import Flow, Tap
from harness.systems.base import (
    MASTER,
    WORKER,
    Event,
    EventSink,
    ExitCodes,
    Kind,
    Launch,
    Observer,
    Process,
    ProcessSpec,
    RunSetup,
    attack_source,
    parse_address,
)
from harness.wire.frames import Connection
from harness.wire.relay import HOLD_BOUND_S, FrameHolds

__all__ = ["AUTHKEY_ENV", "KIND", "PRODUCER", "DistqConfig", "DistqSystem", "builtin_expected"]

AUTHKEY_ENV = "DISTQ_AUTHKEY"

#: ``[cluster]`` key -> (role, flag) of the ``distq master`` / ``distq worker`` option.
#: Each knob and the flag that passes it: from ``[cluster]`` (the semantics every kind
#: states) or from distq's own ``[system]`` keys.
_FLAGS: Mapping[str, tuple[str, str]] = {
    "lease_timeout_s": (MASTER, "--lease-timeout-s"),
    "max_attempts": (MASTER, "--max-attempts"),
    "handshake_timeout_s": (MASTER, "--handshake-timeout-s"),
    "time_limit_s": (MASTER, "--time-limit-s"),
    "batch_size": (MASTER, "--batch-size"),
    "prefetch": (WORKER, "--prefetch"),
    "worker_idle_exit_s": (WORKER, "--idle-exit-s"),
    "worker_handshake_timeout_s": (WORKER, "--handshake-timeout-s"),
    "worker_reconnect_s": (WORKER, "--reconnect-s"),
    "worker_rpc_timeout_s": (WORKER, "--rpc-timeout-s"),
    "submit_window": (MASTER, "--submit-window"),
}

#: A process that submits jobs to an open master while the run goes on (``[system]
#: producer``); a fault target by its name, like the master.
PRODUCER = "producer"


class DistqConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The ``[system]`` keys of ``kind = "distq"``."""

    command: (
        Annotated[
            list[str],
            msgspec.Meta(
                min_length=1,
                description="what runs `distq master|worker` (default: python -m distq); "
                "e.g. a deliberately broken variant",
            ),
        ]
        | None
    ) = None
    env: Annotated[
        dict[str, str], msgspec.Meta(description="added to every process's environment")
    ] = {}
    # distq's own knobs (format 1 had them in [cluster]); the queue's semantics a scenario
    # states for every kind (lease_timeout_s, max_attempts, time_limit_s, batch_size) stay there.
    handshake_timeout_s: Annotated[
        float,
        msgspec.Meta(
            gt=0, description="the master drops a connection whose handshake takes longer"
        ),
    ] = 5.0
    prefetch: (
        Annotated[int, msgspec.Meta(ge=1, description="most jobs one lease may hold")] | None
    ) = None
    worker_idle_exit_s: (
        Annotated[float, msgspec.Meta(gt=0, description="a worker with no job this long exits")]
        | None
    ) = None
    worker_handshake_timeout_s: Annotated[
        float, msgspec.Meta(gt=0, description="a worker gives up on an unanswered handshake")
    ] = 5.0
    worker_reconnect_s: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            le=3600,
            description="a worker that loses its connection tries this long to rejoin "
            "(0: it exits 5 at once)",
        ),
    ] = 0.0
    journal: Annotated[
        bool,
        msgspec.Meta(
            description="the master keeps its board in a journal (distq master --journal), "
            "so restart_master resumes the run instead of starting it afresh"
        ),
    ] = False
    worker_rpc_timeout_s: (
        Annotated[
            float,
            msgspec.Meta(
                gt=0,
                le=3600,
                description="a worker treats the master as lost when a reply takes longer",
            ),
        ]
        | None
    ) = None
    producer: (
        Annotated[
            list[str],
            msgspec.Meta(
                min_length=1,
                description="a process that submits jobs while the run goes on (a script on "
                "distq.client.Submitter, or distq submit), started once the master is ready: "
                "the master then also takes jobs from clients (--open); {address} is the "
                "master's, the authkey is in DISTQ_AUTHKEY",
            ),
        ]
        | None
    ) = None
    cwd: (
        Annotated[
            str,
            msgspec.Meta(
                description="where the producer runs, relative to the scenario (default: the "
                "run directory)"
            ),
        ]
        | None
    ) = None
    submit_window: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1, description="jobs one submitter may have unfinished (--submit-window)"
            ),
        ]
        | None
    ) = None


# -- expected values: side-effect-free twins of distq's built-in tasks (distq.jobs) ----------


def _square(n: Any, delay_s: Any = 0.0) -> Any:
    _ = delay_s > 0  # the real task compares it, so a non-number fails there too
    return n * n


def _sleep(seconds: Any, value: Any = None) -> Any:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    return seconds if value is None else value


def _echo(*args: Any) -> Any:
    return args[0] if len(args) == 1 else list(args)


_PURE_TASKS: Mapping[str, Callable[..., Any]] = {"square": _square, "sleep": _sleep, "echo": _echo}
_FAILING_TASKS = frozenset({"fail", "crash", "hang"})


def builtin_expected(task: str, args: tuple[Any, ...]) -> Any:
    """The value a built-in task returns for ``args``, or an :class:`Expect`."""
    if task in _FAILING_TASKS:
        return Expect.FAILURE
    function = _PURE_TASKS.get(task)
    if function is None:
        return Expect.UNKNOWN
    try:
        return function(*args)
    except Exception:
        return Expect.FAILURE


#: The worker's calls whose reply hands jobs out.
_LEASES = frozenset({"lease", "report_and_lease"})


def _leased(result: Any) -> list[tuple[int, int]]:
    """(job, attempt) of each job a decoded lease reply hands out: ``[jobs, stopping]``,
    each job ``[job_id, task, args, attempt, time_limit_s, batch]``."""
    if not isinstance(result, list) or len(result) != 2 or not isinstance(result[0], list):
        return []
    return [
        (job[0], job[3])
        for job in result[0]
        if isinstance(job, list) and len(job) >= 4 and isinstance(job[0], int)
    ]


class DistqSystem:
    """``python -m distq master|worker``, or any command that speaks its CLI."""

    kind: ClassVar[str] = "distq"
    roles: ClassVar[tuple[str, ...]] = (MASTER, PRODUCER, WORKER)
    triggers: ClassVar[frozenset[str]] = frozenset(contract.TRIGGERS)
    actions: ClassVar[frozenset[str]] = frozenset(contract.ACTIONS)
    checks: ClassVar[frozenset[str]] = frozenset(CHECKS)
    cluster_keys: ClassVar[frozenset[str]] = frozenset(
        {"lease_timeout_s", "max_attempts", "time_limit_s", "batch_size"}
    )
    exit_codes: ExitCodes = ExitCodes(
        ok=errors.EXIT_OK,
        usage=errors.EXIT_USAGE,
        auth_rejected=errors.EXIT_AUTH_REJECTED,
        no_master=errors.EXIT_NO_MASTER,
        master_lost=errors.EXIT_MASTER_LOST,
        handshake_timeout=errors.EXIT_HANDSHAKE_TIMEOUT,
        interrupted=errors.EXIT_INTERRUPTED,
        output_failed=errors.EXIT_OUTPUT_FAILED,
    )
    #: The roles whose exit clean_exits judges: a producer exits 0 when its own checks of
    #: what it was told held (1 otherwise), like any program on distq.client.
    exit_judged_roles: ClassVar[tuple[str, ...]] = (MASTER, WORKER, PRODUCER)
    stacks_signal: ClassVar[int | None] = signal.SIGUSR1  # distq's CLI registers faulthandler
    workers_outlive_master: ClassVar[bool] = False
    binds_host: ClassVar[bool] = True
    #: A held lease is read at a worker's fault proxy: holding needs [network] proxy = true.
    holds_need_proxy: ClassVar[bool] = True

    def __init__(self, config: DistqConfig | None = None) -> None:
        self.config = DistqConfig() if config is None else config
        self.command = tuple(self.config.command or ("python", "-m", "distq"))
        self.holds = FrameHolds()
        self.holding = False  # whether a fault holds a frame: its proxies then read leases
        self._producer_address = ""
        #: The roles this run starts, in order: the producer only when the scenario has one.
        self.run_roles = tuple(
            role for role in self.roles if role != PRODUCER or self.config.producer
        )

    def launch(self, process: ProcessSpec, setup: RunSetup) -> Launch:
        env = {**self.config.env, AUTHKEY_ENV: os.fsdecode(process.authkey)}
        flags = self._flags(process.role, {**setup.cluster, **msgspec.structs.asdict(self.config)})
        events = ("--events", str(process.events_path))
        if process.role == MASTER:
            flags += self._restart_flags(process, setup)
            if process.host is not None:
                flags += ("--host", process.host)
            jobs = () if setup.jobs_path is None else ("--jobs", str(setup.jobs_path))
            results = () if setup.results_path is None else ("--results", str(setup.results_path))
            submit = ("--open",) if self.config.producer else ()
            argv = (
                *self.command,
                "master",
                *jobs,
                *submit,
                *flags,
                *setup.master_args,
                *results,
                *events,
            )
        elif process.role == WORKER:
            connect = ("--connect", process.addresses[MASTER], "--name", process.name)
            argv = (*self.command, "worker", *connect, *events, *flags, *setup.worker_args)
        elif process.role == PRODUCER and self.config.producer:
            master = self._producer_address = process.addresses[MASTER]
            argv = tuple(part.replace("{address}", master) for part in self.config.producer)
            cwd = None if self.config.cwd is None else Path(self.config.cwd)
            return Launch(argv, env, cwd)
        else:
            raise ValueError(f"distq has no role {process.role!r}")
        return Launch(argv, env)

    def _restart_flags(self, process: ProcessSpec, setup: RunSetup) -> tuple[str, ...]:
        """``journal``: the board in the run directory, so a restarted master resumes it.
        A master started again (it had an address) binds its port again, where rejoining
        workers look for it."""
        flags: tuple[str, ...] = ()
        if self.config.journal:
            flags += ("--journal", str(setup.run_dir.resolve() / "journal.sqlite"))
        previous = process.addresses.get(MASTER)
        if previous is not None:
            flags += ("--port", str(parse_address(previous)[1]))
        return flags

    @staticmethod
    def _flags(role: str, cluster: Mapping[str, Any]) -> tuple[str, ...]:
        flags: list[str] = []
        for key, (flag_role, flag) in _FLAGS.items():
            value = cluster.get(key)
            if flag_role == role and value is not None:
                flags += [flag, repr(value) if isinstance(value, float) else str(value)]
        return tuple(flags)

    def ready(self, process: Process, events: Sequence[Event]) -> str | None:
        if process.role == PRODUCER:  # a client of a master that is up: ready once started
            return self._producer_address
        for event in events:
            if event.get("ev") == contract.MASTER_READY and event.get("pid") == process.pid:
                return str(event["address"])
        return None

    def joined(self, worker: str, events: Sequence[Event]) -> bool:
        return contract.master_saw_join(worker, events)

    def observers(self, setup: RunSetup, sink: EventSink) -> Sequence[Observer]:
        return ()  # distq writes the history contract itself

    def expected(self, task: str, args: tuple[Any, ...]) -> Any:
        return builtin_expected(task, args)

    def hold(self, trigger: str, job: int, attempt: int | None) -> None:
        self.holds.arm(trigger, job, attempt)
        self.holding = True

    def release(self, trigger: str, job: int, attempt: int | None) -> None:
        self.holds.release(trigger, job)

    def proxy_tap(self, route: str) -> Tap | None:
        """With frames to hold, a tap on a worker's fault proxy that holds the lease reply
        handing an armed job out until the fault has acted; None otherwise (no decoding)."""
        if not self.holding:
            return None
        holds = self.holds
        connections: dict[int, Connection] = {}

        def tap(connection: int, flow: Flow, data: bytes) -> None:
            state = connections.setdefault(connection, Connection(route, connection))
            try:
                frames = state.feed(0.0, flow, data)
            except Exception:  # never break the link
                return
            for frame in frames:
                if frame.kind != "reply" or frame.method not in _LEASES:
                    continue
                for job, attempt in _leased(frame.result):
                    gate = holds.gate_for({"ev": contract.LEASED, "job": job, "attempt": attempt})
                    if gate is not None:
                        gate.wait(HOLD_BOUND_S)

        return tap

    def attack_handshake(self, address: str, count: int, rng: random.Random) -> None:
        from multiprocessing.context import AuthenticationError

        from distq.protocol import authenticated_client, parse_address

        master = parse_address(address)
        for number in range(count):
            with suppress(AuthenticationError, OSError, EOFError):
                authenticated_client(
                    master, authkey=rng.randbytes(16), source_address=attack_source(master, number)
                ).close()


def _build(config: Any) -> DistqSystem:
    return DistqSystem(config)


KIND = Kind("distq", DistqConfig, _build, DistqSystem)
