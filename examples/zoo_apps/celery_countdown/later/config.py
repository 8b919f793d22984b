"""A Celery project that runs every task a few seconds after it is sent (a reminder, a
retry-later job): each message is published with an ETA. Redis broker, default
acknowledgement (an ETA task is still acknowledged only once it ran), no result backend."""

import os
from datetime import datetime, timedelta, timezone

from celery import Celery
from celery.signals import before_task_publish

COUNTDOWN_S = 3.0


def make_app(visibility_timeout_s: float) -> Celery:
    """The project's app with the given Redis visibility timeout, swept every second."""
    app = Celery("later", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"))
    app.conf.update(
        task_ignore_result=True,
        broker_transport_options={
            "visibility_timeout": visibility_timeout_s,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
    )
    return app


@before_task_publish.connect
def _run_later(headers=None, **_):
    """Every task of the project runs COUNTDOWN_S after it is sent (what apply_async's
    countdown does, for callers that send tasks by name)."""
    if headers is not None and headers.get("eta") is None:
        due = datetime.now(timezone.utc) + timedelta(seconds=COUNTDOWN_S)
        headers["eta"] = due.isoformat()
