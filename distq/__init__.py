"""distq: a manager/worker job queue with exactly-once results.

Layering, from the core outwards:
  errors    the errors a person can act on and their exit codes
  jobs      Job, Result, task references and the built-in tasks
  board     JobBoard, the pure state machine (no I/O, no threads, clock injected)
  events    the JSON-lines history format
  jobsfile  the jobs file format (JobSpec)
  submissions  submitter sessions on the master: windows, refusals, results routed back
  journal   the board kept in SQLite, and what a restarted master resumes from
  protocol  the manager class, proxy and client connection both sides share
  runner    the worker's child process that runs jobs under a time limit
  service   the board behind one lock: what workers and clients call
  door      the handshake door policy: per-address limits, slow-down, refusal counts
  output    the results file, one JSON line per terminal result
  server    the manager server: connections, bounded handshakes, the served callable
  master    the master process: start, READY line, main loop, shutdown, signals
  worker    leases, runs and reports jobs
  client    Submitter, for ``distq submit`` and programs that add jobs
  demo      ``distq demo``: a master and workers, one killed half-way
  cli       ``distq master | worker | submit | demo``
  __main__  ``python -m distq``
Each layer imports only from the ones above it, and only the standard library besides
(tests/test_layering.py reads this list and holds the code to it).
"""

from distq.board import JobBoard, JobState, Outcome
from distq.jobs import Job, Result, resolve_task

__all__ = ["Job", "JobBoard", "JobState", "Outcome", "Result", "resolve_task"]
__version__ = "0.1.0"
