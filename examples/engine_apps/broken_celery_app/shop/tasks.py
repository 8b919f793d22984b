"""Issue an invoice number. Not idempotent: each run issues a new number, so a task that
runs twice returns two different invoices for one order."""

import os
import time

from .celery import app


@app.task
def issue_invoice(order):
    time.sleep(2.0)
    return f"INV-{order}-{os.getpid()}-{time.monotonic_ns()}"
