"""What ``huey_consumer`` loads for a user's Huey app: the user's instance, with the
harness's ``pre_execute`` (``started``) and ``post_execute`` hooks (``completed``, or
``retry`` when the task has retries left). Huey has no acknowledgement and no parent that
watches a task: a killed consumer's task is seen only by its silence.
"""

from __future__ import annotations

from typing import Any

from harness.systems.engines import hooks
from harness.systems.engines.observe import joined
from harness.systems.engines.userapp import load_object, user_app

_user = user_app()
if _user is None or _user.app is None:
    raise RuntimeError("this module runs under the harness, with [system] app set")
huey = load_object(_user.app)


def _before(task: Any) -> None:
    hooks.started(hooks.job_of(task.id), task.name)


def _after(task: Any, value: Any, exception: BaseException | None) -> None:
    job = hooks.job_of(task.id)
    if exception is None:
        hooks.completed(job, value=value)
    elif task.retries:
        hooks.retried(job, exception)
    else:
        hooks.completed(job, error=exception)


huey.pre_execute(name="distq_harness_started")(_before)
huey.post_execute(name="distq_harness_completed")(_after)
joined("huey module")


class Client:
    """The producer's side: the registered task class with ``job-N`` as its id."""

    def __init__(self, task: str) -> None:
        self.task_class = huey._registry.string_to_task(task)
        # Without store_none a task that returns None stores nothing: no result to wait for.
        self.has_results = bool(huey.results and huey.store_none)

    def submit(self, job: int, args: list[Any]) -> str:
        huey.enqueue(self.task_class(tuple(args), {}, id=hooks.engine_id(job)))
        return hooks.engine_id(job)

    def poll(self, handle: str) -> tuple[bool, Any] | None:
        from huey.exceptions import TaskException

        try:
            value = huey.result(handle, preserve=True)
        except TaskException as exc:
            return False, str(exc.metadata.get("error", exc))[-300:]
        return None if value is None else (True, value)
