"""A shop's Celery app. It acknowledges late, so that a task whose worker dies runs again,
and it shortened the Redis visibility timeout to one second, so that such a task comes
back fast. But a task that runs longer than that is handed out again while it still runs."""

import os

from celery import Celery

app = Celery("shop", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"))
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_transport_options={
        "visibility_timeout": 1,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    include=["shop.tasks"],
)
