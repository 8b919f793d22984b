"""Outputs on filesystems of their own, so that a fault can fill one (``disk_full``).

A named output of the master (its results file, its event log) is put on a small tmpfs
mounted for the run, before the master starts: the output's path in the run directory
becomes a link to the file on it. Filling that filesystem makes the kernel refuse the
master's next write that needs room with ENOSPC, the errno of a real full disk, and
nothing else of the run is touched. Freeing the room lifts it. At teardown the file is
copied back into the run directory and the filesystem unmounted; the reaper unmounts it
if the harness dies first. Mounting needs CAP_SYS_ADMIN (root).

Why not a file-size limit (RLIMIT_FSIZE, set on the running master)? It caps every file
the process writes at one size, so it cannot name one output (the journal and the event
log, larger than the results file, would be refused first), and the kernel refuses with
EFBIG ("File too large"), which is not what a full disk says.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
from pathlib import Path

from harness.runtime.reaper import unmount

__all__ = ["DiskError", "SmallDisk", "disks_unavailable"]

#: The filesystem's size: room for any output of a scenario run; tmpfs takes memory only
#: for what is written, and the filler of a fault frees its share at once.
DISK_BYTES = 16 * 1024 * 1024
_FILLER = ".filler"


class DiskError(OSError):
    """A filesystem of the run's own could not be made; the message is one line."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _mount_tmpfs(target: Path, size_bytes: int) -> None:
    options = f"size={size_bytes},mode=0755".encode()
    if _libc().mount(b"tmpfs", os.fsencode(target), b"tmpfs", 0, options) != 0:
        code = ctypes.get_errno()
        raise DiskError(code, f"cannot mount a tmpfs on {target}: {os.strerror(code)}")


def disks_unavailable() -> str | None:
    """Why this machine cannot give a run a filesystem of its own, or None if it can."""
    probe = Path(f"/tmp/harness-disk-probe-{os.getpid()}")
    try:
        probe.mkdir(exist_ok=True)
        _mount_tmpfs(probe, 4096 * 4)
    except OSError as exc:
        return f"a full disk needs a tmpfs of the run's own (CAP_SYS_ADMIN, as root): {exc}"
    finally:
        unmount(probe)
        _rmdir_quietly(probe)
    return None


def _rmdir_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


class SmallDisk:
    """One output of the run on a tmpfs of its own: ``fill()`` it, ``free()`` it again,
    ``close()`` at teardown (the file back in the run directory, the tmpfs gone)."""

    def __init__(self, path: Path, size_bytes: int = DISK_BYTES) -> None:
        self.path = path  # the output's path in the run directory
        self.mount_point = path.parent / f".disk-{path.name.replace('.', '-')}"
        self.size_bytes = size_bytes
        self._mounted = False

    @property
    def file(self) -> Path:
        return self.mount_point / self.path.name

    def mount(self) -> None:
        """Mount the tmpfs and link the output's path to a file on it (what the output
        held so far goes with it)."""
        self.mount_point.mkdir(parents=True, exist_ok=True)
        _mount_tmpfs(self.mount_point, self.size_bytes)
        self._mounted = True
        if self.path.exists() and not self.path.is_symlink():
            shutil.copyfile(self.path, self.file)
            self.path.unlink()
        else:
            self.file.touch()
        self.path.symlink_to(self.file)

    def fill(self) -> int:
        """Take every free block of the filesystem; returns the bytes taken. Its files may
        still grow within the last block each already has, then no more."""
        taken, size = 0, 65536
        with open(self.mount_point / _FILLER, "ab", buffering=0) as filler:
            while size:
                try:
                    taken += filler.write(b"\0" * size) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    size //= 2  # the last blocks, in smaller writes
        return taken

    def free_bytes(self) -> int:
        stats = os.statvfs(self.mount_point)
        return stats.f_bavail * stats.f_frsize

    def free(self) -> None:
        """Give the room back: the output may grow again."""
        (self.mount_point / _FILLER).unlink(missing_ok=True)

    def close(self) -> None:
        """Copy the output back into the run directory in place of the link, unmount."""
        if not self._mounted:
            return
        self._mounted = False
        if self.path.is_symlink() and self.file.exists():
            copied = self.path.with_name(f".{self.path.name}.back")
            shutil.copyfile(self.file, copied)
            os.replace(copied, self.path)
        unmount(self.mount_point)
        _rmdir_quietly(self.mount_point)
