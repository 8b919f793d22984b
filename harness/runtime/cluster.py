"""Spawn a system's processes as real processes on loopback, and tear them all down.

What to run comes from the system under test (``harness.systems``); each process runs in
its own session, with its log and its event log in one run directory, and carries the
run's tag in its environment; a final sweep finds anything that escaped by its tag or by
its session (the reaper records each session as it is spawned). Teardown kills
whole process trees leaves first: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from harness import systems
from harness.contract import EPOCH_ENV, EVENTS_ENV, PROCESS_ENV, events_name
from harness.follow import EventFollower, RunFollower, WaitTimeout
from harness.net.hosts import Lab
from harness.net.proxy import FaultProxy
from harness.net.toxics import Toxic
from harness.runtime.disks import SmallDisk
from harness.runtime.effects import process_tree
from harness.runtime.reaper import Reaper
from harness.systems import MASTER, WORKER, Observer, ProcessSpec, RunSetup, System
from harness.systems.base import format_address, parse_address

__all__ = ["TAG_ENV", "Cluster", "ClusterError", "Proc", "kill_tree", "sweep"]

TAG_ENV = "DISTQ_HARNESS_TAG"
#: ``argv[0]`` names that mean the interpreter running the harness (its venv, its version).
PYTHON_NAMES = frozenset({"python", "python3"})


class ClusterError(RuntimeError):
    """The cluster could not be brought up. ``summary`` is one line (what and why, with
    the last line of the process's log); the message adds the log's tail."""

    def __init__(self, summary: str, log_tail: str = "") -> None:
        super().__init__(f"{summary}\n--- log ---\n{log_tail}" if log_tail else summary)
        self.summary = summary
        self.log_tail = log_tail


@dataclass(slots=True)
class Proc:
    """One spawned process of the cluster."""

    name: str
    role: str  # "master" | "worker" | "broker" (harness.systems)
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    events_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout_s: float) -> int:
        """Wait for exit; raises WaitTimeout (the process keeps running)."""
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self.name} still running after {timeout_s:g} s") from None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _can_answer(proc: psutil.Process) -> bool:
    """Whether a process can run a signal handler now (not stopped, not a zombie)."""
    try:
        return proc.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _wait_grown_then_quiet(logs: dict[str, tuple[Path, int]], wait_s: float) -> None:
    """Wait, at most ``wait_s``, until every log is larger than its given size and none has
    grown for a moment (a stack dump is written in many small pieces)."""
    deadline = time.monotonic() + wait_s
    sizes = {name: size for name, (_, size) in logs.items()}
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        now_sizes = {name: _size(path) for name, (path, _) in logs.items()}
        if now_sizes != sizes:
            sizes, quiet_since = now_sizes, time.monotonic()
        grown = all(now_sizes[name] > size for name, (_, size) in logs.items())
        if grown and time.monotonic() - quiet_since >= 0.2:
            return
        time.sleep(0.02)


def _gone(proc: psutil.Process) -> bool:
    """Exited, or a zombie: an orphan waits for PID 1 to reap it, which may take seconds."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait (bounded) until every process has exited; returns those still running."""
    deadline = time.monotonic() + timeout_s
    alive = [proc for proc in procs if not _gone(proc)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [proc for proc in alive if not _gone(proc)]
    return alive


def kill_tree(pid: int, grace_s: float = 2.0) -> None:
    """SIGTERM a process tree leaves first, SIGKILL what survives ``grace_s``.

    A stopped (SIGSTOP) process cannot act on SIGTERM, so it is continued first.
    """
    procs = process_tree(pid)
    for proc in procs:
        with suppress(psutil.Error):
            if proc.status() == psutil.STATUS_STOPPED:
                proc.send_signal(signal.SIGCONT)
            proc.terminate()
    for proc in wait_gone(procs, grace_s):
        with suppress(psutil.Error):
            proc.kill()
    wait_gone(procs, grace_s)


def stop_gracefully(pid: int, grace_s: float = 5.0) -> None:
    """SIGTERM only the process itself (a worker hands its leases back and stops its job
    process), then kill whatever of its tree is left after ``grace_s``."""
    procs = process_tree(pid)
    with suppress(psutil.Error):
        root = psutil.Process(pid)
        if root.status() == psutil.STATUS_STOPPED:
            root.send_signal(signal.SIGCONT)
        root.terminate()
    wait_gone(procs[-1:], grace_s)
    for proc in wait_gone(procs, 0):
        with suppress(psutil.Error):
            proc.kill()
    wait_gone(procs, grace_s)


def tagged(tag: str) -> Iterator[psutil.Process]:
    """Every live process whose environment carries ``tag``."""
    for proc in psutil.process_iter(["pid"]):
        with suppress(psutil.Error):
            if proc.environ().get(TAG_ENV) == tag:
                yield proc


def sweep(tag: str) -> list[int]:
    """Kill every process still carrying ``tag``; returns their pids."""
    found = [proc for proc in tagged(tag) if not _gone(proc)]
    for proc in found:
        with suppress(psutil.Error):
            proc.kill()
    wait_gone(found, 5)
    return [proc.pid for proc in found]


def _sweep_sessions(reaper: Reaper) -> list[int]:
    """Kill what is left in the run's sessions (a process that erased its tag); the pids."""
    found = []
    for pid in reaper.sweep():
        with suppress(psutil.Error):
            found.append(psutil.Process(pid))
    wait_gone(found, 5)
    return [proc.pid for proc in found]


class Cluster:
    """A system's processes, as a context manager that always tears everything down.

    ``system`` says what to run (default: ``systems.default_system()``); ``master_args`` are extra arguments of
    its master (``--task square --count 50`` for distq), ``jobs_path`` and ``settings``
    (the scenario's ``[cluster]`` table) the run's workload and knobs, ``worker_args``
    extra arguments of every worker.
    """

    def __init__(
        self,
        run_dir: Path,
        master_args: Sequence[str] = (),
        *,
        system: System | None = None,
        jobs_path: Path | None = None,
        settings: Mapping[str, Any] | None = None,
        worker_args: Sequence[str] = (),
        authkey: bytes | None = None,
        ready_timeout_s: float = 30.0,
        grace_s: float = 2.0,
        env: dict[str, str] | None = None,
        proxy_seed: int | None = None,
        initial_toxics: Sequence[tuple[Toxic, frozenset[str]]] = (),
        lab: Lab | None = None,
        small_disks: Sequence[str] = (),
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.system = system if system is not None else systems.default_system()
        self.authkey = authkey if authkey is not None else secrets.token_hex(16).encode()
        self.epoch = time.monotonic()
        self.setup = RunSetup(
            run_dir=self.run_dir,
            jobs_path=jobs_path,
            cluster=dict(settings or {}),
            master_args=tuple(master_args),
            worker_args=tuple(worker_args),
            authkey=self.authkey,
            results_path=self.results_path,
            epoch=self.epoch,
        )
        self.ready_timeout_s = ready_timeout_s
        self.grace_s = grace_s
        self.tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._base_env = dict(os.environ if env is None else env)
        self.procs: dict[str, Proc] = {}
        self.retired: list[Proc] = []  # processes replaced by a restart
        self.master: Proc | None = None
        self.addresses: dict[str, str] = {}  # role -> HOST:PORT, once ready
        self.master_events = EventFollower(self.events_path(MASTER))
        self.run_events = RunFollower(self.run_dir)
        self._next_worker = 1
        # Network faults: with a proxy seed, each worker reaches the master through its
        # own FaultProxy (named after the worker), so toxics can target one worker.
        self.proxy_seed = proxy_seed
        self.initial_toxics = list(initial_toxics)  # (toxic, workers it applies to; empty: all)
        self.proxies: dict[str, FaultProxy] = {}
        self.observers: list[Observer] = []
        #: Processes the harness stopped at the end the way their users do (name -> signal).
        self.stopped_at_end: dict[str, str] = {}
        self.on_proxy_event: Callable[..., None] | None = None
        # Kills the run's processes if this process dies before its teardown (SIGKILL too).
        self._reaper: Reaper | None = None
        # Hosts of their own: each process starts inside its host (named after it), and its
        # spec carries the host's address. The lab outlives the cluster (its owner closes it).
        self.lab = lab
        # Outputs of the master ("results", "events") on a filesystem of their own, which
        # a disk_full fault fills; mounted before the master starts.
        self.disks = {output: SmallDisk(self.output_path(output)) for output in small_disks}

    # -- paths ------------------------------------------------------------------------------

    @property
    def results_path(self) -> Path:
        return self.run_dir / "results.jsonl"

    def events_path(self, name: str) -> Path:
        return self.run_dir / events_name(name)

    def output_cut(self, path: Path) -> None:
        """A fault cut ``path`` (an output) shorter while the master was down: the
        followers of an event log read on from its new end."""
        self.run_events.cut(path)
        if path == self.events_path(MASTER):
            self.master_events.cut()

    def output_path(self, output: str) -> Path:
        """The path of the master's output named ``output``: ``results`` or ``events``."""
        if output == "results":
            return self.results_path
        if output == "events":
            return self.events_path(MASTER)
        raise ValueError(f"no output {output!r} (expected results or events)")

    @property
    def address(self) -> str | None:
        """The master's address, once it is ready."""
        return self.addresses.get(MASTER)

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            for disk in self.disks.values():
                if self._reaper is None:
                    self._reaper = Reaper(TAG_ENV, self.tag)
                disk.mount()
                self._reaper.watch_mount(disk.mount_point)
            self.observers = list(self.system.observers(self.setup, self._proxy_event))
            # A system may run fewer roles than its kind knows (an app without a server).
            for role in getattr(self.system, "run_roles", self.system.roles):
                if role != WORKER:
                    self.start_role(role)
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()

    def env(self) -> dict[str, str]:
        env = dict(self._base_env)
        env[TAG_ENV] = self.tag
        env[EPOCH_ENV] = repr(self.epoch)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, spec: ProcessSpec, setup: RunSetup) -> Proc:
        if self._reaper is None:
            self._reaper = Reaper(TAG_ENV, self.tag)
        launch = self.system.launch(spec, setup)
        argv = list(launch.argv)
        if argv and argv[0] in PYTHON_NAMES:
            argv[0] = sys.executable  # the interpreter running the harness, not one on PATH
        if self.lab is not None:
            argv = self.lab.enter_argv(spec.name, argv)
        log_path = self.run_dir / f"{spec.name}.log"
        process_env = {PROCESS_ENV: spec.name, EVENTS_ENV: str(spec.events_path)}
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env(), **process_env, **launch.env},
                cwd=launch.cwd or self.run_dir,
                start_new_session=True,
            )
        self._reaper.watch(popen.pid)  # its session is swept even if it erases its tag
        proc = Proc(spec.name, spec.role, argv, popen, log_path, spec.events_path)
        previous = self.procs.get(spec.name)
        if previous is not None:
            self.retired.append(previous)
        self.procs[spec.name] = proc
        return proc

    def _spec(
        self, role: str, name: str, authkey: bytes, addresses: Mapping[str, str]
    ) -> ProcessSpec:
        if self.lab is None:
            host, namespace = None, None
        else:
            made = self.lab.host(name)
            host, namespace = made.address, made.fd
        path = self.events_path(name)
        return ProcessSpec(role, name, path, dict(addresses), authkey, host, namespace)

    def start_role(self, role: str, extra_args: Sequence[str] = ()) -> Proc:
        """Start the one process of a non-worker role and wait until the system calls it
        ready; its address is then in ``addresses``."""
        setup = self.setup
        if role == MASTER and extra_args:
            setup = replace(setup, master_args=(*setup.master_args, *extra_args))
        proc = self._spawn(self._spec(role, role, self.authkey, self.addresses), setup)
        if role == MASTER:
            self.master = proc
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            self.run_events.poll()
            address = self._ready(proc)
            if address is not None:
                break
            why = None
            if not proc.alive():
                self.run_events.poll()
                address = self._ready(proc)
                if address is not None:
                    break
                why = f"the {role} exited with code {proc.returncode} before it was ready"
            elif time.monotonic() >= deadline:
                why = f"the {role} was not ready within {self.ready_timeout_s:g} s"
            if why is not None:
                tail = proc.log_tail()
                last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
                said = f"; its log ends: {last.strip()[:300]}" if last else "; its log is empty"
                raise ClusterError(f"{why}{said} ({proc.log_path})", tail)
            time.sleep(0.01)
        self.addresses[role] = address
        if role == MASTER:
            for proxy in self.proxies.values():  # a restarted master listens on a new port
                proxy.set_upstream(parse_address(address))
            for observer in self.observers:
                observer.master_ready(address)
        return proc

    def _ready(self, proc: Proc) -> str | None:
        """The system's readiness check, asked from inside the process's host if it has one."""
        if self.lab is None:
            return self.system.ready(proc, self.run_events.events)
        return self.lab.run_in(proc.name, lambda: self.system.ready(proc, self.run_events.events))

    def start_master(self, extra_args: Sequence[str] = ()) -> Proc:
        return self.start_role(MASTER, extra_args)

    def restart_master(self, while_down: Callable[[], None] | None = None) -> Proc:
        """SIGKILL the master and start it again, calling ``while_down`` in between (a file
        fault). The system sees the address it had (``ProcessSpec.addresses``), so it can
        bind it again for rejoining workers."""
        if self.master is None:
            raise ClusterError("no master was started")
        self.signal(MASTER, signal.SIGKILL)
        self.master.popen.wait()
        if while_down is not None:
            while_down()
        return self.start_master()

    def add_worker(
        self,
        name: str | None = None,
        *,
        authkey: bytes | None = None,
        extra_args: Sequence[str] = (),
        wait_joined: bool = False,
        direct: bool = False,
    ) -> Proc:
        """Start a worker; through its own fault proxy when the cluster has proxies,
        unless ``direct``."""
        if self.address is None:
            raise ClusterError("start the master before adding workers")
        if name is None:
            name = f"worker-{self._next_worker}"
            self._next_worker += 1
        connect = self.address
        if self.proxy_seed is not None and not direct:
            connect = format_address(self._proxy_for(name).address)
        for observer in self.observers:
            connect = observer.worker_address(name, connect)
        addresses = {**self.addresses, MASTER: connect}
        key = self.authkey if authkey is None else authkey
        setup = replace(self.setup, worker_args=(*self.setup.worker_args, *extra_args))
        proc = self._spawn(self._spec(WORKER, name, key, addresses), setup)
        if wait_joined:
            self.wait_joined(name)
        return proc

    def _proxy_for(self, name: str) -> FaultProxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            assert self.address is not None and self.proxy_seed is not None
            tap = getattr(self.system, "proxy_tap", None)  # a system that reads its links
            proxy = FaultProxy(
                name,
                seed=self.proxy_seed,
                on_event=self._proxy_event,
                tap=tap(name) if callable(tap) else None,
            )
            proxy.start(upstream=parse_address(self.address))
            for toxic, workers in self.initial_toxics:
                if not workers or name in workers:
                    proxy.add_toxic(toxic)
            self.proxies[name] = proxy
        return proxy

    def _proxy_event(self, ev: str, **fields: object) -> None:
        if self.on_proxy_event is not None:
            self.on_proxy_event(ev, **fields)

    def wait_joined(self, name: str, timeout_s: float = 30.0) -> None:
        proc = self.procs[name]
        deadline = time.monotonic() + timeout_s
        while not self.joined(name):
            if not proc.alive() and not self.joined(name):
                why = f"{name} joining: it exited first"
            elif time.monotonic() >= deadline:
                why = f"{name} joining: not seen within {timeout_s:g} s"
            else:
                time.sleep(0.01)
                continue
            raise ClusterError(f"{why}\n--- {name} log ---\n{proc.log_tail()}")

    def joined(self, name: str) -> bool:
        """Whether worker ``name`` has joined the master (the system says, from the events)."""
        self.run_events.poll()
        return self.system.joined(name, self.run_events.events)

    def workers(self) -> list[Proc]:
        return [p for p in self.procs.values() if p.role == WORKER]

    def signal(self, name: str, signum: int) -> None:
        """Send ``signum`` to one process (not its children: that is the fault)."""
        with suppress(ProcessLookupError):
            os.kill(self.procs[name].pid, signum)

    def kill_processes(self, name: str, *, children_only: bool = False) -> list[int]:
        """SIGKILL a process's whole tree at once (or only what is under it); the pids.

        The whole tree is its session's process group (every process is spawned in a new
        session): one ``killpg`` stops them all at the same instant, so none reacts to
        another's death. What left the group is killed one by one after it."""
        pid = self.procs[name].pid
        procs = process_tree(pid)
        if children_only:
            procs = procs[:-1]
        else:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for proc in procs:
            with suppress(psutil.Error):
                proc.kill()
        return [proc.pid for proc in procs]

    def restart_role(self, role: str) -> Proc:
        """Crash and restart the one process of a non-worker role (a broker): SIGKILL, then
        start it again as the system launches it and wait until it is ready."""
        old = self.procs[role]
        self.signal(role, signal.SIGKILL)
        old.popen.wait()
        return self.start_role(role)

    def restart_worker(self, name: str, **kwargs: object) -> Proc:
        """Stop a worker as an operator would (SIGTERM: it hands its leases back), then
        start a new one under the same name."""
        old = self.procs[name]
        if old.alive():
            stop_gracefully(old.pid, max(self.grace_s, 5.0))
        old.popen.wait()
        return self.add_worker(name, **kwargs)  # type: ignore[arg-type]

    def wait_master(self, timeout_s: float) -> int:
        if self.master is None:
            raise ClusterError("no master was started")
        return self.master.wait(timeout_s)

    def dump_stacks(self, wait_s: float = 2.0) -> list[str]:
        """Ask every live process of the run (and its children) to write its Python stacks
        into its log, on the system's ``stacks_signal``; returns the names asked (none when
        the system has no such signal).

        A worker and its job process share one log, so the processes of one log are asked
        one at a time: each is given up to ``wait_s`` to make the log grow, then a quiet
        moment, before the next is asked. Otherwise a slow process's dump could still be
        pending when the tree is torn down (and be lost), or interleave with another's.
        Logs are served in parallel; stopped processes are skipped (they cannot answer)."""
        stacks_signal = self.system.stacks_signal
        if stacks_signal is None:
            return []
        pending: dict[str, list[psutil.Process]] = {}
        paths: dict[str, Path] = {}
        for proc in [*self.procs.values(), *self.retired]:
            if proc.alive():
                members = [m for m in process_tree(proc.pid) if _can_answer(m)]
                if members:
                    pending[proc.name], paths[proc.name] = members, proc.log_path
        asked = sorted(pending)
        while pending:
            sizes = {name: _size(paths[name]) for name in pending}
            for members in pending.values():
                with suppress(psutil.Error):
                    members.pop().send_signal(stacks_signal)
            _wait_grown_then_quiet({n: (paths[n], sizes[n]) for n in pending}, wait_s)
            pending = {name: members for name, members in pending.items() if members}
        return asked

    def _stop_serving(self) -> None:
        """Stop what serves until told (``stop_signals``: role -> signal, from the system)
        the way its users stop it, and give it the grace to finish by itself."""
        stops: Mapping[str, int] = getattr(self.system, "stop_signals", {})
        for proc in self.procs.values():
            signum = stops.get(proc.role)
            if signum is None or not proc.alive():
                continue
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signum)
            with suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=self.grace_s)
                self.stopped_at_end[proc.name] = signal.Signals(signum).name

    def close_proxies(self) -> None:
        """Close every proxy: each connection still open is cut, and what its toxics did
        to it is recorded (idempotent)."""
        for proxy in self.proxies.values():
            proxy.close()

    def teardown(self) -> list[int]:
        """Kill every process tree of the run, close the proxies, then sweep for escaped
        tagged processes. Returns the pids found by the sweep."""
        self._stop_serving()
        for proc in [*self.procs.values(), *self.retired]:
            if proc.alive():
                kill_tree(proc.pid, self.grace_s)
            with suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=self.grace_s)
        self.close_proxies()
        codes = {name: proc.returncode for name, proc in self.procs.items()}
        for observer in self.observers:
            ended = getattr(observer, "processes_ended", None)
            if callable(ended):  # how each process ended, before its observer closes
                ended(codes, dict(self.stopped_at_end))
            observer.close()
        swept = sweep(self.tag)
        for disk in self.disks.values():
            disk.close()  # its processes are gone: the output goes back to the run directory
        if self._reaper is not None:
            swept += _sweep_sessions(self._reaper)
            self._reaper.release()
            self._reaper = None
        return swept
