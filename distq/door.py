"""The master's door policy: how many handshakes one peer may hold open, how long a peer
that keeps failing waits, and how refusals are logged (the first few per peer one by one,
then periodic counts), so a flood can neither hold the door, nor guess fast, nor fill the
disk. Pure bookkeeping: no sockets, no threads; the clock is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Door", "DoorPolicy"]


@dataclass(frozen=True, slots=True)
class DoorPolicy:
    max_pending_per_peer: int = 16  # handshakes one address may hold while crowded
    free_failures: int = 3  # failed handshakes from one address before it is slowed
    penalty_base_s: float = 0.05  # the first slowed handshake waits this, doubling each time
    max_penalty_s: float = 1.0
    forget_after_s: float = 30.0  # an address quiet this long starts afresh
    logged_per_peer: int = 5  # refusals of one address logged one by one, then counted
    logged_per_s: int = 50  # across all addresses: past this, refusals are counted too
    summary_every_s: float = 1.0  # counted refusals go out as one line per kind this often
    summary_peers: int = 20  # addresses named in one summary; the rest are summed up


@dataclass(slots=True)
class _Peer:
    pending: int = 0
    failures: int = 0
    logged: int = 0
    last_seen: float = 0.0
    counted: dict[tuple[str, str], int] = field(default_factory=dict)  # (ev, kind) -> n


class Door:
    """Per-address state of the handshakes a master is taking. Not thread-safe: the
    server calls it under one lock."""

    def __init__(self, policy: DoorPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.clock = clock
        self._peers: dict[str, _Peer] = {}
        self._window_start = 0.0
        self._logged_in_window = 0
        self._last_summary = clock()

    def _peer(self, host: str) -> _Peer:
        peer = self._peers.get(host)
        now = self.clock()
        if peer is None:
            peer = self._peers[host] = _Peer(last_seen=now)
        elif now - peer.last_seen > self.policy.forget_after_s:
            peer.failures = 0
            peer.logged = 0
        peer.last_seen = now
        return peer

    def admit(self, host: str, *, crowded: bool = True) -> bool:
        """Take one pending-handshake slot for ``host``; False when the door is
        ``crowded`` (many handshakes pending in all) and ``host`` holds its share already.
        Uncrowded, any address may have many: a host starting 32 workers at once is fine."""
        peer = self._peer(host)
        if crowded and peer.pending >= self.policy.max_pending_per_peer:
            return False
        peer.pending += 1
        return True

    def release(self, host: str, *, ok: bool | None) -> None:
        """The handshake from ``host`` ended: ``ok`` (authenticated), failed, or ``None``
        when it never started (turned away after all)."""
        peer = self._peer(host)
        peer.pending = max(0, peer.pending - 1)
        if ok:
            peer.failures = 0
        elif ok is not None:
            peer.failures += 1

    def penalty_s(self, host: str) -> float:
        """How long a new handshake from ``host`` waits before its challenge."""
        peer = self._peers.get(host)
        if peer is None or self.clock() - peer.last_seen > self.policy.forget_after_s:
            return 0.0
        over = peer.failures - self.policy.free_failures
        if over <= 0:
            return 0.0
        return min(self.policy.max_penalty_s, self.policy.penalty_base_s * 2.0 ** min(over - 1, 30))

    def refused(self, ev: str, host: str, kind: str) -> bool:
        """Account one refusal; True when it should be logged on its own line now,
        False when it is counted for the next summary line."""
        peer = self._peer(host)
        now = self.clock()
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._logged_in_window = 0
        if peer.logged < self.policy.logged_per_peer and (
            self._logged_in_window < self.policy.logged_per_s
        ):
            peer.logged += 1
            self._logged_in_window += 1
            return True
        key = (ev, kind)
        peer.counted[key] = peer.counted.get(key, 0) + 1
        return False

    def summaries(self, *, force: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """The counted refusals due now (all of them when ``force``), as (event name,
        fields) with ``count``; also forgets addresses that have gone quiet."""
        now = self.clock()
        if not force and now - self._last_summary < self.policy.summary_every_s:
            return []
        self._last_summary = now
        due: list[tuple[int, str, str, str]] = []  # (count, ev, kind, host)
        for host, peer in list(self._peers.items()):
            due += [(count, ev, kind, host) for (ev, kind), count in peer.counted.items()]
            peer.counted.clear()
            if not peer.pending and now - peer.last_seen > self.policy.forget_after_s:
                del self._peers[host]
        due.sort(key=lambda item: (-item[0], item[1], item[2], item[3]))
        # The busiest addresses get a line each; the rest (a flood from many addresses)
        # share one line per kind, so the lines per summary stay bounded too.
        out: list[tuple[str, dict[str, Any]]] = [
            (ev, {"peer": host, "kind": kind, "count": count})
            for count, ev, kind, host in due[: self.policy.summary_peers]
        ]
        others: dict[tuple[str, str], list[int]] = {}
        for count, ev, kind, _host in due[self.policy.summary_peers :]:
            total = others.setdefault((ev, kind), [0, 0])
            total[0] += count
            total[1] += 1
        for (ev, kind), (count, peers) in sorted(others.items()):
            out.append((ev, {"peer": "others", "kind": kind, "count": count, "peers": peers}))
        return out
