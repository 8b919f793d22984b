"""The event vocabulary and its JSON-lines reader and writer: the history format.

One JSON object per line with ``t`` (monotonic seconds since the run's epoch), ``src``
(``master``, ``worker-2``, ``harness``), ``ev`` and the ids that apply. Every process of a
run shares one epoch through ``DISTQ_T0`` (a ``time.monotonic()`` reading, which is
system-wide on Linux), so the logs of several processes merge into one order. This is
the harness's history contract (harness/contract.py); tests/test_systems.py holds it here.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["EPOCH_ENV", "EVENT_NAMES", "TORN_MARK", "EventLog", "read_events", "run_epoch"]

EPOCH_ENV = "DISTQ_T0"
#: How a master resuming its log ends a line its killed predecessor tore (readers skip it).
TORN_MARK = "#torn"

#: Every event name distq writes. The harness adds ``fault`` and its own.
EVENT_NAMES = frozenset(
    {
        "master_ready",
        "submissions_closed",
        "master_stopped",
        "job_submitted",
        "batch_opened",
        "batch_closed",
        "leased",
        "started",
        "completed",
        "result_accepted",
        "duplicate_dropped",
        "attempt_failed",
        "stale_failure",
        "unexpected_report",
        "lease_expired",
        "requeued",
        "dead",
        "connected",
        "worker_joined",
        "worker_rejoined",
        "reconnected",
        "worker_left",
        "worker_lost",
        "worker_exit",
        "runner_killed",
        "auth_rejected",
        "handshake_timeout",
        "accept_failed",
        "fault",
    }
)


def run_epoch() -> float:
    """The run's time origin: ``DISTQ_T0`` if the spawner set it, else now."""
    raw = os.environ.get(EPOCH_ENV)
    if raw:
        try:
            return float(raw)
        except ValueError:
            pass
    return time.monotonic()


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), default=repr)


class EventLog:
    """Appends events to a JSON-lines file; a no-op when ``path`` is None.

    Each call is one ``write`` on an ``O_APPEND`` descriptor, so lines written by several
    threads or processes into the same file never interleave.
    """

    def __init__(self, path: str | os.PathLike[str] | None, src: str, epoch: float | None = None):
        self.src = src
        self.epoch = run_epoch() if epoch is None else epoch
        self.path = None if path is None else Path(path)
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.error: OSError | None = None  # the first failed write; later ones are dropped
        if self.path is not None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def now(self) -> float:
        return time.monotonic() - self.epoch

    def write(self, ev: str, **fields: Any) -> None:
        if self._fd is None:
            return
        event = {"t": round(self.now(), 6), "src": self.src, "ev": ev, **fields}
        self._write_lines([_dumps(event)])

    def write_all(self, events: Iterable[dict[str, Any]]) -> None:
        """Write events that already carry ``t`` and ``ev`` (e.g. drained from a board)."""
        if self._fd is None:
            return
        lines = []
        for event in events:
            t = event.pop("t", None)
            src = event.pop("src", self.src)
            ev = event.pop("ev", None)
            ordered = {"t": round(t, 6) if isinstance(t, float) else t, "src": src, "ev": ev}
            ordered.update(event)
            lines.append(_dumps(ordered))
        if lines:
            self._write_lines(lines)

    def _write_lines(self, lines: list[str]) -> None:
        payload = ("\n".join(lines) + "\n").encode()
        with self._lock:
            if self._fd is None or self.error is not None:
                return
            view = memoryview(payload)
            try:
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
            except OSError as exc:
                # A full disk: a caller (a worker's call, the server) must not fail for
                # it; the owner checks ``error`` and stops.
                self.error = exc

    def size(self) -> int:
        """The log's size in bytes (0 without a file)."""
        if self._fd is None:
            return 0
        return os.fstat(self._fd).st_size

    def end_torn_line(self) -> None:
        """End a last line a killed writer left unfinished with ``TORN_MARK``, so readers
        skip it instead of it swallowing the next event."""
        with self._lock:
            if self._fd is None or self.path is None:
                return
            with open(self.path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                if size == 0:
                    return
                handle.seek(size - 1)
                if handle.read(1) == b"\n":
                    return
            os.write(self._fd, f"{TORN_MARK}\n".encode())

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_events(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the events of one log. A torn last line (a process killed mid-write) is skipped."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                yield event
