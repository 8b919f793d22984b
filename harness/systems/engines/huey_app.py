"""The Huey side: the ``RedisHuey`` instance ``huey_consumer`` loads, the task, the client.

Huey pops a message and runs it; there is no acknowledgement to withhold, only ``retries``
for a task that raises.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from huey import RedisHuey
from huey.exceptions import TaskException

from harness.systems.engines.observe import execute, joined
from harness.systems.engines.settings import BROKER_URL_ENV, HueySettings, settings_from_env

settings = settings_from_env(HueySettings)

_url = urlsplit(os.environ[BROKER_URL_ENV])
huey = RedisHuey("distq", host=_url.hostname, port=_url.port, db=int(_url.path.strip("/") or 0))


@huey.task(retries=settings.retries, retry_delay=settings.retry_delay_s, name="distq_run")
def run(task: str, job: int, args: list[Any]) -> dict[str, Any]:
    return execute(task, job, args)


joined("huey module")


class Client:
    """The producer's side: call the task (enqueue), read ``Result.get(blocking=False)``."""

    def submit(self, job: int, task: str, args: list[Any]) -> Any:
        return run(task, job, args)

    def poll(self, handle: Any) -> tuple[bool, Any] | None:
        try:
            wrapped = handle.get(blocking=False, preserve=True)
        except TaskException as exc:
            return False, str(exc.metadata.get("error", exc))[-300:]
        if wrapped is None:
            return None
        return True, wrapped["value"]
