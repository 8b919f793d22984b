"""A Dramatiq broker from the environment and one actor with one quick retry."""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from tests.engine_apps import probe_common

dramatiq.set_broker(RedisBroker(url=os.environ.get("PROBE_REDIS_URL", "redis://localhost:6379")))


@dramatiq.actor(max_retries=1, min_backoff=10, max_backoff=10)
def probe(kind: str, marker: str) -> str:
    return probe_common.probe(kind, marker)
