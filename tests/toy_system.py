"""The toy queue (tests/toy_queue.py) as a system under test: ``kind = "tests.toy_system:KIND"``.

Everything the harness needs to know of it, in one adapter, as a user would write one.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec

from harness import contract
from harness.checks import ExitCodes, Expect
from harness.systems import (
    BROKER,
    MASTER,
    WORKER,
    Kind,
    Launch,
    Observer,
    Process,
    ProcessSpec,
    RunSetup,
)
from harness.systems.base import Event, EventSink


class ToyConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    forget_lost: bool = False  # the broken copy: a dead worker's job is never put back
    broker: bool = False  # run a broker process first, as an engine would


class ToySystem:
    kind: ClassVar[str] = "toy"
    roles: ClassVar[tuple[str, ...]] = (MASTER, WORKER)
    triggers: ClassVar[frozenset[str]] = frozenset({"after_s", "job_leased", "job_started", "job_completed", "results", "workers_joined"})  # fmt: skip
    actions: ClassVar[frozenset[str]] = frozenset({"kill", "add_worker"})
    checks: ClassVar[frozenset[str]] = frozenset({"exactly_once", "correct_values", "liveness", "fault_coverage", "clean_exits"})  # fmt: skip
    cluster_keys: ClassVar[frozenset[str]] = frozenset()
    exit_codes: ExitCodes = ExitCodes(ok=0)
    workers_outlive_master: ClassVar[bool] = False
    binds_host: ClassVar[bool] = False
    stacks_signal: ClassVar[int | None] = None

    def __init__(self, config: ToyConfig) -> None:
        self.config = config
        self.broker_port = 0

    def launch(self, process: ProcessSpec, setup: RunSetup) -> Launch:
        toy = ("python", "-m", "tests.toy_queue")
        if process.role == BROKER:
            with socket.create_server(("127.0.0.1", 0)) as probe:  # a free port, for its argv
                self.broker_port = probe.getsockname()[1]
            return Launch((*toy, "broker", str(self.broker_port)))
        if process.role == MASTER:
            broken = ("--forget-lost",) if self.config.forget_lost else ()
            broker = ("--broker", process.addresses[BROKER]) if BROKER in process.addresses else ()
            events = str(process.events_path)
            return Launch((*toy, "master", str(setup.jobs_path), events, *broken, *broker))
        address = process.addresses[MASTER]
        return Launch((*toy, "worker", address, process.name, str(process.events_path)))

    def ready(self, process: Process, events: Sequence[Event]) -> str | None:
        if process.role == BROKER:  # no events of its own: it is ready when it answers
            address = f"127.0.0.1:{self.broker_port}"
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.broker_port), 1),
            ):
                return address
            return None
        for event in events:
            if event.get("ev") == contract.MASTER_READY and event.get("pid") == process.pid:
                return str(event["address"])
        return None

    def joined(self, worker: str, events: Sequence[Event]) -> bool:
        return any(e.get("ev") == contract.WORKER_JOINED and e.get("worker") == worker for e in events)  # fmt: skip

    def observers(self, setup: RunSetup, sink: EventSink) -> Sequence[Observer]:
        return ()

    def expected(self, task: str, args: tuple[Any, ...]) -> Any:
        return args[0] * args[0] if task == "square" else Expect.UNKNOWN

    def attack_handshake(self, address: str, count: int, rng: random.Random) -> None:
        raise NotImplementedError("the toy queue has no handshake")


class ToyWithBroker(ToySystem):
    roles: ClassVar[tuple[str, ...]] = (BROKER, MASTER, WORKER)


def build(config: ToyConfig) -> ToySystem:
    return ToyWithBroker(config) if config.broker else ToySystem(config)


KIND = Kind("toy", ToyConfig, build, ToySystem)
