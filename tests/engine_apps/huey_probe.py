"""A Huey instance from the environment and one task with one retry."""

import os

from huey import RedisHuey

from tests.engine_apps import probe_common

huey = RedisHuey("probe", url=os.environ.get("PROBE_REDIS_URL", "redis://localhost:6379"))


@huey.task(retries=1, retry_delay=0)
def probe(kind: str, marker: str) -> str:
    return probe_common.probe(kind, marker)
