"""The RQ side: the config module ``rq worker -c`` loads, the job function, the client.

``rq worker`` imports this module at start (as its settings module), which is when the
worker says it joined; jobs call ``run`` in the work-horse RQ forks for each job.
"""

from __future__ import annotations

import os
from typing import Any

from harness.systems.engines.observe import execute, joined
from harness.systems.engines.settings import BROKER_URL_ENV, RqSettings, settings_from_env

REDIS_URL = os.environ.get(BROKER_URL_ENV, "")
QUEUE_NAME = "distq"

settings = settings_from_env(RqSettings)
joined("rq config module")


def run(task: str, job: int, args: list[Any]) -> dict[str, Any]:
    return execute(task, job, args)


class Client:
    """The producer's side: ``Queue.enqueue`` with a ``Retry`` policy, ``Job.fetch``."""

    def __init__(self) -> None:
        from redis import Redis
        from rq import Queue

        self.connection = Redis.from_url(REDIS_URL)
        self.queue = Queue(QUEUE_NAME, connection=self.connection)

    def submit(self, job: int, task: str, args: list[Any]) -> str:
        from rq import Retry

        retry = Retry(max=settings.retry_max) if settings.retry_max else None
        self.queue.enqueue(
            run,
            task,
            job,
            args,
            job_id=f"job-{job}",
            retry=retry,
            job_timeout=settings.job_timeout_s,
            result_ttl=-1,
            failure_ttl=3600,
        )
        return f"job-{job}"

    def poll(self, handle: str) -> tuple[bool, Any] | None:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job, JobStatus

        try:
            found = Job.fetch(handle, connection=self.connection)
        except NoSuchJobError:
            return None  # lost with the broker's data, or not there yet
        status = found.get_status()
        if status == JobStatus.FINISHED:
            value: dict[str, Any] = found.return_value() or {}
            return True, value.get("value")
        if status == JobStatus.FAILED:
            latest = found.latest_result()
            return False, (latest.exc_string or "failed")[-300:] if latest else "failed"
        return None
