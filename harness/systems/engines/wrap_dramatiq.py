"""What ``dramatiq`` loads for a user's actors: the user's module (it builds the broker,
from the environment variable the scenario names), then a middleware placed first on that
broker. Its before hook writes ``started``; its after hook runs last (after ``Retries``
decided): ``completed``, or ``retry`` when the message was not failed for good. Dramatiq
reports no lost worker process per message: a killed one is seen only by its silence.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware, Retries

from harness.systems.engines import hooks
from harness.systems.engines.observe import joined
from harness.systems.engines.userapp import load_object, user_app

_user = user_app()
if _user is None or _user.app is None:
    raise RuntimeError("this module runs under the harness, with [system] app set")
load_object(_user.app)
broker = dramatiq.get_broker()


class HarnessMiddleware(Middleware):
    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        joined("dramatiq after_worker_boot")

    def before_process_message(self, broker: Any, message: Any) -> None:
        hooks.started(hooks.job_of(message.message_id), message.actor_name)

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        job = hooks.job_of(message.message_id)
        if exception is None:
            hooks.completed(job, value=result)
        elif not message.failed and any(isinstance(m, Retries) for m in broker.middleware):
            hooks.retried(job, exception)
        else:
            hooks.completed(job, error=exception)


broker.add_middleware(HarnessMiddleware(), before=type(broker.middleware[0]))


class Client:
    """The producer's side: a ``Message`` for the actor with ``job-N`` as its id."""

    def __init__(self, task: str) -> None:
        from dramatiq.results import Results

        self.actor = broker.get_actor(task)
        stores = [m for m in broker.middleware if isinstance(m, Results)]
        self.backend = stores[0].backend if stores else None
        default = stores[0].store_results if stores else False
        self.has_results = bool(stores) and bool(self.actor.options.get("store_results", default))

    def poll(self, handle: Any) -> tuple[bool, Any] | None:
        from dramatiq.results import ResultFailure, ResultMissing

        if self.backend is None:
            raise RuntimeError("the app's broker has no Results middleware")
        try:
            return True, self.backend.get_result(handle, block=False)
        except ResultMissing:
            return None
        except ResultFailure as exc:
            return False, str(exc)[-300:]

    def submit(self, job: int, args: list[Any]) -> Any:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=self.actor.queue_name,
            actor_name=self.actor.actor_name,
            args=tuple(args),
            kwargs={},
            options={},
            message_id=hooks.engine_id(job),
        )
        return broker.enqueue(message)
