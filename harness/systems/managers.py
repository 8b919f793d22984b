"""An unmodified BaseManager app as a system under test, observed on the wire.

The scenario gives the app's master and worker command lines and names its task and result
queues; every process reaches the app through a relay of its own (``harness.wire``), the
master's own calls too (a ``sitecustomize`` on its ``PYTHONPATH``), and the relays write
the history. The app is never modified and never imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import signal
import socket
import sys
import types
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any, ClassVar

import msgspec

from harness import contract
from harness.checks import CHECKS, Expect, ExpectedFailed
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
from harness.wire.relay import WireRecorder
from harness.wire.translate import QueueNames

__all__ = ["KIND", "SITE_DIR", "UNSUPPORTED_TRIGGERS", "ManagersConfig", "ManagersSystem"]

#: The directory holding the ``sitecustomize`` the master runs with.
SITE_DIR = Path(__file__).resolve().parent.parent / "wire" / "site"
REDIRECT_ENV = "DISTQ_WIRE_REDIRECT"
STACKS_ENV = "DISTQ_WIRE_STACKS_SIGNAL"
STACKS_SIGNAL = signal.SIGUSR1

#: Triggers with no evidence on the wire: a worker starting a job says nothing to the master.
UNSUPPORTED_TRIGGERS: dict[str, str] = {
    "job_started": "a BaseManager worker says nothing on the wire when it starts a job; "
    "use job_leased (the hand-out) instead",
}
#: Actions that need something an unmodified app does not have.
UNSUPPORTED_ACTIONS: dict[str, str] = {
    "empty_key_worker": "an unmodified app has no rule about empty keys to check",
    # Raw sockets go straight to the app's port, past every relay: what the app made of
    # them leaves no trace to check (bad_handshakes goes through a relay of its own).
    "idle_sockets": "an idle socket leaves no trace on the wire or in the app",
    "garbage": "garbage bytes leave no trace on the wire or in the app",
}
PLACEHOLDERS = ("{python}", "{port}", "{authkey}")


class ManagersConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The ``[system]`` keys of ``kind = "managers"``."""

    master: Annotated[
        list[str],
        msgspec.Meta(min_length=1, description="the master's argv; {python} {port} {authkey}"),
    ]
    worker: Annotated[
        list[str], msgspec.Meta(min_length=1, description="a worker's argv; {port} is its relay's")
    ]
    tasks: Annotated[
        str, msgspec.Meta(min_length=1, description="registered typeid of the task queue")
    ]
    results: Annotated[
        str, msgspec.Meta(min_length=1, description="registered typeid of the result queue")
    ]
    cwd: Annotated[
        str, msgspec.Meta(description="where the app runs, relative to the scenario")
    ] = "."
    job_key: str | None = None
    result_key: str | None = None
    batch_size: Annotated[int, msgspec.Meta(ge=1)] | None = None
    expected: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = None
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
        if self.expected is not None:  # refused now, not after the whole run
            load_expected(self.expected, Path(self.cwd).resolve())

    env: dict[str, str] = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


class ManagersSystem:
    """One run of a BaseManager app, and the relays that watch it."""

    kind: ClassVar[str] = "managers"
    roles: ClassVar[tuple[str, ...]] = (MASTER, WORKER)
    triggers: ClassVar[frozenset[str]] = frozenset(contract.TRIGGERS) - set(UNSUPPORTED_TRIGGERS)
    actions: ClassVar[frozenset[str]] = frozenset(contract.ACTIONS) - set(UNSUPPORTED_ACTIONS)
    checks: ClassVar[frozenset[str]] = frozenset(CHECKS)
    cluster_keys: ClassVar[frozenset[str]] = frozenset()
    stacks_signal: ClassVar[int | None] = STACKS_SIGNAL
    workers_outlive_master: ClassVar[bool] = False
    binds_host: ClassVar[bool] = False

    def __init__(self, config: ManagersConfig, base_dir: Path | None = None) -> None:
        self.config = config
        #: This run's documented codes, from the scenario.
        self.exit_codes = ExitCodes(**config.exit_codes)
        cwd = Path(config.cwd)
        self.cwd = cwd if cwd.is_absolute() else (base_dir or Path.cwd()) / cwd
        self.names = QueueNames(
            config.tasks, config.results, config.job_key, config.result_key, config.batch_size
        )
        self.app_port = _free_port()
        self.recorder: WireRecorder | None = None
        self.seed = 0
        self.sink: EventSink | None = None
        self._expected: Callable[[Any], Any] | None = None

    # -- the relays ---------------------------------------------------------------------------

    def _recorder(self, setup: RunSetup) -> WireRecorder:
        if self.recorder is None:
            epoch = contract.run_epoch() if setup.epoch is None else setup.epoch
            self.recorder = WireRecorder(setup.run_dir, self.names, epoch)
        return self.recorder

    def _relay_address(self, route: str, upstream: tuple[str, int]) -> str:
        assert self.recorder is not None
        relay = self.recorder.relay(route, upstream, self.seed, self._proxy_event)
        return f"{relay.address[0]}:{relay.address[1]}"

    def _proxy_event(self, ev: str, **fields: Any) -> None:
        if self.sink is not None:
            self.sink(ev, **fields)

    # -- the System protocol ------------------------------------------------------------------

    def launch(self, process: ProcessSpec, setup: RunSetup) -> Launch:
        recorder = self._recorder(setup)
        app = ("127.0.0.1", self.app_port)
        site = os.pathsep.join(p for p in (str(SITE_DIR), os.environ.get("PYTHONPATH", "")) if p)
        env = {**self.config.env, "PYTHONPATH": site, STACKS_ENV: str(int(STACKS_SIGNAL))}
        if process.role == MASTER:
            relay = self._relay_address(MASTER, app)
            env[REDIRECT_ENV] = f"{self.app_port}={relay}"
            argv, port = self.config.master, self.app_port
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
        }
        for placeholder, value in values.items():
            argv = [part.replace(placeholder, value) for part in argv]
        return Launch(tuple(argv), env, self.cwd)

    def worker_address(self, worker: str, address: str) -> str:
        """The relay ``worker`` connects to, in front of ``address`` (the app or a proxy)."""
        host, _, port = address.rpartition(":")
        return self._relay_address(worker, (host or "127.0.0.1", int(port)))

    def ready(self, process: Process, events: Sequence[Event]) -> str | None:
        try:
            socket.create_connection(("127.0.0.1", self.app_port), timeout=1).close()
        except OSError:
            return None
        address = f"127.0.0.1:{self.app_port}"
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
        if self.config.expected is None or len(args) != 1:
            return Expect.UNKNOWN
        if self._expected is None:
            self._expected = load_expected(self.config.expected, self.cwd)
        try:
            return self._expected(args[0])
        except Exception as exc:  # the user's function: judged unknown, with the reason
            return ExpectedFailed(f"{type(exc).__name__}: {exc}"[:200])

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

    def close(self) -> None:
        self.system.close()


def load_expected(path: str, cwd: Path) -> Callable[[Any], Any]:
    """``module:function``: from a file of the app's directory or above, loaded afresh
    under a name of its own (two apps may each ship an ``expect.py``: neither is judged
    with the other's), else imported as installed. Raises ValueError (one line) when it
    cannot be found, loaded or called."""
    module_name, _, attribute = path.partition(":")
    relative = Path(*module_name.split(".")).with_suffix(".py")
    found = next(
        (root / relative for root in (cwd, *cwd.parents) if (root / relative).is_file()), None
    )
    where = f"expected: {path!r}"
    try:
        module = importlib.import_module(module_name) if found is None else _load_file(found)
    except ImportError as exc:
        raise ValueError(
            f"{where} cannot be imported (not under {cwd}, not installed): {exc}"
        ) from None
    except Exception as exc:
        raise ValueError(f"{where}: loading it raised {type(exc).__name__}: {exc}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"{where}: {module_name} has no function {attribute!r}")
    return function  # type: ignore[no-any-return]


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
