"""The project's one task: send a reminder. Each run records itself (here, its return
value names the run), as a sent e-mail would."""

import os
import time

from celery import shared_task


@shared_task(name="later.tasks.remind")
def remind(n):
    return {"reminder": n, "run": f"{os.getpid()}-{time.monotonic_ns()}"}
