"""What the apps in this folder should compute, and how their items name their jobs: the
functions their scenarios name (``expected``, ``job_key``, ``skip``). Each takes an item as
the harness decoded it from the wire: numbers, text, lists for tuples, bytes as bytes."""

import json


def nothing(item):
    """``None``: a stop sign, not a job."""
    return item is None


def control(item):
    """A stop sign or the leading count (a number): not jobs."""
    return item is None or isinstance(item, int)


def square(n):
    return n * n


def keyed_square(item):
    """A ``(job_id, n)`` task's result: ``(job_id, n * n)``."""
    job_id, n = item
    return [job_id, n * n]


def word_length(word):
    return [word, len(word)]


def payload_id(payload):
    """The job id inside a JSON payload (bytes for a task, text for a result)."""
    return json.loads(payload)["id"]


def payload_size(payload):
    data = json.loads(payload)
    return json.dumps({"id": data["id"], "size": len(data["path"])})


def right_square(n, result):
    """A timed result is right when its square is: its pid and timing vary by run."""
    return result["n"] == n and result["square"] == n * n and result["took_s"] >= 0


def square_row(n):
    return [n, n * n]
