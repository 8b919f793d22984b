"""The project's broker and actors: ``dramatiq actors`` runs them. The broker URL comes
from the environment, as a deployment would give it."""

import os
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=3, min_backoff=10, max_backoff=100)
def add(x, y, delay_s=0.0):
    time.sleep(delay_s)
    return x + y


@dramatiq.actor(max_retries=3, min_backoff=10, max_backoff=100)
def flaky(marker):
    """Fails on its first run (no marker file yet), then succeeds."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first run fails")
    return "ok"


@dramatiq.actor(max_retries=0)
def broken(x):
    raise ValueError(f"broken on {x}")
