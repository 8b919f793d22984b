"""Follow JSON-lines event logs while they are being written.

A follower keeps a byte offset per file and hands out only complete lines, so a reader
never sees half an event; triggers and waits are built on it. A run's follower skips
submissions: nothing in a run waits for one, and a soak run writes a million.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from harness.contract import EVENTS_GLOB, JOB_SUBMITTED, parse_line

__all__ = ["EventFollower", "RunFollower", "WaitTimeout"]

Event = dict[str, Any]


class WaitTimeout(TimeoutError):
    """A bounded wait ran out; the message says what was awaited."""


class EventFollower:
    """Incrementally reads one event log; ``events`` holds everything seen so far."""

    def __init__(self, path: Path, skip: bytes | None = None) -> None:
        self.path = path
        self.skip = skip  # lines holding this are not parsed (nor kept)
        self.events: list[Event] = []
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[Event]:
        """Read what was appended since the last call; returns the new events."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        fresh: list[Event] = []
        decode, skip = _decode, self.skip
        for line in lines:
            if skip is not None and skip in line:
                continue
            try:  # msgspec first (a master submitting a million jobs writes a million lines)
                event = decode(line)
            except msgspec.DecodeError:
                event = None
            if type(event) is not dict:
                event = parse_line(line)  # the history's reader judges a bad line, not a wait
            if event is not None:
                fresh.append(event)
        self.events.extend(fresh)
        return fresh

    def forget(self) -> None:
        """Drop the events seen so far (the run is over: its history reads the logs)."""
        self.events = []

    def cut(self) -> None:
        """The file was cut shorter while its writer was down (a fault): read on from its
        new end, which is where the writer appends next; what was seen stays seen."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self._offset:
            self._offset, self._partial = size, b""

    def wait_for(
        self,
        predicate: Callable[[Event], bool],
        timeout_s: float,
        what: str,
        *,
        alive: Callable[[], bool] | None = None,
        poll_s: float = 0.01,
    ) -> Event:
        """Block until an event matching ``predicate`` has been written (already seen ones
        count). Raises WaitTimeout after ``timeout_s``, or at once when ``alive`` says the
        writer is gone and no match arrived."""
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.poll():
                if predicate(event):
                    return event
            if alive is not None and not alive():
                for event in self.poll():
                    if predicate(event):
                        return event
                raise WaitTimeout(f"{what}: the process writing {self.path.name} exited first")
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{what}: not seen in {self.path.name} within {timeout_s:g} s")
            time.sleep(poll_s)


_decode = msgspec.json.Decoder().decode
#: A submission as the contract's writer writes it. A soak run's master writes a million
#: before it is ready; parsing them would take the CPU it needs to get there.
_SUBMITTED = b'"ev":"%s"' % JOB_SUBMITTED.encode()


class RunFollower:
    """Follows every event log of a run directory, new files included; ``events`` holds
    everything seen so far (each file in its own order) but submissions, which no trigger
    or wait of a run asks for."""

    def __init__(self, run_dir: Path, pattern: str = EVENTS_GLOB) -> None:
        self.run_dir = run_dir
        self.pattern = pattern
        self.events: list[Event] = []
        self._files: dict[Path, EventFollower] = {}

    def poll(self) -> list[Event]:
        fresh: list[Event] = []
        for path in sorted(self.run_dir.glob(self.pattern)):
            follower = self._files.get(path)
            if follower is None:
                follower = self._files[path] = EventFollower(path, skip=_SUBMITTED)
            fresh.extend(follower.poll())
        self.events.extend(fresh)
        return fresh

    def cut(self, path: Path) -> None:
        """``path`` was cut shorter while its writer was down: read on from its new end."""
        follower = self._files.get(path)
        if follower is not None:
            follower.cut()

    def forget(self) -> None:
        """Drop the events seen so far, of every file (the run is over: its history reads
        the logs); a later poll goes on from where the last one ended."""
        self.events = []
        for follower in self._files.values():
            follower.forget()
