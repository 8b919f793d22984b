"""The project's tasks."""

import time

from .celery import app


@app.task
def add(x, y, delay_s=0.0):
    time.sleep(delay_s)
    return x + y


@app.task(bind=True, max_retries=3, default_retry_delay=0)
def flaky(self, marker):
    """Fails on its first run (no marker file yet), then succeeds."""
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise self.retry(exc=RuntimeError("first run fails"))
    return "ok"


@app.task
def broken(x):
    raise ValueError(f"broken on {x}")
