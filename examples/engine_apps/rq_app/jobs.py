"""The project's job functions. RQ runs any importable function: the worker imports this
module by the dotted name a job was enqueued with (``jobs.add``)."""

import os
import time


def add(x, y, delay_s=0.0):
    time.sleep(delay_s)
    return x + y


def flaky(marker):
    """Fails on its first run (no marker file yet), then succeeds."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first run fails")
    return "ok"


def broken(x):
    raise ValueError(f"broken on {x}")
