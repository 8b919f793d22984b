"""The Celery app the harness's workers load (``celery -A ... worker``) and its client side.

Settings come from the harness (``task_acks_late``, ``task_reject_on_worker_lost``,
``visibility_timeout``, ``worker_prefetch_multiplier``); results go to the same Valkey.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals
from celery.result import AsyncResult

from harness.systems.engines.observe import execute, joined
from harness.systems.engines.settings import (
    BROKER_URL_ENV,
    RESULTS_URL_ENV,
    CelerySettings,
    settings_from_env,
)

settings = settings_from_env(CelerySettings)

app = Celery(
    "distq_harness", broker=os.environ[BROKER_URL_ENV], backend=os.environ[RESULTS_URL_ENV]
)
app.conf.update(
    task_acks_late=settings.acks_late,
    task_reject_on_worker_lost=settings.reject_on_worker_lost,
    worker_prefetch_multiplier=settings.prefetch,
    broker_transport_options={
        "visibility_timeout": settings.visibility_timeout_s,
        "unacked_restore_interval": settings.unacked_restore_interval_s,
        "unacked_restore_throttle": settings.unacked_restore_throttle,
    },
    result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    result_expires=None,
)


@app.task(
    name="distq.run",
    bind=True,
    autoretry_for=(Exception,) if settings.max_retries else (),
    max_retries=settings.max_retries,
    default_retry_delay=0,
)
def run(self: Any, task: str, job: int, args: list[Any]) -> dict[str, Any]:
    return execute(task, job, args)


@signals.worker_ready.connect
def _ready(**_: Any) -> None:
    joined("celery worker_ready")


class Client:
    """The producer's side: enqueue with ``apply_async``, read ``AsyncResult``."""

    def submit(self, job: int, task: str, args: list[Any]) -> str:
        task_id = f"job-{job}"
        run.apply_async((task, job, args), task_id=task_id)
        return task_id

    def poll(self, handle: str) -> tuple[bool, Any] | None:
        """None while pending; (True, value) or (False, error) once the result is stored."""
        result = AsyncResult(handle, app=app)
        state = result.state
        if state == "SUCCESS":
            return True, result.result["value"]
        if state == "FAILURE":
            return False, repr(result.result)
        return None
