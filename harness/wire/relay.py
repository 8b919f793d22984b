"""The relays that watch an unmodified BaseManager app: one ``FaultProxy`` per process of
the app, all tapped by one ``WireRecorder`` that decodes every frame, writes it to the raw
frames log and turns it into history events (``master.events.jsonl``, ``<worker>.events.jsonl``).

Decoding runs on the relay's own thread, before it forwards the chunk: measured against a
queue to one decoding thread, that costs a call less (benchmarks/wire_overhead.py), and the
frames of one connection are recorded in the order they crossed.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from harness import contract
from harness.net.netns import in_namespace
from harness.net.proxy import Address, EventSink, FaultProxy, Flow, SocketPlace, Tap
from harness.wire.frames import Connection, WireFrame
from harness.wire.translate import QueueNames, WireTranslator

__all__ = ["FRAMES_LOG", "HOLD_BOUND_S", "FrameHolds", "WireRecorder", "in_host"]

_encode = msgspec.json.Encoder(enc_hook=repr).encode  # 3x json.dumps, on a relay's path

#: The raw decoded frames of a run, one JSON object a line; history events cite them by
#: ``frame`` (the line number, from 1).
FRAMES_LOG = "wire.frames.jsonl"


#: The longest a relay holds a frame for a fault (it goes on after, the fault or not).
HOLD_BOUND_S = 30.0
_HELD_EVENTS = {"job_leased": contract.LEASED}


def in_host(namespace: int) -> SocketPlace:
    """Where a relay's sockets are made on hosts of their own: inside the network namespace
    held by ``namespace`` (the serving process's host), so the workers' traffic to the
    relay crosses the lab's bridge and every kernel fault there acts on it."""

    def place(make: Callable[[], socket.socket]) -> socket.socket:
        return in_namespace(namespace, make)

    return place


class FrameHolds:
    """Frames held at their relay until a fault has acted: armed before the run by
    ``(trigger, job, attempt)``, each holds the first frame whose event fires it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[tuple[str, int], tuple[int | None, threading.Event]] = {}
        self._gates: dict[tuple[str, int], threading.Event] = {}

    def arm(self, trigger: str, job: int, attempt: int | None) -> None:
        with self._lock:
            gate = self._gates.setdefault((trigger, job), threading.Event())
            self._armed[(trigger, job)] = (attempt, gate)

    def release(self, trigger: str, job: int) -> None:
        with self._lock:
            gate = self._gates.get((trigger, job))
            self._armed.pop((trigger, job), None)
        if gate is not None:
            gate.set()

    def gate_for(self, event: dict[str, Any]) -> threading.Event | None:
        """The gate ``event`` must wait at, if it fires an armed hold (once)."""
        for trigger, ev in _HELD_EVENTS.items():
            job = event.get("job")
            if event.get("ev") != ev or not isinstance(job, int):
                continue
            with self._lock:
                armed = self._armed.get((trigger, job))
                if armed is None or armed[0] not in (None, event.get("attempt")):
                    continue
                del self._armed[(trigger, job)]
                return armed[1]
        return None


class WireRecorder:
    """Decodes and records what the relays of one run read; safe to tap from many threads."""

    def __init__(
        self, run_dir: Path, names: QueueNames, epoch: float, holds: FrameHolds | None = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.holds = holds if holds is not None else FrameHolds()
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

    def tap(self, route: str) -> Tap:
        """The tap of the relay named ``route`` (the process it stands in front of)."""

        def tap(connection: int, flow: Flow, data: bytes) -> None:
            t = time.monotonic() - self.epoch
            key = (route, connection)
            try:
                state = self._connections.get(key)
                if state is None:
                    state = self._connections[key] = Connection(route, connection)
                frames = state.feed(t, flow, data)  # decoding: on this relay's thread only
                gates = self._record(frames) if frames else []
            except Exception as exc:  # a bug here must never break the relay
                self.callback_errors.append(exc)
                return
            for gate in gates:  # the chunk goes on once the fault it fired has acted
                if not gate.wait(HOLD_BOUND_S):
                    self.write(
                        contract.MASTER, contract.HOLD_EXPIRED, route=route, bound_s=HOLD_BOUND_S
                    )

        return tap

    def relay(
        self,
        route: str,
        upstream: Address,
        seed: int,
        sink: EventSink,
        *,
        listen: Address = ("127.0.0.1", 0),
        place: SocketPlace | None = None,
    ) -> FaultProxy:
        """Start (or return) the relay for ``route`` in front of ``upstream``, listening on
        ``listen``, its sockets made by ``place`` (a lab host's, ``in_host``) if given."""
        relay = self.relays.get(route)
        if relay is None:
            relay = FaultProxy(route, seed=seed, on_event=sink, tap=self.tap(route), place=place)
            relay.start(listen, upstream=upstream)
            self.relays[route] = relay
        return relay

    def _record(self, frames: list[WireFrame]) -> list[threading.Event]:
        """Write the frames and their events; the gates of the holds they fired."""
        with self._lock:
            lines, events = [], []
            for frame in frames:
                self.frames += 1
                lines.append(_encode({"n": self.frames, **frame.record()}))
                for event in self.translator.feed(frame):
                    event["frame"] = self.frames
                    events.append(event)
            if self._frames_fd is not None:
                os.write(self._frames_fd, b"\n".join(lines) + b"\n")
            gates = []
            by_src: dict[str, list[dict[str, Any]]] = {}  # one write per log
            for event in events:
                gate = self.holds.gate_for(event)
                if gate is not None:
                    event["held"] = True
                    gates.append(gate)
                by_src.setdefault(str(event["src"]), []).append(event)
            for src, written in by_src.items():
                self._writer(src).write_all(written)
            return gates

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
        with self._lock:
            if self._frames_fd is not None:  # the first close: the run's last word
                for unseen in self.translator.unseen_typeids():
                    self._writer(contract.MASTER).write(contract.TYPEID_UNSEEN, **unseen)
                os.close(self._frames_fd)
                self._frames_fd = None
            for writer in self._writers.values():
                writer.close()
