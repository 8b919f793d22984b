"""Frames of the manager protocol as a relay sees them: framing, handshake, request/reply.

One ``Connection`` per relayed TCP connection turns the chunks a ``FaultProxy`` tap reads
into ``WireFrame`` records: the six handshake frames, then requests (client to server)
and replies (server to client), each decoded safely and paired with its request (FIFO).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from harness.net.toxics import Flow, FrameCounter
from harness.wire.decode import MAX_DECODED_BYTES, decode_payload

__all__ = ["HANDSHAKE_FRAMES", "Connection", "FrameKind", "WireFrame", "replay"]

FrameKind = Literal["challenge", "answer", "welcome", "failure", "request", "reply", "end"]

#: Frames each direction spends on the handshake (challenge, answer, verdict; both ways).
HANDSHAKE_FRAMES = 3


@dataclass(frozen=True, slots=True)
class WireFrame:
    """One frame read by a relay (or ``end``: that side closed).

    ``request``: the request a reply answers. ``client_gone``: a reply read after the
    client had already closed its side: it can never be delivered.
    """

    t: float
    route: str
    connection: int
    flow: Flow
    kind: FrameKind
    size: int = 0
    value: Any = None
    request: WireFrame | None = None
    client_gone: bool = False

    @property
    def method(self) -> str | None:
        """A request's method name (of the request it answers, for a reply)."""
        frame = self if self.kind == "request" else self.request
        if frame is None or not isinstance(frame.value, list) or len(frame.value) != 4:
            return None
        name = frame.value[1]
        return name if isinstance(name, str) else None

    @property
    def ident(self) -> str | None:
        """The id of the server object a request (or its reply) addresses; None: the server."""
        frame = self if self.kind == "request" else self.request
        if frame is None or not isinstance(frame.value, list) or len(frame.value) != 4:
            return None
        ident = frame.value[0]
        return ident if isinstance(ident, str) else None

    @property
    def args(self) -> list[Any]:
        frame = self if self.kind == "request" else self.request
        if frame is None or not isinstance(frame.value, list) or len(frame.value) != 4:
            return []
        args = frame.value[2]
        return args if isinstance(args, list) else []

    @property
    def reply_kind(self) -> str | None:
        """``#RETURN``, ``#ERROR``, ``#TRACEBACK``, ``#PROXY`` ... for a reply."""
        if self.kind != "reply" or not isinstance(self.value, list) or len(self.value) != 2:
            return None
        kind = self.value[0]
        return kind if isinstance(kind, str) else None

    @property
    def result(self) -> Any:
        return self.value[1] if self.reply_kind is not None else None

    def record(self) -> dict[str, Any]:
        """As written to the raw frames log."""
        out: dict[str, Any] = {
            "t": round(self.t, 6),
            "route": self.route,
            "connection": self.connection,
            "flow": self.flow,
            "kind": self.kind,
            "size": self.size,
        }
        if self.value is not None:
            out["value"] = self.value
        if self.client_gone:
            out["client_gone"] = True
        return out


def _handshake_kind(payload: bytes) -> FrameKind:
    if payload.startswith(b"#CHALLENGE#"):
        return "challenge"
    if payload.startswith(b"#WELCOME#"):
        return "welcome"
    if payload.startswith(b"#FAILURE#"):
        return "failure"
    return "answer"


def _handshake_value(kind: FrameKind, payload: bytes) -> Any:
    if kind == "challenge":  # 3.12+: b"#CHALLENGE#{sha256}" + nonce; before: 20 random bytes
        rest = payload[len(b"#CHALLENGE#") :]
        end = rest.find(b"}")
        named = rest[:1] == b"{" and end > 0 and len(rest) > 20
        return {"digest": rest[1:end].decode("ascii", "replace") if named else "md5"}
    return None


class Connection:
    """The frames of one relayed connection, in both directions."""

    def __init__(self, route: str, index: int) -> None:
        self.route = route
        self.index = index
        self.counters: dict[Flow, FrameCounter] = {
            "upstream": FrameCounter(keep=MAX_DECODED_BYTES + 1),
            "downstream": FrameCounter(keep=MAX_DECODED_BYTES + 1),
        }
        self.pending: list[WireFrame] = []  # requests not answered yet, oldest first
        self.client_closed = False
        self.server_closed = False

    def feed(self, t: float, flow: Flow, data: bytes) -> list[WireFrame]:
        """The frames that ``data`` completed (an ``end`` frame for empty ``data``)."""
        if not data:
            if flow == "upstream":
                self.client_closed = True
            else:
                self.server_closed = True
            return [WireFrame(t, self.route, self.index, flow, "end")]
        counter = self.counters[flow]
        ended = counter.feed(data)
        # Each frame's own number in its direction: one read may end several (the client's
        # welcome and its first request, written back to back, often arrive together).
        before = counter.frames - len(ended)
        return [
            self._frame(t, flow, before + number, payload)
            for number, (_end, payload) in enumerate(ended, start=1)
        ]

    def _frame(self, t: float, flow: Flow, number: int, payload: bytes) -> WireFrame:
        size = len(payload)
        if number <= HANDSHAKE_FRAMES:
            kind = _handshake_kind(payload)
            return WireFrame(
                t, self.route, self.index, flow, kind, size, _handshake_value(kind, payload)
            )
        value: Any = (
            {"$undecoded": "too large"} if size > MAX_DECODED_BYTES else decode_payload(payload)
        )
        if flow == "upstream":
            frame = WireFrame(t, self.route, self.index, flow, "request", size, value)
            self.pending.append(frame)
            return frame
        request = self.pending.pop(0) if self.pending else None
        return WireFrame(
            t,
            self.route,
            self.index,
            flow,
            "reply",
            size,
            value,
            request=request,
            client_gone=self.client_closed,
        )


def replay(records: Iterable[dict[str, Any]]) -> list[WireFrame]:
    """Frames back from the raw frames log (``WireFrame.record``), replies paired again
    with their requests: a run's wire can be translated again after the fact."""
    pending: dict[tuple[str, int], list[WireFrame]] = {}
    frames: list[WireFrame] = []
    for record in records:
        key = (str(record["route"]), int(record["connection"]))
        kind = record["kind"]
        request = None
        if kind == "reply":
            waiting = pending.get(key, [])
            request = waiting.pop(0) if waiting else None
        frame = WireFrame(
            t=float(record["t"]),
            route=key[0],
            connection=key[1],
            flow=record["flow"],
            kind=kind,
            size=int(record.get("size", 0)),
            value=record.get("value"),
            request=request,
            client_gone=bool(record.get("client_gone", False)),
        )
        if kind == "request":
            pending.setdefault(key, []).append(frame)
        frames.append(frame)
    return frames
