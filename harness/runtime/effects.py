"""Signals on process trees, and the proof that each took effect.

A worker that runs its jobs in child processes (a pool, a work-horse, a job runner) is a
tree: a fault that reaches only its top process leaves the children working. Every process
is spawned in its own session, so its process group is its tree: one ``killpg`` reaches
them all at the same instant; a process that left the group is signalled one by one after
it, leaves first. Each fault then measures what it did (psutil): a paused tree stopped and
gained no CPU time until its resume; a killed tree is gone. The measurement is written as a
``fault_effect`` event and judged by ``fault_coverage``: a fault that did not take effect
proves nothing.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Literal

import psutil

__all__ = ["Effect", "Pause", "Scope", "pause_tree", "process_tree", "signal_tree", "verify_gone"]

#: Which processes of the target a signal reaches: its whole tree, or its top process only.
Scope = Literal["tree", "main"]
#: CPU time a stopped process may still show as gained (the kernel's accounting granularity).
_CPU_SLACK_S = 0.02
#: How long a signalled tree has to show the signal's effect (a loaded machine is slow).
EFFECT_BOUND_S = 5.0


@dataclass(frozen=True, slots=True)
class Effect:
    """What a fault measurably did: ``verified`` with the pids it reached, or why not."""

    verified: bool
    pids: tuple[int, ...]
    why: str = ""

    def record(self) -> dict[str, object]:
        fields: dict[str, object] = {"verified": self.verified, "pids": list(self.pids)}
        if self.why:
            fields["why"] = self.why
        return fields


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants, leaves first; empty when it is gone."""
    try:
        root = psutil.Process(pid)
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [*reversed(children), root]


def _reached(pid: int, scope: Scope) -> list[psutil.Process]:
    if scope == "tree":
        return process_tree(pid)
    with suppress(psutil.NoSuchProcess):
        return [psutil.Process(pid)]
    return []


def signal_tree(pid: int, signum: int, scope: Scope = "tree") -> list[psutil.Process]:
    """Send ``signum`` to ``pid`` (scope ``main``) or to its whole tree; the processes sent
    to. The tree gets one ``killpg`` (its session's group, all at once), then each process
    of it not in that group, leaves first."""
    procs = _reached(pid, scope)
    grouped: set[int] = set()
    if scope == "tree":
        with suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signum)
                grouped = {proc.pid for proc in procs if _group(proc) == pid}
    for proc in procs:  # once each: a second SIGTERM may find the first one's handler gone
        if proc.pid not in grouped:
            with suppress(psutil.Error):
                proc.send_signal(signum)
    return procs


def _group(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def _status(proc: psutil.Process) -> str:
    try:
        return str(proc.status())
    except psutil.Error:
        return psutil.STATUS_DEAD


def _gone(proc: psutil.Process) -> bool:
    return _status(proc) in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def _cpu_s(proc: psutil.Process) -> float | None:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _label(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({proc.name()})"
    except psutil.Error:
        return f"pid {proc.pid}"


def verify_gone(procs: list[psutil.Process], bound_s: float = EFFECT_BOUND_S) -> Effect:
    """Wait (bounded) until every process of ``procs`` has exited: verified, or the
    survivors named."""
    deadline = time.monotonic() + bound_s
    alive = [proc for proc in procs if not _gone(proc)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [proc for proc in alive if not _gone(proc)]
    pids = tuple(proc.pid for proc in procs)
    if not procs:
        return Effect(False, pids, "no process to kill: the target had already exited")
    if alive:
        names = ", ".join(_label(proc) for proc in alive)
        return Effect(False, pids, f"{names} still running {bound_s:g} s after the signal")
    return Effect(True, pids)


@dataclass(slots=True)
class Pause:
    """A stopped tree: what was stopped, and each process's CPU time when it stopped."""

    pid: int
    scope: Scope
    procs: list[psutil.Process]
    cpu_s: dict[int, float] = field(default_factory=dict)
    not_stopped: list[str] = field(default_factory=list)

    def verify(self) -> Effect:
        """Before the resume: every process stayed stopped, gained no CPU time, and no new
        process appeared in the tree (something that was not stopped started it)."""
        pids = tuple(proc.pid for proc in self.procs)
        if not self.procs:
            return Effect(False, pids, "no process to pause: the target had already exited")
        if self.not_stopped:
            return Effect(False, pids, f"{', '.join(self.not_stopped)} never stopped")
        problems = []
        for proc in self.procs:
            status = _status(proc)
            if status not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                problems.append(f"{_label(proc)} was running ({status})")
                continue
            before, now = self.cpu_s.get(proc.pid), _cpu_s(proc)
            if before is not None and now is not None and now - before > _CPU_SLACK_S:
                problems.append(f"{_label(proc)} gained {now - before:.2f} s of CPU")
        if self.scope == "tree":
            known = {proc.pid for proc in self.procs}
            born = [proc for proc in process_tree(self.pid) if proc.pid not in known]
            problems += [f"{_label(proc)} appeared in the tree" for proc in born]
        if problems:
            return Effect(False, pids, "; ".join(problems) + " while paused")
        return Effect(True, pids)

    def resume(self) -> None:
        """SIGCONT to every process stopped, and to the tree as it is now."""
        for proc in self.procs:
            with suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)
        signal_tree(self.pid, signal.SIGCONT, self.scope)


def pause_tree(pid: int, scope: Scope = "tree", bound_s: float = EFFECT_BOUND_S) -> Pause:
    """SIGSTOP the target (its tree by default) and wait, bounded, until each process is
    stopped; their CPU times are read then, for ``Pause.verify``."""
    procs = signal_tree(pid, signal.SIGSTOP, scope)
    pause = Pause(pid, scope, procs)
    deadline = time.monotonic() + bound_s
    waiting = list(procs)
    while waiting and time.monotonic() < deadline:
        waiting = [
            proc
            for proc in waiting
            if _status(proc)
            not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
        ]
        if waiting:
            time.sleep(0.005)
    pause.not_stopped = [_label(proc) for proc in waiting]
    if scope == "tree":  # a child forked as the signal went out: stopped by the killpg too
        known = {proc.pid for proc in procs}
        pause.procs = procs = [*procs, *(p for p in process_tree(pid) if p.pid not in known)]
    for proc in procs:
        cpu = _cpu_s(proc)
        if cpu is not None:
            pause.cpu_s[proc.pid] = cpu
    return pause
