"""What ``celery -A ... worker`` loads for a user's Celery app: the app itself, pointed at
the harness's broker, with the harness's receivers on Celery's signals (``weak=False``: a
receiver nobody else holds must not be collected).

``task_prerun`` (in the pool child) writes ``started``; ``task_success`` and a terminal
``task_failure`` write ``completed``; ``task_retry`` writes ``retry``; a ``task_failure``
carrying ``WorkerLostError`` (sent by the parent when a pool child dies) writes
``child_lost`` too. A message a SIGKILL loses while prefetched is seen by none of them.
"""

from __future__ import annotations

import os
from typing import Any

from celery import signals
from celery.exceptions import WorkerLostError

from harness.systems.engines import hooks
from harness.systems.engines.observe import joined
from harness.systems.engines.settings import BROKER_URL_ENV, RESULTS_URL_ENV
from harness.systems.engines.userapp import load_object, user_app

_user = user_app()
if _user is None or _user.app is None:
    raise RuntimeError("this module runs under the harness, with [system] app set")
app = load_object(_user.app)
app.conf.broker_url = os.environ[BROKER_URL_ENV]
if app.conf.result_backend:  # the app stores results: in the harness's server, not its own
    app.conf.result_backend = os.environ[RESULTS_URL_ENV]


def _prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    hooks.started(hooks.job_of(task_id), getattr(task, "name", "?"))


def _success(sender: Any = None, result: Any = None, **_: Any) -> None:
    hooks.completed(hooks.job_of(sender.request.id), value=result)


def _retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    hooks.retried(hooks.job_of(getattr(request, "id", None)), str(reason))


def _failure(task_id: str = "", exception: BaseException | None = None, **_: Any) -> None:
    job = hooks.job_of(task_id)
    error = exception if exception is not None else "failed"
    if isinstance(exception, WorkerLostError):
        hooks.child_lost(job, exception)
    hooks.completed(job, error=error)


def _ready(**_: Any) -> None:
    joined("celery worker_ready")


signals.task_prerun.connect(_prerun, weak=False)
signals.task_success.connect(_success, weak=False)
signals.task_retry.connect(_retry, weak=False)
signals.task_failure.connect(_failure, weak=False)
signals.worker_ready.connect(_ready, weak=False)


class Client:
    """The producer's side: ``send_task`` by name, with ``job-N`` as the task id; the
    app's result backend read where it has one (and the task does not ignore results)."""

    def __init__(self, task: str) -> None:
        self.task = task
        app.loader.import_default_modules()  # the app's include / imports: its tasks
        ignored = app.conf.task_ignore_result or getattr(app.tasks[task], "ignore_result", False)
        self.has_results = bool(app.conf.result_backend) and not ignored

    def submit(self, job: int, args: list[Any]) -> str:
        return str(app.send_task(self.task, args=args, task_id=hooks.engine_id(job)).id)

    def poll(self, handle: str) -> tuple[bool, Any] | None:
        from celery.result import AsyncResult

        result = AsyncResult(handle, app=app)
        if result.state == "SUCCESS":
            return True, result.result
        if result.state == "FAILURE":
            return False, repr(result.result)[-300:]
        return None
