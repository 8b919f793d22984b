"""The Dramatiq side: the broker module ``dramatiq`` loads in each worker process, the
actor, and the client (results through the ``Results`` middleware on the same Valkey).

``heartbeat_timeout`` and ``maintenance_chance`` are the RedisBroker's own knobs for how
soon a silent worker's unacknowledged messages are requeued.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import ResultFailure, ResultMissing, Results
from dramatiq.results.backends.redis import RedisBackend

from harness.systems.engines.observe import execute, joined
from harness.systems.engines.settings import (
    BROKER_URL_ENV,
    RESULTS_URL_ENV,
    DramatiqSettings,
    settings_from_env,
)

settings = settings_from_env(DramatiqSettings)

broker = RedisBroker(
    url=os.environ[BROKER_URL_ENV],
    heartbeat_timeout=int(settings.heartbeat_timeout_s * 1000),
    maintenance_chance=settings.maintenance_chance,
)
backend = RedisBackend(url=os.environ[RESULTS_URL_ENV])
broker.add_middleware(Results(backend=backend, store_results=True, result_ttl=3_600_000))
dramatiq.set_broker(broker)


@dramatiq.actor(
    actor_name="distq_run",
    queue_name="distq",
    max_retries=settings.max_retries,
    min_backoff=int(settings.min_backoff_s * 1000),
    store_results=True,
)
def run(task: str, job: int, args: list[Any]) -> dict[str, Any]:
    return execute(task, job, args)


joined("dramatiq broker module")


class Client:
    """The producer's side: ``actor.send``, ``message.get_result(block=False)``."""

    def submit(self, job: int, task: str, args: list[Any]) -> Any:
        return run.send(task, job, args)

    def poll(self, handle: Any) -> tuple[bool, Any] | None:
        try:
            return True, handle.get_result(backend=backend, block=False)["value"]
        except ResultMissing:
            return None
        except ResultFailure as exc:
            return False, str(exc)[-300:]
