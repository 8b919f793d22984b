"""Toxics, the faults a ``FaultProxy`` applies to a connection, and the frame counter that
lets a toxic act at an exact boundary of the ``multiprocessing.connection`` protocol.
Pure records and a parser: no sockets, no event loop."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FLOWS", "MATCH_WINDOW", "TOXIC_KINDS", "Direction", "Flow", "FrameCounter", "Toxic"]

Direction = Literal["upstream", "downstream", "both"]
Flow = Literal["upstream", "downstream"]  # upstream: worker -> master; downstream: back
FLOWS: tuple[Flow, Flow] = ("upstream", "downstream")

#: Toxic kinds and the parameters each one takes (besides the common fields).
TOXIC_KINDS: dict[str, frozenset[str]] = {
    "latency": frozenset({"latency_ms", "jitter_ms"}),
    "bandwidth": frozenset({"rate_kbps"}),
    "slicer": frozenset({"chunk_bytes", "chunk_delay_ms"}),
    "limit_data": frozenset({"limit_bytes"}),
    "reset": frozenset({"delay_ms"}),
    "blackhole": frozenset(),
    "slow_close": frozenset({"delay_ms"}),
}
_PARAMS = sorted(set().union(*TOXIC_KINDS.values()))
_REQUIRED = {"bandwidth": "rate_kbps", "slicer": "chunk_bytes", "limit_data": "limit_bytes"}

#: Bytes of each frame's payload kept for ``frames_matching`` (a request's method name
#: sits in its first few dozen bytes).
MATCH_WINDOW = 4096


@dataclass(frozen=True, slots=True)
class Toxic:
    """One fault applied by a proxy to the connections it decides to (``probability``).

    Kinds: ``latency`` (``latency_ms`` ± uniform ``jitter_ms`` per chunk, counted from the
    chunk's arrival), ``bandwidth`` (``rate_kbps``: kilobytes of 1000 bytes per second),
    ``slicer`` (writes of ``chunk_bytes`` with ``chunk_delay_ms`` between them),
    ``limit_data`` (forward ``limit_bytes`` in the direction, then close both sides),
    ``reset`` (RST both sides, ``delay_ms`` after the toxic becomes active), ``blackhole``
    (read and swallow, never answer, never close) and ``slow_close`` (hold a close for
    ``delay_ms`` before passing it on).

    Phase: with ``after_frames=N`` the toxic stays dormant on a connection until N whole
    frames have been forwarded in ``frames_direction`` (default: the toxic's direction)
    since the toxic met the connection; it then acts from that exact frame boundary on (a
    reset fires there, or ``delay_ms`` later). With ``frames_matching``, only requests count: an upstream frame
    whose first ``MATCH_WINDOW`` payload bytes contain those bytes, or the downstream frame
    that answers it (the manager protocol is strictly request/reply after the handshake;
    replies are never matched on their own bytes: a reply to ``create`` lists the method
    names). Example: ``Toxic("cut", "reset", after_frames=1,
    frames_direction="downstream", frames_matching=b"lease")`` resets right after the first
    lease reply reached the worker.
    """

    name: str
    kind: str
    direction: Direction = "both"
    probability: float = 1.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_kbps: float = 0.0
    chunk_bytes: int = 0
    chunk_delay_ms: float = 0.0
    limit_bytes: int = 0
    delay_ms: float = 0.0
    after_frames: int | None = None
    frames_direction: Flow | None = None
    frames_matching: bytes | None = None

    def __post_init__(self) -> None:
        where = f"toxic {self.name!r}"
        if not self.name:
            raise ValueError("a toxic needs a name")
        if self.kind not in TOXIC_KINDS:
            raise ValueError(
                f"{where}: unknown kind {self.kind!r} (expected one of {', '.join(TOXIC_KINDS)})"
            )
        if self.direction not in ("upstream", "downstream", "both"):
            raise ValueError(
                f"{where}: direction {self.direction!r} is not upstream, downstream or both"
            )
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"{where}: probability {self.probability!r} is not within 0..1")
        for param in _PARAMS:
            value = getattr(self, param)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{where}: {param} = {value!r} is not a number >= 0")
            if value and param not in TOXIC_KINDS[self.kind]:
                raise ValueError(f"{where}: {param} does not apply to a {self.kind} toxic")
        required = _REQUIRED.get(self.kind)
        if required is not None and self.kind != "limit_data" and not getattr(self, required):
            raise ValueError(f"{where}: a {self.kind} toxic needs {required} > 0")
        if self.after_frames is not None and self.after_frames < 0:
            raise ValueError(f"{where}: after_frames = {self.after_frames} is negative")
        if self.frames_direction not in (None, "upstream", "downstream"):
            raise ValueError(
                f"{where}: frames_direction {self.frames_direction!r} is not upstream or downstream"
            )
        if self.after_frames and self.phase_flow is None:
            raise ValueError(
                f"{where}: a toxic in both directions with after_frames needs frames_direction"
            )
        if self.frames_matching is not None and not self.after_frames:
            raise ValueError(f"{where}: frames_matching needs after_frames >= 1")

    @property
    def phase_flow(self) -> Flow | None:
        """The direction whose frames the phase counts."""
        if self.frames_direction is not None:
            return self.frames_direction
        return None if self.direction == "both" else self.direction

    def acts_on(self, flow: Flow) -> bool:
        return self.direction in ("both", flow)

    def params(self) -> dict[str, Any]:
        """The kind's parameters and the phase, for events."""
        out: dict[str, Any] = {p: getattr(self, p) for p in sorted(TOXIC_KINDS[self.kind])}
        if self.after_frames:
            out["after_frames"] = self.after_frames
            out["frames_direction"] = self.phase_flow
            if self.frames_matching is not None:
                out["frames_matching"] = self.frames_matching.decode("latin-1")
        return out


class FrameCounter:
    """Finds the ends of ``multiprocessing.connection`` frames in a stream fed piecewise.

    A frame is a 4-byte big-endian signed length (-1: an 8-byte length follows) and the
    payload. Any other negative length marks the stream as not framed (``broken``).
    """

    def __init__(self, keep: int = MATCH_WINDOW) -> None:
        self.frames = 0
        self.broken = False
        self._keep = keep
        self._header = bytearray()
        self._header_size = 4
        self._in_payload = False
        self._remaining = 0
        self._prefix = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Return (offset just past the frame in ``data``, payload prefix) per frame ended."""
        ends: list[tuple[int, bytes]] = []
        pos, size = 0, len(data)
        while pos < size and not self.broken:
            if not self._in_payload:
                take = min(self._header_size - len(self._header), size - pos)
                self._header += data[pos : pos + take]
                pos += take
                if len(self._header) < self._header_size:
                    break
                if self._header_size == 4:
                    (length,) = struct.unpack("!i", self._header)
                    if length == -1:
                        self._header_size = 12
                        continue
                    if length < 0:
                        self.broken = True
                        break
                else:
                    (length,) = struct.unpack("!Q", self._header[4:])
                self._header.clear()
                self._header_size = 4
                self._in_payload = True
                self._remaining = length
            else:
                take = min(self._remaining, size - pos)
                room = self._keep - len(self._prefix)
                if room > 0:
                    self._prefix += data[pos : pos + min(take, room)]
                pos += take
                self._remaining -= take
            if self._in_payload and self._remaining == 0:
                self.frames += 1
                ends.append((pos, bytes(self._prefix)))
                self._prefix.clear()
                self._in_payload = False
        return ends
