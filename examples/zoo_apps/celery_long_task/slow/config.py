"""A Celery project whose tasks run for seconds, on a Redis broker, acknowledging late."""

import os

from celery import Celery


def make_app(visibility_timeout_s: float) -> Celery:
    """The project's app with the given Redis visibility timeout, swept every second.

    No result backend: a caller of this project only needs the task to have run.
    """
    app = Celery("slow", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"))
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_transport_options={
            "visibility_timeout": visibility_timeout_s,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
    )
    return app
