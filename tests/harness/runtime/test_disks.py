"""Outputs on filesystems of their own (disk_full): a filled one refuses the next write
that needs room with ENOSPC, a freed one takes writes again, and none outlives its run,
however the harness ends."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest

from harness.runtime.disks import SmallDisk, disks_unavailable
from tests.harness.runtime.test_reaper import HEADER, _kill_harness_then_find_leftovers

NO_DISKS = disks_unavailable()
needs_disks = pytest.mark.skipif(NO_DISKS is not None, reason=NO_DISKS or "")


def _mounted_under(path: Path) -> list[str]:
    with open("/proc/mounts", encoding="utf-8") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(str(path))]


def _write_until_refused(path: Path) -> int | None:
    """Append lines until a write fails (the rest of the file's last block, then no
    more); the errno of the refusal."""
    with open(path, "ab", buffering=0) as output:
        for _ in range(10_000):
            try:
                output.write(b'{"job": 1}\n')
            except OSError as exc:
                return exc.errno
    return None


@needs_disks
def test_a_filled_disk_refuses_the_next_write_and_a_freed_one_takes_it(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"job": 0}\n')
    disk = SmallDisk(path, size_bytes=256 * 1024)
    disk.mount()
    try:
        assert path.is_symlink()
        assert path.read_text() == '{"job": 0}\n'
        assert disk.fill() > 0
        assert disk.free_bytes() == 0
        assert _write_until_refused(path) == errno.ENOSPC
        disk.free()
        with open(path, "ab") as output:
            output.write(b'{"job": 2}\n')
    finally:
        disk.close()
    assert not path.is_symlink()
    assert path.read_bytes().endswith(b'{"job": 2}\n')
    assert _mounted_under(tmp_path) == []
    assert not disk.mount_point.exists()


DISK_FULL = (
    HEADER.replace("scenario = 1", "scenario = 2")
    + """
[system]
journal = true

[cluster]
workers = 1

[jobs]
task = "sleep"
args = [0.5]
count = 40

[[faults]]
when = { results = 1000 }
do = "disk_full"
output = "results"

[expect]
within_s = 120
"""
)


def _master_ready(runs: Path) -> bool:
    return any("master_ready" in p.read_text() for p in runs.glob("*/master.events.jsonl"))


@pytest.mark.processes
@needs_disks
def test_sigkill_of_the_harness_leaves_no_filesystem_mounted(tmp_path: Path) -> None:
    described = _kill_harness_then_find_leftovers(tmp_path, DISK_FULL, _master_ready)
    assert not described, "left behind after SIGKILL of the harness:\n" + "\n".join(described)
    deadline = time.monotonic() + 10.0
    while _mounted_under(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _mounted_under(tmp_path) == []
