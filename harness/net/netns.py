"""Network namespaces held by file descriptors only, and a way to start a process inside one.

A namespace made here has no name in ``/run/netns``: it lives as long as a descriptor of
the harness or a process inside it does. A harness killed by any signal closes its
descriptors, the reaper kills the run's processes, and the kernel removes the namespace
with its links and filters: nothing is left to sweep. Standard library only.

``python -m harness.net.netns PATH -- ARGV...`` enters the namespace at ``PATH`` (the
harness's ``/proc/<pid>/fd/<fd>``) and executes ``ARGV`` there, keeping its pid.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["NamespaceError", "enter", "enter_argv", "in_namespace", "new_namespace"]

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class NamespaceError(OSError):
    """A namespace could not be made or entered (no CAP_NET_ADMIN, or no kernel support)."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise NamespaceError(errno, f"{what}: {os.strerror(errno)}")


def _in_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a thread of its own: a thread's network namespace is its own, so
    switching it never changes the namespace of the harness's other threads."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="netns")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def new_namespace() -> int:
    """A new, empty network namespace; the descriptor that holds it (close it to let go)."""

    def make() -> int:
        _check(_libc().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    return _in_thread(make)


def in_namespace(fd: int, work: Callable[[], T]) -> T:
    """Run ``work`` with the calling thread's view switched to the namespace held by
    ``fd``: sockets it opens (netlink ones included) belong to that namespace for life."""

    def run() -> T:
        _check(_libc().setns(fd, CLONE_NEWNET), "setns")
        return work()

    return _in_thread(run)


def enter_argv(fd: int, argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped to start inside the namespace this process holds with ``fd``."""
    path = f"/proc/{os.getpid()}/fd/{fd}"
    return [sys.executable, "-m", "harness.net.netns", path, "--", *argv]


def enter(path: str, argv: Sequence[str]) -> None:
    """Switch this process into the namespace at ``path`` and execute ``argv``."""
    handle = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc().setns(handle, CLONE_NEWNET), f"setns {path}")
    finally:
        os.close(handle)
    os.execvp(argv[0], list(argv))


def main(args: Sequence[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m harness.net.netns PATH -- ARGV...", file=sys.stderr)
        return 2
    try:
        enter(args[0], args[2:])
    except OSError as exc:
        print(f"cannot start {args[2]} in the namespace {args[0]}: {exc}", file=sys.stderr)
        return 126
    return 0  # not reached: execvp replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
