"""A Celery app: late acknowledgement without task_reject_on_worker_lost, so a lost pool
child is reported (and its task failed) by the worker's parent."""

import os

from celery import Celery

from tests.engine_apps import probe_common

app = Celery("probe", broker=os.environ.get("BROKER", "redis://localhost:6379/0"))
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1)


@app.task(name="probe", autoretry_for=(RuntimeError,), max_retries=1, default_retry_delay=0)
def probe(kind: str, marker: str) -> str:
    return probe_common.probe(kind, marker)
