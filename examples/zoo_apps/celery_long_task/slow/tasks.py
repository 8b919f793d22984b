"""The project's one task: a computation that takes a while and records each run of it
(a row in a table, an e-mail sent: here, its return value names the run)."""

import os
import time

from celery import shared_task


@shared_task(name="slow.tasks.square")
def square(n, delay_s):
    time.sleep(delay_s)
    return {"square": n * n, "run": f"{os.getpid()}-{time.monotonic_ns()}"}
