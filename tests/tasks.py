"""Tasks for the process tests, importable by workers as ``tests.tasks:NAME``."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _first_time(marker: str) -> bool:
    """True exactly once per marker path (atomic create)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def hang_once(marker: str, value: int) -> int:
    """Hangs on its first run (until killed), returns ``value`` on later runs."""
    if _first_time(marker):
        while True:
            time.sleep(3600)
    return value


def crash_once(marker: str, value: int) -> int:
    """Hard-exits its process on the first run, returns ``value`` later."""
    if _first_time(marker):
        os._exit(9)
    return value


def touch_and_sleep(marker: str, seconds: float) -> str:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def getenv(name: str) -> str | None:
    """What a job sees of its environment (the authkey must not be there)."""
    return os.environ.get(name)
