"""An unmodified BaseManager app as a system under test, observed on the wire.

The scenario gives the app's master and worker command lines and names its task and result
queues; every process reaches the app through a relay of its own (``harness.wire``), the
master's own calls too (a ``sitecustomize`` on its ``PYTHONPATH``), and the relays write
the history. The app is never modified and never imported. On hosts of their own
(``[network] hosts = true``) the relays' sockets are made inside the serving process's host,
so a worker's traffic crosses the lab's bridge; ``{host}`` and ``{master_host}`` tell the
app the addresses to bind and dial.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import random
import re
import signal
import socket
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from harness import contract
from harness.checks import CHECKS, Expect, ExpectedFailed, Satisfies
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
)
from harness.wire.identity import Keyer, Skipper, key_text, plain
from harness.wire.relay import FrameHolds, WireRecorder, in_host
from harness.wire.translate import TAKES, QueueNames, keyer

__all__ = ["KIND", "SITE_DIR", "UNSUPPORTED_TRIGGERS", "ManagersConfig", "ManagersSystem"]

#: The directory holding the ``sitecustomize`` the master runs with.
SITE_DIR = Path(__file__).resolve().parent.parent / "wire" / "site"
REDIRECT_ENV = "DISTQ_WIRE_REDIRECT"
#: On hosts of their own: the serving host's address, which the hook treats as the app's
#: too (a client that dials the app's host by ``{master_host}`` is redirected as well).
APP_HOST_ENV = "DISTQ_WIRE_APP_HOST"
STACKS_ENV = "DISTQ_WIRE_STACKS_SIGNAL"
STACKS_SIGNAL = signal.SIGUSR1

#: Roles beside master and worker: a process that serves the app's objects until stopped,
#: and one that puts its tasks.
SERVER = "server"
PRODUCER = "producer"

#: Triggers with no evidence on the wire: a worker starting a job says nothing to the master.
UNSUPPORTED_TRIGGERS: dict[str, str] = {
    "job_started": "a BaseManager worker says nothing on the wire when it starts a job; "
    "use job_leased (the hand-out) instead",
}
#: Actions that need something an unmodified app does not have.
UNSUPPORTED_ACTIONS: dict[str, str] = {
    "empty_key_worker": "an unmodified app has no rule about empty keys to check",
    "tear_results": "an unmodified app writes no results file the harness knows",
    "tear_events": "an app's event log is the harness's relay's, not the app's own",
    "disk_full": "an unmodified app writes no output the harness knows",
    "truncate": "an unmodified app writes no output the harness knows",
    # Raw sockets go straight to the app's port, past every relay: what the app made of
    # them leaves no trace to check (bad_handshakes goes through a relay of its own).
    "idle_sockets": "an idle socket leaves no trace on the wire or in the app",
    "garbage": "garbage bytes leave no trace on the wire or in the app",
}
#: ``{host}``: the process's own host's address; ``{master_host}``: the address of the host
#: the app is served from (the master's, or the server's), where the relays listen. Both
#: exist only on hosts of their own (``[network] hosts = true``).
HOST_PLACEHOLDERS = ("{host}", "{master_host}")
PLACEHOLDERS = ("{python}", "{port}", "{authkey}", *HOST_PLACEHOLDERS)
#: What the harness sets in every process's environment: not the scenario's to set.
HARNESS_ENV = frozenset(
    {
        REDIRECT_ENV,
        APP_HOST_ENV,
        STACKS_ENV,
        contract.EPOCH_ENV,
        contract.PROCESS_ENV,
        contract.EVENTS_ENV,
        "DISTQ_HARNESS_TAG",
    }
)


FUNCTION_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
KeySpec = str | int | list[str | int]


class TasksSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """``tasks = { typeid = "get_jobs", take = "popleft" }``: the task proxy and how it hands
    tasks out (default: any of get, get_nowait, popleft, pop)."""

    typeid: Annotated[str, msgspec.Meta(min_length=1)]
    take: Literal["get", "get_nowait", "popleft", "pop"] | None = None


class ResultsSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """``results = { typeid = "get_results", as = "mapping" }``: the result proxy and its
    shape (default: by the methods the wire shows)."""

    typeid: Annotated[str, msgspec.Meta(min_length=1)]
    shape: Literal["queue", "list", "mapping"] | None = msgspec.field(default=None, name="as")


class ManagersConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The ``[system]`` keys of ``kind = "managers"``."""

    master: Annotated[
        list[str],
        msgspec.Meta(
            min_length=1,
            description="the master's argv; {python} {port} {authkey}, on hosts {host} "
            "{master_host}",
        ),
    ]
    worker: Annotated[
        list[str],
        msgspec.Meta(
            min_length=1,
            description="a worker's argv; {port} is its relay's, on hosts {master_host} its "
            "relay's address",
        ),
    ]
    server: (
        Annotated[
            list[str],
            msgspec.Meta(
                min_length=1,
                description="a process that serves the app's objects until stopped (serve_forever): "
                "started first, {port} is the app's; the master is then a client of it",
            ),
        ]
        | None
    ) = None
    producer: (
        Annotated[
            list[str],
            msgspec.Meta(
                min_length=1,
                description="a process that puts tasks, started once the app is up; its puts are "
                "submissions like the master's",
            ),
        ]
        | None
    ) = None
    stop: Annotated[
        Literal["sigint", "sigterm"],
        msgspec.Meta(
            description="how the harness stops a server still serving at the end (its "
            "master_stopped then says so)"
        ),
    ] = "sigint"
    tasks: Annotated[
        str | TasksSpec,
        msgspec.Meta(description="registered typeid of the task proxy, or {typeid, take}"),
    ]
    results: Annotated[
        str | ResultsSpec | bool,
        msgspec.Meta(
            description="registered typeid of the result proxy, or {typeid, as}; false: the app "
            "has none (a job is done when its holder asks for its next task)"
        ),
    ]
    cwd: Annotated[
        str, msgspec.Meta(description="where the app runs, relative to the scenario")
    ] = "."
    scenario_dir: Annotated[
        str,
        msgspec.Meta(
            description="where modules named by expected/job_key/result_key/skip are looked "
            "for first (default: the scenario file's folder; then cwd and its parents)"
        ),
    ] = ""
    job_key: (
        Annotated[
            KeySpec,
            msgspec.Meta(
                description="what names a task item's job: an attribute or dict key, an index, a "
                'path ("payload.id" or [1, "id"]), or "module:function"; default: the item'
            ),
        ]
        | None
    ) = None
    result_key: (
        Annotated[
            KeySpec,
            msgspec.Meta(description="the same for a result (for a mapping, read on its key)"),
        ]
        | None
    ) = None
    skip: Annotated[
        str | list[Any],
        msgspec.Meta(
            description='control items that are not jobs: literal values ([-1, "STOP"]) or a '
            'predicate "module:function" (for None: TOML has no null)'
        ),
    ] = []
    batch_size: Annotated[int, msgspec.Meta(ge=1)] | None = None
    expected: Annotated[str, msgspec.Meta(pattern=FUNCTION_PATTERN)] | None = None
    exit_codes: Annotated[
        dict[str, int],
        msgspec.Meta(
            description="the app's exit code by meaning (ok, usage, auth_rejected, no_master, "
            "master_lost, handshake_timeout, interrupted), for clean_exits; default ok = 0"
        ),
    ] = {}

    def __post_init__(self) -> None:
        unknown = sorted(set(self.exit_codes) - set(ExitCodes.__dataclass_fields__))
        if unknown:
            known = ", ".join(ExitCodes.__dataclass_fields__)
            raise ValueError(
                f"exit_codes: unknown meaning {unknown[0]!r} (expected one of: {known})"
            )
        owned = sorted(set(self.env) & HARNESS_ENV)
        if owned:
            raise ValueError(
                f"env: {owned[0]} is set by the harness for every process of the run; "
                "leave it out (PYTHONPATH is merged, not replaced)"
            )
        if self.results is True:
            raise ValueError(
                "results: true is not a typeid; name the result proxy's typeid, or false when "
                "the app has no results"
            )
        if self.results is False and self.result_key is not None:
            raise ValueError("result_key: the app has no results (results = false)")
        if isinstance(self.skip, str) and not re.match(FUNCTION_PATTERN, self.skip):
            raise ValueError(
                f"skip: got {self.skip!r}, expected a list of values or a predicate "
                '"module:function"'
            )
        # Refused now, not after the whole run.
        self.names()
        if self.expected is not None:
            self.function("expected", self.expected)

    env: dict[str, str] = {}

    def hosts_only(self) -> str | None:
        """Where the first ``{host}`` or ``{master_host}`` is used (``master[3]: ...``), or
        None: those name addresses that exist only on hosts of their own."""
        parts: list[tuple[str, str]] = []
        for key, argv in (
            ("master", self.master),
            ("worker", self.worker),
            ("server", self.server or []),
            ("producer", self.producer or []),
        ):
            parts += [(f"{key}[{index}]", part) for index, part in enumerate(argv)]
        parts += [(f"env.{name}", value) for name, value in self.env.items()]
        for where, part in parts:
            for placeholder in HOST_PLACEHOLDERS:
                if placeholder in part:
                    return f"{where}: {placeholder} is a host's address, and the run has no hosts"
        return None

    def refused_checks(self) -> dict[str, str]:
        """Checks this app's configuration gives no evidence for, with why."""
        if self.results is False:
            return {
                "correct_values": "results = false: the app sends back no value to compare "
                "(a job is done when its holder asks for its next task)"
            }
        return {}

    def search_dirs(self) -> list[Path]:
        """Where the app's helper modules are looked for, in order."""
        cwd = Path(self.cwd).resolve()
        first = [Path(self.scenario_dir).resolve()] if self.scenario_dir else []
        return list(dict.fromkeys([*first, cwd, *cwd.parents]))

    def function(self, what: str, path: str) -> Callable[..., Any]:
        return load_function(path, self.search_dirs(), what)

    def names(self) -> QueueNames:
        """How the wire is read for this app: typeids, keys, skipped items."""
        tasks = self.tasks if isinstance(self.tasks, TasksSpec) else TasksSpec(typeid=self.tasks)
        results: str | None
        shape = None
        if isinstance(self.results, ResultsSpec):
            results, shape = self.results.typeid, self.results.shape
        else:
            results = self.results if isinstance(self.results, str) else None
        skip = (
            Skipper.of(function=self.function("skip", self.skip))
            if isinstance(self.skip, str)
            else Skipper.of(self.skip)
        )
        return QueueNames(
            tasks.typeid,
            results,
            self._key("job_key", self.job_key),
            self._key("result_key", self.result_key),
            self.batch_size,
            take=TAKES if tasks.take is None else frozenset({tasks.take}),
            submitters=frozenset({SERVER, PRODUCER}),
            results_as=shape,
            skip=skip,
            matches=None if self.expected is None else self._matches(),
        )

    def _matches(self) -> Callable[[Any, Any], bool]:
        """Whether a result answers a task item, by the scenario's ``expected``."""
        assert self.expected is not None
        function = self.function("expected", self.expected)
        if _takes_two(function):
            return lambda item, value: bool(function(plain(item), value))
        return lambda item, value: key_text(function(plain(item))) == key_text(value)

    def _key(self, what: str, spec: KeySpec | None) -> Keyer | None:
        if isinstance(spec, str) and re.match(FUNCTION_PATTERN, spec):
            return Keyer(function=self.function(what, spec), spec=repr(spec))
        if isinstance(spec, list) and not spec:
            raise ValueError(f"{what}: an empty path names nothing")
        return keyer(spec)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


class ManagersSystem:
    """One run of a BaseManager app, and the relays that watch it."""

    kind: ClassVar[str] = "managers"
    roles: ClassVar[tuple[str, ...]] = (SERVER, MASTER, PRODUCER, WORKER)
    triggers: ClassVar[frozenset[str]] = frozenset(contract.TRIGGERS) - set(UNSUPPORTED_TRIGGERS)
    actions: ClassVar[frozenset[str]] = frozenset(contract.ACTIONS) - set(UNSUPPORTED_ACTIONS)
    checks: ClassVar[frozenset[str]] = frozenset(CHECKS)
    cluster_keys: ClassVar[frozenset[str]] = frozenset()
    stacks_signal: ClassVar[int | None] = STACKS_SIGNAL
    workers_outlive_master: ClassVar[bool] = False
    binds_host: ClassVar[bool] = True

    def __init__(self, config: ManagersConfig, base_dir: Path | None = None) -> None:
        self.config = config
        #: This run's documented codes, from the scenario.
        self.exit_codes = ExitCodes(**config.exit_codes)
        cwd = Path(config.cwd)
        self.cwd = cwd if cwd.is_absolute() else (base_dir or Path.cwd()) / cwd
        self.names = config.names()
        self.app_port = _free_port()
        #: The address the relays reach the app at: loopback, or on hosts of their own the
        #: serving host's address when the serving process is told to bind it (``{host}``).
        self.app_host = "127.0.0.1"
        #: On hosts of their own: the serving process's host (its address and the harness's
        #: descriptor of its namespace), where every relay listens and connects from.
        self.serving_host: str | None = None
        self.serving_namespace: int | None = None
        self.recorder: WireRecorder | None = None
        self.holds = FrameHolds()
        #: The roles this app runs, in start order.
        self.run_roles = tuple(
            role
            for role in self.roles
            if role in (MASTER, WORKER)
            or (role == SERVER and config.server)
            or (role == PRODUCER and config.producer)
        )
        serving = SERVER if config.server else MASTER
        self.serving = serving
        self.stop_signals = {serving: signal.SIGINT if config.stop == "sigint" else signal.SIGTERM}
        self.seed = 0
        self.sink: EventSink | None = None
        self._expected: Callable[..., Any] | None = None

    # -- the relays ---------------------------------------------------------------------------

    def _recorder(self, setup: RunSetup) -> WireRecorder:
        if self.recorder is None:
            epoch = contract.run_epoch() if setup.epoch is None else setup.epoch
            self.recorder = WireRecorder(setup.run_dir, self.names, epoch, self.holds)
        return self.recorder

    def _relay_address(self, route: str, upstream: tuple[str, int]) -> str:
        assert self.recorder is not None
        if self.serving_host is None or self.serving_namespace is None:
            relay = self.recorder.relay(route, upstream, self.seed, self._proxy_event)
        else:  # in the serving host: a client's traffic to it crosses the lab's bridge
            relay = self.recorder.relay(
                route,
                (self.app_host, self.app_port),
                self.seed,
                self._proxy_event,
                listen=(self.serving_host, 0),
                place=in_host(self.serving_namespace),
            )
        return f"{relay.address[0]}:{relay.address[1]}"

    def _proxy_event(self, ev: str, **fields: Any) -> None:
        if self.sink is not None:
            self.sink(ev, **fields)

    # -- the System protocol ------------------------------------------------------------------

    def launch(self, process: ProcessSpec, setup: RunSetup) -> Launch:
        recorder = self._recorder(setup)
        if process.role == self.serving and process.host_namespace is not None:
            self.serving_host, self.serving_namespace = process.host, process.host_namespace
            told = [*self._argv(process.role), *self.config.env.values()]
            if process.host is not None and any("{host}" in part for part in told):
                self.app_host = process.host  # it binds its host's address, not loopback
        app = (self.app_host, self.app_port)
        paths = (
            str(SITE_DIR),
            self.config.env.get("PYTHONPATH", ""),
            os.environ.get("PYTHONPATH", ""),
        )
        site = os.pathsep.join(p for p in paths if p)  # the hook first, then the app's own
        env = {**self.config.env, "PYTHONPATH": site, STACKS_ENV: str(int(STACKS_SIGNAL))}
        if process.role in (MASTER, SERVER, PRODUCER):  # its own calls through its relay
            relay = self._relay_address(process.role, app)
            env[REDIRECT_ENV] = f"{self.app_port}={relay}"
            if self.serving_host is not None:
                env[APP_HOST_ENV] = self.serving_host
            argv, port = self._argv(process.role), self.app_port
        elif process.role == WORKER:
            address = process.addresses.get(MASTER, f"127.0.0.1:{self.app_port}")
            relays = {f"{r.address[0]}:{r.address[1]}" for r in recorder.relays.values()}
            if address not in relays:
                address = self.worker_address(process.name, address)
            argv, port = self.config.worker, _port_of(address)
        else:
            raise ValueError(f"a BaseManager app has no role {process.role!r}")
        values = {
            "{python}": sys.executable,
            "{port}": str(port),
            "{authkey}": os.fsdecode(process.authkey),
            "{host}": process.host or "127.0.0.1",
            "{master_host}": self.serving_host or "127.0.0.1",
        }
        for placeholder, value in values.items():
            argv = [part.replace(placeholder, value) for part in argv]
        for placeholder in HOST_PLACEHOLDERS:  # the scenario's own variables may name them
            env = {
                name: text.replace(placeholder, values[placeholder]) for name, text in env.items()
            }
        return Launch(tuple(argv), env, self.cwd)

    def _argv(self, role: str) -> list[str]:
        argv = {SERVER: self.config.server, PRODUCER: self.config.producer}.get(role)
        return argv if argv is not None else self.config.master

    def worker_address(self, worker: str, address: str) -> str:
        """The relay ``worker`` connects to, in front of ``address`` (the app or a proxy)."""
        host, _, port = address.rpartition(":")
        return self._relay_address(worker, (host or "127.0.0.1", int(port)))

    def ready(self, process: Process, events: Sequence[Event]) -> str | None:
        """Whether the app answers on its port (on hosts of their own, asked from inside the
        serving host: at its address when it was told to bind it, else at its loopback)."""
        address = f"{self.app_host}:{self.app_port}"
        if process.role != self.serving:  # a client of an app that is up already
            return address
        try:
            socket.create_connection((self.app_host, self.app_port), timeout=1).close()
        except OSError:
            return None
        if self.recorder is not None:
            self.recorder.write(MASTER, contract.MASTER_READY, address=address, pid=process.pid)
        return address

    def joined(self, worker: str, events: Sequence[Event]) -> bool:
        return contract.master_saw_join(worker, events)

    def observers(self, setup: RunSetup, sink: EventSink) -> Sequence[Observer]:
        self.sink = sink
        self._recorder(setup)
        return (_RelayObserver(self),)

    def expected(self, task: str, args: tuple[Any, ...]) -> Any:
        """The right result for a task item: ``expected(item)`` returns it, or, for a
        predicate ``expected(item, result) -> bool``, a :class:`Satisfies` of it."""
        path = self.config.expected
        if path is None or len(args) != 1:
            return Expect.UNKNOWN
        if self._expected is None:
            self._expected = self.config.function("expected", path)
        function, item = self._expected, plain(args[0])
        if _takes_two(function):
            return Satisfies(lambda value: function(item, value), path)
        try:
            return function(item)
        except Exception as exc:  # the user's function: judged unknown, with the reason
            return ExpectedFailed(f"{type(exc).__name__}: {exc}"[:200])

    def processes_ended(self, codes: Mapping[str, int | None], stopped: Mapping[str, str]) -> None:
        """A server or master that never asked its manager to shut down has still stopped
        when it exited 0, or when the harness stopped it at the end the way its users do:
        ``master_stopped`` says how it was seen."""
        recorder = self.recorder
        if recorder is None or recorder.translator.stopped:
            return
        name, code = self.serving, codes.get(self.serving)
        if name in stopped and code is not None:
            seen = f"stopped by the harness with {stopped[name]} at the end (exit {code})"
        elif code == 0:
            seen = "exit 0"
        else:
            return
        recorder.write(MASTER, contract.MASTER_STOPPED, route=name, seen=seen)

    def hold(self, trigger: str, job: int, attempt: int | None) -> None:
        self.holds.arm(trigger, job, attempt)

    def release(self, trigger: str, job: int, attempt: int | None) -> None:
        self.holds.release(trigger, job)

    def attack_handshake(self, address: str, count: int, rng: random.Random) -> None:
        from multiprocessing.connection import Client
        from multiprocessing.context import AuthenticationError

        host, _, port = address.rpartition(":")
        relay = self._relay_address("handshake-attack", (host, int(port)))
        host, _, port = relay.rpartition(":")
        for _ in range(count):
            with suppress(AuthenticationError, OSError, EOFError):
                Client((host, int(port)), authkey=rng.randbytes(16)).close()

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()


class _RelayObserver:
    def __init__(self, system: ManagersSystem) -> None:
        self.system = system

    def master_ready(self, address: str) -> None:
        pass  # the relays connect to the app's fixed port on each new connection

    def worker_address(self, worker: str, address: str) -> str:
        return self.system.worker_address(worker, address)

    def processes_ended(self, codes: Mapping[str, int | None], stopped: Mapping[str, str]) -> None:
        self.system.processes_ended(codes, stopped)

    def close(self) -> None:
        self.system.close()


def load_function(path: str, dirs: Sequence[Path], what: str = "expected") -> Callable[..., Any]:
    """``module:function``: from a file under the first of ``dirs`` that has it, loaded
    afresh under a name of its own (two apps may each ship an ``expect.py``: neither is
    judged with the other's), else imported as installed. Raises ValueError (one line)
    when it cannot be found, loaded or called."""
    module_name, _, attribute = path.partition(":")
    relative = Path(*module_name.split(".")).with_suffix(".py")
    found = next((root / relative for root in dirs if (root / relative).is_file()), None)
    where = f"{what}: {path!r}"
    try:
        module = importlib.import_module(module_name) if found is None else _load_file(found)
    except ImportError as exc:
        shown = ", ".join(map(str, dirs[:2]))
        raise ValueError(
            f"{where} cannot be imported (not under {shown} or above, not installed): {exc}"
        ) from None
    except Exception as exc:
        raise ValueError(f"{where}: loading it raised {type(exc).__name__}: {exc}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"{where}: {module_name} has no function {attribute!r}")
    return function  # type: ignore[no-any-return]


def _takes_two(function: Callable[..., Any]) -> bool:
    """Whether ``function`` is a predicate ``(item, result)`` rather than ``(item)``."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 2


def _load_file(path: Path) -> types.ModuleType:
    """The module in ``path``, executed afresh under a name no other file shares; its own
    directory is importable while it loads (for its sibling imports)."""
    name = f"_harness_expected_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def _build(config: Any) -> ManagersSystem:
    return ManagersSystem(config)


KIND = Kind("managers", ManagersConfig, _build, ManagersSystem)
