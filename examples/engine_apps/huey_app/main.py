"""The project's Huey instance and tasks: ``huey_consumer main.huey`` runs them. The
Redis URL comes from the environment, as a deployment would give it."""

import os
import time

from huey import RedisHuey

huey = RedisHuey("app", url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))


@huey.task()
def add(x, y, delay_s=0.0):
    time.sleep(delay_s)
    return x + y


@huey.task(retries=2)
def flaky(marker):
    """Fails on its first run (no marker file yet), then succeeds."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first run fails")
    return "ok"


@huey.task()
def broken(x):
    raise ValueError(f"broken on {x}")
