"""What ``rq worker`` loads for a user's RQ functions: a job class whose ``perform`` (in
the work-horse) writes ``started`` and a successful ``completed``, and a worker class whose
failure handling writes ``retry`` or a failed ``completed`` and whose horse-killed handler
(in the parent) writes ``child_lost``.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job
from rq.worker import Worker

from harness.systems.engines import hooks
from harness.systems.engines.observe import joined
from harness.systems.engines.userapp import load_object, user_app

_user = user_app()
if _user is not None and _user.app is not None:
    load_object(_user.app)  # the app's settings module, as ``rq worker -c`` would


class HarnessJob(Job):
    def perform(self) -> Any:
        job = hooks.job_of(self.id)
        hooks.started(job, str(self.func_name))
        value = super().perform()
        hooks.completed(job, value=value)
        return value


class HarnessWorker(Worker):
    def register_birth(self) -> None:
        super().register_birth()
        joined("rq register_birth")

    def handle_job_failure(self, job: Job, queue: Any, *args: Any, **kwargs: Any) -> Any:
        number, error = hooks.job_of(job.id), kwargs.get("exc_string") or "failed"
        if job.retries_left:
            hooks.retried(number, error)
        else:
            hooks.completed(number, error=error)
        return super().handle_job_failure(job, queue, *args, **kwargs)

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        hooks.child_lost(hooks.job_of(job.id), f"work-horse {retpid}: waitpid status {ret_val}")
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)


class Client:
    """The producer's side: ``enqueue_call`` by dotted name, with ``job-N`` as the job id."""

    def __init__(self, task: str, url: str, queue: str, retry_max: int, timeout_s: int) -> None:
        from redis import Redis
        from rq import Queue

        self.task, self.retry_max, self.timeout_s = task, retry_max, timeout_s
        self.queue = Queue(queue, connection=Redis.from_url(url))

    def submit(self, job: int, args: list[Any]) -> None:
        from rq import Retry

        retry = Retry(max=self.retry_max) if self.retry_max else None
        self.queue.enqueue_call(
            self.task, args=args, job_id=hooks.engine_id(job), retry=retry, timeout=self.timeout_s
        )
