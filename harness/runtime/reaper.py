"""A lifeline for a run's processes: a tiny process that outlives the harness and, when
the harness dies by any means (SIGKILL included), kills every process of the run, stopped
ones too.

A run's process is found two ways. Every process the cluster spawns leads its own session
(``start_new_session``), and the cluster sends the reaper that session's id and its
leader's start time as it spawns: every process still in one of those sessions is the
run's, whatever it did to its memory (``valkey-server`` overwrites its environment for its
process title). And every process carries the run's tag in its environment, which finds
one that left its session (``setsid``) without rewriting its environment.

The harness holds the only write end of a pipe whose read end is the reaper's stdin; the
kernel closes it when the harness dies, whatever the signal. The harness writes one line
per spawned process, ``session SID START_TICKS``, and one per filesystem the run mounted,
``mount PATH`` (detached once the processes are gone); a clean teardown says ``done``
last, and the reaper leaves without touching anything. Standard library only: it must start
fast and run wherever the harness runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping

__all__ = ["Reaper", "kill_sessions", "kill_tagged", "process_stat", "unmount"]

_DONE = b"done\n"
_SESSION = "session"
_MOUNT = "mount "
_MNT_DETACH = 2  # umount2: detach now, freed once no file on it is open


def unmount(target: str | os.PathLike[str]) -> bool:
    """Detach the filesystem mounted on ``target``; False if there was none to detach."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return bool(libc.umount2(os.fsencode(target), _MNT_DETACH) == 0)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, session id, start time in clock ticks since boot)`` of ``pid``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    # Field 2 (the command) is in parentheses and may hold spaces: split after its end.
    fields = text[text.rfind(")") + 2 :].split()
    try:  # fields 3 (state), 6 (session) and 22 (starttime)
        return fields[0], int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return None


def process_stat(pid: int) -> tuple[int, int] | None:
    """``(session id, start time in clock ticks since boot)`` of ``pid``; None if gone.

    The start time tells a process from a later one that reuses its pid."""
    stat = _stat(pid)
    return None if stat is None else stat[1:]


class Reaper:
    """Starts the reaper for ``tag`` (processes with ``env_name=tag``); ``watch(pid)`` for
    each spawned session leader; ``release()`` on a clean teardown."""

    def __init__(self, env_name: str, tag: str) -> None:
        read_end, self._write_end = os.pipe()  # both close-on-exec: no child inherits them
        self.sessions: dict[int, int] = {}  # session id -> its leader's start ticks
        env = {k: v for k, v in os.environ.items() if k != env_name}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "harness.runtime.reaper", env_name, tag],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                # Its own session: a Ctrl-C or SIGTERM sent to the harness's process group
                # does not reach it before it has done its work.
                start_new_session=True,
            )
        finally:
            os.close(read_end)

    def watch(self, pid: int) -> None:
        """Sweep the session ``pid`` leads (or belongs to) if the harness dies.

        Called right after the spawn returns: the child has exec'd by then, so its session
        is set; a child that already exited is a zombie until waited for, still readable."""
        stat = process_stat(pid)
        if stat is None or self._write_end < 0:
            return
        session, start_ticks = stat
        if session in self.sessions or session == os.getsid(0):
            return  # known already, or the harness's own session: never swept
        self.sessions[session] = start_ticks if session == pid else 0
        with contextlib.suppress(OSError):
            os.write(self._write_end, f"{_SESSION} {session} {self.sessions[session]}\n".encode())

    def watch_mount(self, path: str | os.PathLike[str]) -> None:
        """Detach the filesystem mounted on ``path`` if the harness dies."""
        if self._write_end >= 0:
            with contextlib.suppress(OSError):
                os.write(self._write_end, f"{_MOUNT}{os.fspath(path)}\n".encode())

    def sweep(self) -> list[int]:
        """Kill, now, every process left in a watched session (the teardown's last step)."""
        return kill_sessions(self.sessions)

    def release(self) -> None:
        """The run was torn down cleanly: let the reaper go without sweeping."""
        if self._write_end < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._write_end, _DONE)
        os.close(self._write_end)
        self._write_end = -1
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=10)


def _ours(pid: int, session: int, start_ticks: int, sessions: Mapping[int, int]) -> bool:
    """Whether process ``pid`` (in ``session``, started at ``start_ticks``) is in one of
    the run's sessions and not in a later session that reuses a leader's pid."""
    leader_start = sessions.get(session)
    if leader_start is None or pid == os.getpid():
        return False
    if start_ticks < leader_start:
        return False  # older than our leader: the number was someone else's before
    if pid == session:
        return leader_start in (0, start_ticks)
    # A member: the kernel keeps a session's id from reuse while any member lives, so the
    # id is still ours unless a new leader with another start time holds it.
    leader = process_stat(session)
    return leader is None or leader[0] != session or leader_start in (0, leader[1])


def kill_sessions(sessions: Mapping[int, int]) -> list[int]:
    """SIGKILL every process (but this one) in one of ``sessions`` (id -> leader start)."""
    killed: list[int] = []
    if not sessions:
        return killed
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is None or stat[0] == "Z" or not _ours(int(entry), *stat[1:], sessions):
            continue  # gone, a zombie (dead already: its parent or init reaps it), or not ours
        with contextlib.suppress(OSError):
            os.kill(int(entry), signal.SIGKILL)  # works on a stopped process too
            killed.append(int(entry))
    return killed


def kill_tagged(env_name: str, tag: str) -> list[int]:
    """SIGKILL every process (but this one) whose environment holds ``env_name=tag``."""
    needle = f"{env_name}={tag}".encode()
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        if needle in variables:
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGKILL)  # works on a stopped process too
                killed.append(int(entry))
    return killed


def _parse(received: bytes) -> tuple[dict[int, int], list[str], bool]:
    """The sessions and mounts announced on the pipe, and whether the harness said ``done``."""
    sessions: dict[int, int] = {}
    mounts: list[str] = []
    lines = received.split(b"\n")
    for line in lines:
        text = line.decode(errors="surrogateescape")
        if text.startswith(_MOUNT):
            mounts.append(text[len(_MOUNT) :])
            continue
        words = text.split()
        if len(words) == 3 and words[0] == _SESSION and words[1].isdigit() and words[2].isdigit():
            sessions[int(words[1])] = int(words[2])
    return sessions, mounts, received.endswith(_DONE)


def main(argv: list[str]) -> int:
    env_name, tag = argv
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    received = b""
    while chunk := os.read(0, 4096):
        received += chunk
    sessions, mounts, done = _parse(received)
    if done:
        return 0
    # The harness is gone. Sweep until nothing is left: a dying parent may still fork.
    deadline = time.monotonic() + 10.0
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:
        killed = kill_sessions(sessions) + kill_tagged(env_name, tag)
        quiet = 0 if killed else quiet + 1
        time.sleep(0.05)
    for path in mounts:
        unmount(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
