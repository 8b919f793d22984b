"""The project's Celery application: broker and result backend from the environment."""

import os

from celery import Celery

app = Celery(
    "proj",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://localhost:6379/1"),
    include=["proj.tasks"],
)
app.conf.update(
    task_acks_late=True,  # a task whose worker dies mid-run goes back to the queue...
    task_reject_on_worker_lost=True,  # ...also when only the pool child dies
    worker_prefetch_multiplier=1,
    result_expires=3600,
)
