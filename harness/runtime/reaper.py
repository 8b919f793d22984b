"""A lifeline for a run's processes: a tiny process that outlives the harness and, when
the harness dies by any means (SIGKILL included), kills every process that carries the
run's tag in its environment, stopped ones too.

The harness holds the only write end of a pipe whose read end is the reaper's stdin; the
kernel closes it when the harness dies, whatever the signal. A clean teardown says
``done`` first, and the reaper leaves without touching anything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

__all__ = ["Reaper", "kill_tagged"]

_DONE = b"done\n"


class Reaper:
    """Starts the reaper for ``tag`` (processes with ``env_name=tag``); ``release()`` on
    a clean teardown."""

    def __init__(self, env_name: str, tag: str) -> None:
        read_end, self._write_end = os.pipe()  # both close-on-exec: no child inherits them
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


def main(argv: list[str]) -> int:
    env_name, tag = argv
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    received = b""
    while chunk := os.read(0, 64):
        received += chunk
    if received.endswith(_DONE):
        return 0
    # The harness is gone. Sweep until nothing is left: a dying parent may still fork.
    deadline = time.monotonic() + 10.0
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:
        quiet = 0 if kill_tagged(env_name, tag) else quiet + 1
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
