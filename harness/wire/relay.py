"""The relays that watch an unmodified BaseManager app: one ``FaultProxy`` per process of
the app, all tapped by one ``WireRecorder`` that decodes every frame, writes it to the raw
frames log and turns it into history events (``master.events.jsonl``, ``<worker>.events.jsonl``).

A tap only stamps and queues what its relay read; one thread decodes and records, in the
order the relays read, so decoding never sits on a relayed call's path.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from harness import contract
from harness.proxy import EventSink, FaultProxy, Flow, Tap
from harness.wire.frames import Connection, WireFrame
from harness.wire.translate import QueueNames, WireTranslator

__all__ = ["FRAMES_LOG", "WireRecorder"]

#: The raw decoded frames of a run, one JSON object a line; history events cite them by
#: ``frame`` (the line number, from 1).
FRAMES_LOG = "wire.frames.jsonl"


class WireRecorder:
    """Decodes and records what the relays of one run read; safe to tap from many threads."""

    def __init__(self, run_dir: Path, names: QueueNames, epoch: float) -> None:
        self.run_dir = Path(run_dir)
        self.epoch = epoch
        self.translator = WireTranslator(names)
        self.relays: dict[str, FaultProxy] = {}
        self.frames = 0
        self.callback_errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._connections: dict[tuple[str, int], Connection] = {}
        self._writers: dict[str, contract.EventWriter] = {}
        self._frames_fd: int | None = os.open(
            self.run_dir / FRAMES_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        self._inbox: queue.SimpleQueue[tuple[str, int, Flow, bytes, float] | None] = (
            queue.SimpleQueue()
        )
        self._counter = itertools.count(1)  # next() is atomic: taps run on many threads
        self._queued = 0
        self._done = 0
        self._thread = threading.Thread(target=self._drain, name="wire-recorder", daemon=True)
        self._thread.start()

    def tap(self, route: str) -> Tap:
        """The tap of the relay named ``route`` (the process it stands in front of)."""

        def tap(connection: int, flow: Flow, data: bytes) -> None:
            self._queued = next(self._counter)
            self._inbox.put((route, connection, flow, data, time.monotonic() - self.epoch))

        return tap

    def _drain(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            route, connection, flow, data, t = item
            try:
                state = self._connections.get((route, connection))
                if state is None:
                    state = self._connections[(route, connection)] = Connection(route, connection)
                frames = state.feed(t, flow, data)
                if frames:
                    self._record(frames)
            except Exception as exc:  # a bug here must never break the relays
                self.callback_errors.append(exc)
            finally:
                self._done += 1

    def settle(self, timeout_s: float = 5.0) -> bool:
        """Wait (bounded) until everything the taps queued so far is recorded."""
        target, deadline = self._queued, time.monotonic() + timeout_s
        while self._done < target and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._done >= target

    def relay(
        self, route: str, upstream: tuple[str, int], seed: int, sink: EventSink
    ) -> FaultProxy:
        """Start (or return) the relay for ``route`` in front of ``upstream``."""
        relay = self.relays.get(route)
        if relay is None:
            relay = FaultProxy(route, seed=seed, on_event=sink, tap=self.tap(route))
            relay.start(upstream=upstream)
            self.relays[route] = relay
        return relay

    def _record(self, frames: list[WireFrame]) -> None:
        with self._lock:
            lines, events = [], []
            for frame in frames:
                self.frames += 1
                lines.append(json.dumps({"n": self.frames, **frame.record()}, default=repr))
                for event in self.translator.feed(frame):
                    event["frame"] = self.frames
                    events.append(event)
            if self._frames_fd is not None:
                os.write(self._frames_fd, ("\n".join(lines) + "\n").encode())
            for event in events:
                self._writer(str(event["src"])).write_all([event])

    def write(self, src: str, ev: str, **fields: Any) -> None:
        """An event the adapter itself knows (``master_ready``), in the same logs."""
        with self._lock:
            self._writer(src).write(ev, **fields)

    def _writer(self, src: str) -> contract.EventWriter:
        writer = self._writers.get(src)
        if writer is None:
            path = self.run_dir / contract.events_name(src)
            writer = self._writers[src] = contract.EventWriter(path, src, self.epoch)
        return writer

    def close(self) -> None:
        for relay in self.relays.values():
            relay.close()
        self._inbox.put(None)
        self._thread.join(10.0)
        with self._lock:
            if self._frames_fd is not None:
                os.close(self._frames_fd)
                self._frames_fd = None
            for writer in self._writers.values():
                writer.close()
