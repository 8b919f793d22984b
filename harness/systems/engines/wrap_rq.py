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

    #: RQ keeps every job's outcome in Redis (result_ttl, default 500 s).
    has_results = True

    def submit(self, job: int, args: list[Any]) -> str:
        from rq import Retry

        retry = Retry(max=self.retry_max) if self.retry_max else None
        self.queue.enqueue_call(
            self.task, args=args, job_id=hooks.engine_id(job), retry=retry, timeout=self.timeout_s
        )
        return hooks.engine_id(job)

    def poll(self, handle: str) -> tuple[bool, Any] | None:
        from rq.exceptions import NoSuchJobError
        from rq.job import JobStatus

        try:
            found = Job.fetch(handle, connection=self.queue.connection)
        except NoSuchJobError:
            return None  # lost with the broker's data, or not there yet
        status = found.get_status()
        if status == JobStatus.FINISHED:
            return True, found.return_value()
        if status == JobStatus.FAILED:
            latest = found.latest_result()
            return False, (latest.exc_string or "failed")[-300:] if latest else "failed"
        return None
