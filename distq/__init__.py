"""distq: a manager/worker job queue with exactly-once results.

Layering, from the core outwards:
  jobs     Job, Result, task references and the built-in tasks
  board    JobBoard, the pure state machine (no I/O, no threads, clock injected)
  events   the JSON-lines history format
  protocol the manager class, proxy and client connection both sides share
  runner   the worker's child process that runs jobs under a time limit
  master   serves a board over the manager protocol
  worker   leases, runs and reports jobs
  cli      ``distq master | worker | demo``
Each layer imports only from the ones above it.
"""

from distq.board import JobBoard, JobState, Outcome
from distq.jobs import Job, Result, resolve_task

__all__ = ["Job", "JobBoard", "JobState", "Outcome", "Result", "resolve_task"]
__version__ = "0.1.0"
