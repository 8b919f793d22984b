"""The results output: each terminal result as one JSON line, written as the board
produces it and flushed by the master's main loop."""

from __future__ import annotations

import json
import threading
from json.encoder import encode_basestring_ascii
from typing import TextIO

from distq.jobs import Result

__all__ = ["ResultSink", "result_line"]


def result_line(result: Result) -> str:
    """``json.dumps(result.to_json_dict(), default=repr) + "\\n"``, byte for byte.

    Built directly when the value is an int, a str or None and the strings are strings
    (nearly always): the stock path costs a few microseconds per line, more than the
    board spends on the job.
    """
    value, error, worker = result.value, result.error, result.worker
    kind = type(value)
    if kind is int:
        value_json = f"{value}"
    elif kind is str:
        value_json = _encode_str(value)
    elif value is None:
        value_json = "null"
    else:
        return _encode_json(result.to_json_dict()) + "\n"
    if type(worker) is not str or not (error is None or type(error) is str):
        return _encode_json(result.to_json_dict()) + "\n"
    return (
        f'{{"job": {result.job_id}, "ok": {"true" if result.ok else "false"}, '
        f'"value": {value_json}, "error": {"null" if error is None else _encode_str(error)}, '
        f'"worker": {_encode_str(worker)}, "attempt": {result.attempt}}}\n'
    )


_encode_json = json.JSONEncoder(default=repr).encode  # json.dumps would build one per call
_encode_str = encode_basestring_ascii  # what that encoder uses for every string


class ResultSink:
    """Terminal results as JSON lines, written by the main loop's ``flush`` and at exit.

    A write that fails (a full disk) never reaches the worker that reported: the lines
    not known to be written are kept in ``unwritten`` and the failure in ``error``, so
    the master can stop and hand them over instead of losing them.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.count = 0
        self.failed = 0
        self.unwritten: list[str] = []
        self.error: OSError | None = None
        # Results come from the server's threads, flushes from the main loop.
        self._lock = threading.Lock()

    def __call__(self, results: list[Result]) -> None:
        lines = [result_line(result) for result in results]
        with self._lock:
            self.count += len(results)
            self.failed += sum(not result.ok for result in results)
            self.unwritten.extend(lines)

    def flush(self) -> None:
        with self._lock:
            if self.error is not None or not self.unwritten:
                return
            try:
                self.stream.write("".join(self.unwritten))
                self.stream.flush()
            except OSError as exc:
                self.error = exc
            else:
                self.unwritten.clear()
