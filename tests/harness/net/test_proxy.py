"""The fault proxy: pass-through, each toxic, partitions, frame phases, seeded decisions.

Real sockets on 127.0.0.1 with ``multiprocessing.connection`` framing; every wait is
bounded and synchronisation is by polling a condition, never by a fixed sleep.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from multiprocessing import connection
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
import pytest

from distq.errors import EXIT_MASTER_LOST
from distq.protocol import ClientSettings, authenticated_client, format_address
from harness.checks import CheckContext, judge
from harness.history import History
from harness.net.proxy import FaultProxy
from harness.net.toxics import FrameCounter, Toxic
from harness.runtime.cluster import Cluster
from harness.systems.distq import AUTHKEY_ENV
from tests.support import wait_until

AUTHKEY = b"proxy-test-key-0123456789"
BOUND_S = 30.0  # an upper bound on things that happen in milliseconds: a loaded machine

Event = tuple[str, dict[str, Any]]
Handler = Callable[[socket.socket], None]


class Server:
    """A TCP server on 127.0.0.1 running ``handler(sock)`` in a thread per connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.02)
        host, port = self.listener.getsockname()[:2]
        self.address: tuple[str, int] = (host, port)
        self.accepted = 0
        self.received: list[bytes] = []  # frames, for handlers that record them
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted += 1
            self._socks.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        with suppress(OSError, EOFError), sock:
            self.handler(sock)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(BOUND_S)
        self.listener.close()
        for sock in self._socks:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(BOUND_S)


def as_connection(sock: socket.socket) -> Connection:
    return Connection(os.dup(sock.fileno()))


def frame_echo(
    authkey: bytes | None = None, prefix: bytes = b"", record: list[bytes] | None = None
) -> Handler:
    """Echo every frame (after ``prefix``), after the authkey handshake if a key is given."""

    def handler(sock: socket.socket) -> None:
        conn = as_connection(sock)
        try:
            if authkey is not None:
                connection.deliver_challenge(conn, authkey)
                connection.answer_challenge(conn, authkey)
            while True:
                frame = conn.recv_bytes()
                if record is not None:
                    record.append(frame)
                conn.send_bytes(prefix + frame)
        finally:
            conn.close()

    return handler


def send_then_wait(payload: bytes, close: bool = False) -> Handler:
    """Send raw ``payload`` at once, then wait for the peer to close (or close first)."""

    def handler(sock: socket.socket) -> None:
        sock.sendall(payload)
        if not close:
            while sock.recv(65536):
                pass

    return handler


def frames(*payloads: bytes) -> bytes:
    return b"".join(struct.pack("!i", len(p)) + p for p in payloads)


def round_trip(conn: Connection, payload: bytes, timeout_s: float = BOUND_S) -> bytes:
    conn.send_bytes(payload)
    assert conn.poll(timeout_s), "no reply in time"
    return conn.recv_bytes()


def recv_all(sock: socket.socket) -> bytes:
    sock.settimeout(BOUND_S)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def server() -> Iterator[Callable[[Handler], Server]]:
    started: list[Server] = []

    def start(handler: Handler) -> Server:
        started.append(Server(handler))
        return started[-1]

    yield start
    for each in started:
        each.stop()


@pytest.fixture
def proxy(events: list[Event]) -> Iterator[Callable[..., FaultProxy]]:
    started: list[FaultProxy] = []

    def start(upstream: tuple[str, int], name: str = "worker-1", seed: int = 7) -> FaultProxy:
        each = FaultProxy(name, seed=seed, on_event=lambda ev, **f: events.append((ev, f)))
        each.start(upstream=upstream)
        started.append(each)
        return each

    yield start
    for each in started:
        each.close()


def named(events: list[Event], ev: str) -> list[dict[str, Any]]:
    return [fields for name, fields in list(events) if name == ev]


# -- frames -------------------------------------------------------------------------------


def feed_in_pieces(stream: bytes, sizes: Iterator[int]) -> tuple[list[int], list[bytes]]:
    """Feed ``stream`` to a FrameCounter in pieces; the frame ends (stream offsets) and
    the payload prefixes it reports."""
    counter, ends, prefixes, pos = FrameCounter(keep=16), [], [], 0
    while pos < len(stream):
        piece = stream[pos : pos + next(sizes)]
        for end, prefix in counter.feed(piece):
            ends.append(pos + end)
            prefixes.append(prefix)
        pos += len(piece)
    return ends, prefixes


@pytest.mark.parametrize("sizes", ["bytewise", "random", "whole"])
def test_frame_counter_finds_every_frame_however_the_stream_is_cut(sizes: str) -> None:
    rng = random.Random(3)
    big = 70_000 if sizes != "bytewise" else 300
    payloads = [rng.randbytes(rng.choice([0, 1, 5, 17, big])) for _ in range(30)]
    stream = frames(*payloads) + struct.pack("!iQ", -1, 3) + b"big"  # the 8-byte length form
    payloads.append(b"big")
    expected_ends = [sum(4 + len(p) for p in payloads[: i + 1]) for i in range(len(payloads))]
    expected_ends[-1] += 8
    pieces = {
        "bytewise": iter(lambda: 1, 0),
        "random": iter(lambda: rng.randint(1, 100_000), 0),
        "whole": iter(lambda: len(stream), 0),
    }[sizes]
    ends, prefixes = feed_in_pieces(stream, pieces)
    assert ends == expected_ends
    assert prefixes == [p[:16] for p in payloads]


def test_frame_counter_marks_a_negative_length_as_unframed() -> None:
    counter = FrameCounter()
    assert counter.feed(struct.pack("!i", -5) + b"junk") == []
    assert counter.broken


# -- pass-through -------------------------------------------------------------------------


def test_frames_of_any_size_pass_intact_both_ways(server: Any, proxy: Any) -> None:
    upstream = server(frame_echo(AUTHKEY))
    fault_proxy = proxy(upstream.address)
    rng = random.Random(11)
    clients = [authenticated_client(fault_proxy.address, authkey=AUTHKEY) for _ in range(2)]
    for _ in range(60):
        payload = rng.randbytes(rng.choice([0, 1, 3, 100, 4000, 65_536, 200_001]))
        for conn in clients:
            assert round_trip(conn, payload) == payload
    for conn in clients:
        conn.close()


def test_every_connection_is_an_event_with_its_byte_and_frame_counts(
    server: Any, proxy: Any, events: list[Event]
) -> None:
    fault_proxy = proxy(server(frame_echo()).address)
    with connection.Client(fault_proxy.address) as conn:
        assert round_trip(conn, b"ping") == b"ping"
    wait_until(lambda: len(named(events, "proxy_connection")) == 2, "the close event")
    opened, closed = named(events, "proxy_connection")
    assert opened["state"] == "opened"
    assert opened["connection"] == 0
    assert closed["state"] == "closed"
    assert closed["how"] == "closed"
    assert (closed["bytes_up"], closed["frames_up"], closed["frames_down"]) == (8, 1, 1)


# -- toxics -------------------------------------------------------------------------------


def test_latency_delays_each_direction_by_at_least_the_configured_time(
    server: Any, proxy: Any
) -> None:
    fault_proxy = proxy(server(frame_echo()).address)
    fault_proxy.add_toxic(Toxic("slow-up", "latency", "upstream", latency_ms=30, jitter_ms=10))
    fault_proxy.add_toxic(Toxic("slow-down", "latency", "downstream", latency_ms=25))
    with connection.Client(fault_proxy.address) as conn:
        for _ in range(3):
            started = time.monotonic()
            assert round_trip(conn, b"x" * 100) == b"x" * 100
            assert time.monotonic() - started >= (30 - 10 + 25) / 1000


def test_bandwidth_caps_the_rate_of_its_direction(server: Any, proxy: Any) -> None:
    fault_proxy = proxy(server(frame_echo()).address)
    fault_proxy.add_toxic(Toxic("thin", "bandwidth", "downstream", rate_kbps=200))
    payload = random.Random(1).randbytes(60_000)
    with connection.Client(fault_proxy.address) as conn:
        started = time.monotonic()
        assert round_trip(conn, payload) == payload
        assert time.monotonic() - started >= (60_004 / 200_000) * 0.99


def test_slicer_delivers_intact_data_in_delayed_pieces(server: Any, proxy: Any) -> None:
    fault_proxy = proxy(server(frame_echo()).address)
    fault_proxy.add_toxic(Toxic("crumbs", "slicer", "upstream", chunk_bytes=16, chunk_delay_ms=2))
    payload = random.Random(2).randbytes(800)
    with connection.Client(fault_proxy.address) as conn:
        started = time.monotonic()
        assert round_trip(conn, payload) == payload
        # 804 bytes in 16-byte writes: 50 pauses of 2 ms between 51 pieces.
        assert time.monotonic() - started >= 50 * 0.002


def test_limit_data_forwards_n_bytes_then_closes(server: Any, proxy: Any) -> None:
    payload = random.Random(4).randbytes(1000)
    fault_proxy = proxy(server(send_then_wait(payload)).address)
    fault_proxy.add_toxic(Toxic("cap", "limit_data", "downstream", limit_bytes=100))
    with socket.create_connection(fault_proxy.address, timeout=BOUND_S) as sock:
        assert recv_all(sock) == payload[:100]


def test_reset_sends_rst_to_the_client(server: Any, proxy: Any, events: list[Event]) -> None:
    fault_proxy = proxy(server(send_then_wait(b"hello")).address)
    fault_proxy.add_toxic(Toxic("rst", "reset"))
    with (
        pytest.raises(ConnectionResetError),  # from connect() when the RST is that quick
        socket.create_connection(fault_proxy.address, timeout=BOUND_S) as sock,
    ):
        recv_all(sock)
    assert [e["action"] for e in named(events, "toxic_fired")] == ["reset"]


@pytest.mark.parametrize("direction", ["downstream", "upstream", "both"])
def test_blackhole_during_the_handshake_makes_the_client_time_out(
    server: Any, proxy: Any, monkeypatch: pytest.MonkeyPatch, direction: str
) -> None:
    fault_proxy = proxy(server(frame_echo(AUTHKEY)).address)
    fault_proxy.add_toxic(Toxic("void", "blackhole", direction))  # type: ignore[arg-type]
    monkeypatch.setattr(ClientSettings, "handshake_timeout_s", 0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        authenticated_client(fault_proxy.address, authkey=AUTHKEY)
    assert time.monotonic() - started >= 0.5


def test_slow_close_holds_the_close_back(server: Any, proxy: Any) -> None:
    fault_proxy = proxy(server(send_then_wait(frames(b"bye"), close=True)).address)
    fault_proxy.add_toxic(Toxic("linger", "slow_close", "downstream", delay_ms=200))
    with connection.Client(fault_proxy.address) as conn:
        assert conn.poll(BOUND_S)
        assert conn.recv_bytes() == b"bye"
        started = time.monotonic()
        assert conn.poll(BOUND_S)
        with pytest.raises(EOFError):
            conn.recv_bytes()
        # The server closed right after sending; the close reached us 200 ms late.
        assert time.monotonic() - started >= 0.15


def test_toxics_come_and_go_mid_run_as_events(server: Any, proxy: Any, events: list[Event]) -> None:
    fault_proxy = proxy(server(frame_echo()).address)
    with connection.Client(fault_proxy.address) as conn:
        assert round_trip(conn, b"a") == b"a"
        fault_proxy.add_toxic(Toxic("slow", "latency", "downstream", latency_ms=300))
        started = time.monotonic()
        assert round_trip(conn, b"b") == b"b"
        assert time.monotonic() - started >= 0.3
        fault_proxy.remove_toxic("slow")
        started = time.monotonic()
        assert round_trip(conn, b"c") == b"c"
        assert time.monotonic() - started < 0.3
        with pytest.raises(KeyError, match="no toxic named 'slow'"):
            fault_proxy.remove_toxic("slow")
    assert [name for name, _ in events if name.startswith("toxic")] == [
        "toxic_added",
        "toxic",
        "toxic_effect",
        "toxic_removed",
    ]
    assert named(events, "toxic")[0]["decision"] == "applied"
    # What it did while it stood: the one downstream frame, held back about 300 ms.
    [effect] = named(events, "toxic_effect")
    assert effect["toxic"] == "slow"
    assert effect["bytes"] > 0
    assert effect["delayed_ms"] >= 250
    assert effect["closes"] == 0


def test_a_toxic_still_standing_reports_its_effect_when_the_connection_closes(
    server: Any, proxy: Any, events: list[Event]
) -> None:
    fault_proxy = proxy(server(frame_echo()).address)
    fault_proxy.add_toxic(Toxic("idle", "latency", "downstream", latency_ms=50))
    with connection.Client(fault_proxy.address):
        # a connection that never carries a byte through the toxic
        wait_until(lambda: bool(named(events, "toxic")), "the toxic met the connection")
    fault_proxy.close()
    [effect] = named(events, "toxic_effect")
    assert (effect["toxic"], effect["bytes"]) == ("idle", 0)
    # At most the server's close held back (when it came back before the proxy closed).
    assert 0 <= effect["delayed_ms"] <= 50


def test_a_toxic_names_what_is_wrong_with_it() -> None:
    with pytest.raises(ValueError, match="unknown kind 'lag'"):
        Toxic("t", "lag")
    with pytest.raises(ValueError, match="rate_kbps does not apply to a latency toxic"):
        Toxic("t", "latency", rate_kbps=5)
    with pytest.raises(ValueError, match=r"probability 1\.5"):
        Toxic("t", "reset", probability=1.5)
    with pytest.raises(ValueError, match="needs frames_direction"):
        Toxic("t", "reset", after_frames=2)
    with pytest.raises(ValueError, match="needs chunk_bytes"):
        Toxic("t", "slicer")


# -- partitions ------------------------------------------------------------------------------


def test_partition_holds_all_traffic_until_heal(
    server: Any, proxy: Any, events: list[Event]
) -> None:
    upstream = server(frame_echo())
    fault_proxy = proxy(upstream.address)
    with connection.Client(fault_proxy.address) as old:
        assert round_trip(old, b"before") == b"before"
        fault_proxy.partition()
        old.send_bytes(b"during")
        with connection.Client(fault_proxy.address) as new:  # accepted, then held
            new.send_bytes(b"new")
            assert not old.poll(0.3)
            assert not new.poll(0.01)
            assert upstream.accepted == 1
            assert fault_proxy.heal() == 0  # nothing crossed the cut
            assert old.poll(BOUND_S)
            assert old.recv_bytes() == b"during"
            assert new.poll(BOUND_S)
            assert new.recv_bytes() == b"new"
        with connection.Client(fault_proxy.address) as later:
            assert round_trip(later, b"after") == b"after"
    assert named(events, "partition")[0]["connections"] == 1
    assert named(events, "heal") == [
        {"proxy": "worker-1", "by": "call", "reset": 0, "passed_bytes": 0}
    ]
    assert fault_proxy.heal() is None  # no partition: nothing to heal


def test_a_timed_partition_heals_itself_and_can_reset_what_it_held(
    server: Any, proxy: Any, events: list[Event]
) -> None:
    fault_proxy = proxy(server(frame_echo()).address)
    with connection.Client(fault_proxy.address) as old:
        assert round_trip(old, b"before") == b"before"
        started = time.monotonic()
        fault_proxy.partition(duration_s=0.2, reset_on_heal=True)
        old.send_bytes(b"during")
        assert old.poll(BOUND_S)
        with pytest.raises((ConnectionResetError, EOFError)):
            old.recv_bytes()
        assert time.monotonic() - started >= 0.2
    with connection.Client(fault_proxy.address) as later:
        assert round_trip(later, b"after") == b"after"
    assert named(events, "heal")[0]["by"] == "timer"
    assert named(events, "heal")[0]["reset"] == 1


# -- phases ---------------------------------------------------------------------------------


def test_reset_right_after_the_first_downstream_frame(server: Any, proxy: Any) -> None:
    burst = frames(b"first", b"second", b"third")  # one write: the cut falls inside a read
    fault_proxy = proxy(server(send_then_wait(burst)).address)
    fault_proxy.add_toxic(
        Toxic("cut", "reset", "downstream", after_frames=1, frames_direction="downstream")
    )
    with connection.Client(fault_proxy.address) as conn:
        assert conn.poll(BOUND_S)
        assert conn.recv_bytes() == b"first"
        # The reset surfaces in whichever of the two reads meets it first.
        with pytest.raises((ConnectionResetError, EOFError)):  # noqa: PT012
            conn.poll(BOUND_S)
            conn.recv_bytes()


def test_reset_during_the_authkey_challenge(server: Any, proxy: Any, events: list[Event]) -> None:
    fault_proxy = proxy(server(frame_echo(AUTHKEY)).address)
    fault_proxy.add_toxic(Toxic("cut", "reset", "downstream", after_frames=1))
    with pytest.raises((ConnectionError, EOFError)):
        authenticated_client(fault_proxy.address, authkey=AUTHKEY)
    (triggered,) = named(events, "toxic_triggered")
    assert (triggered["frames"], triggered["frames_flow"]) == (1, "downstream")


def test_reset_right_after_the_reply_to_a_matching_request(server: Any, proxy: Any) -> None:
    """What "after a lease reply is sent" means on the wire."""
    fault_proxy = proxy(server(frame_echo(prefix=b"re:")).address)
    fault_proxy.add_toxic(
        Toxic(
            "after-lease",
            "reset",
            after_frames=1,
            frames_direction="downstream",
            frames_matching=b"lease",
        )
    )
    with connection.Client(fault_proxy.address) as conn:
        assert round_trip(conn, b"hello") == b"re:hello"
        assert round_trip(conn, b"lease 3 jobs") == b"re:lease 3 jobs"
        with pytest.raises((ConnectionError, EOFError)):
            round_trip(conn, b"report")


def test_blackhole_after_a_matching_request_swallows_its_reply(server: Any, proxy: Any) -> None:
    """What "before a result reply arrives" means: the report lands, the answer never does."""
    received: list[bytes] = []
    upstream = server(frame_echo(record=received))
    fault_proxy = proxy(upstream.address)
    fault_proxy.add_toxic(
        Toxic(
            "no-ack",
            "blackhole",
            "downstream",
            after_frames=1,
            frames_direction="upstream",
            frames_matching=b"report",
        )
    )
    with connection.Client(fault_proxy.address) as conn:
        assert round_trip(conn, b"lease") == b"lease"
        conn.send_bytes(b"report 9")
        wait_until(lambda: b"report 9" in received, "the report to reach the server")
        assert not conn.poll(0.3)


# -- seeded decisions -----------------------------------------------------------------------

TOXICS = [
    Toxic("lag", "latency", probability=0.5, latency_ms=1),
    Toxic("crumbs", "slicer", probability=0.3, chunk_bytes=512),
    Toxic("cap", "limit_data", probability=0.7, limit_bytes=10**9),
]


def decisions(server: Any, seed: int) -> list[tuple[int, str, str]]:
    """Open 12 connections one after another through a fresh proxy; its decisions."""
    seen: list[Event] = []
    with FaultProxy("worker-3", seed=seed, on_event=lambda ev, **f: seen.append((ev, f))) as fp:
        fp.start(upstream=server.address)
        for toxic in TOXICS:
            fp.add_toxic(toxic)
        for _ in range(12):
            with connection.Client(fp.address) as conn:
                assert round_trip(conn, b"x") == b"x"
    return [(e["connection"], e["toxic"], e["decision"]) for e in named(seen, "toxic")]


def test_the_same_seed_gives_the_same_decisions(server: Any) -> None:
    upstream = server(frame_echo())
    first, second = decisions(upstream, seed=42), decisions(upstream, seed=42)
    assert first == second
    assert len(first) == 12 * len(TOXICS)
    assert {d for _, _, d in first} == {"applied", "skipped"}
    # The documented draw, so a history can be re-derived from the seed alone.
    probability = {t.name: t.probability for t in TOXICS}
    for index, name, decision in first:
        draw = random.Random(f"42:worker-3:{name}:{index}").random()
        assert decision == ("applied" if draw < probability[name] else "skipped")


def test_another_seed_gives_other_decisions(server: Any) -> None:
    upstream = server(frame_echo())
    assert decisions(upstream, seed=42) != decisions(upstream, seed=43)


# -- lifecycle -------------------------------------------------------------------------------


def test_close_leaves_no_sockets_or_threads(server: Any) -> None:
    upstream = server(frame_echo())
    process = psutil.Process()
    fds, threads = process.num_fds(), threading.active_count()
    fault_proxy = FaultProxy("worker-9")
    address = fault_proxy.start(upstream=upstream.address)
    fault_proxy.add_toxic(Toxic("lag", "latency", "upstream", latency_ms=1))
    clients = [connection.Client(address) for _ in range(3)]
    assert round_trip(clients[0], b"a") == b"a"
    fault_proxy.partition()  # the others are left held
    clients[1].send_bytes(b"held")
    started = time.monotonic()
    fault_proxy.close()
    assert time.monotonic() - started < BOUND_S
    for conn in clients:
        conn.close()
    wait_until(lambda: threading.active_count() <= threads, "threads back to the baseline")
    wait_until(lambda: process.num_fds() <= fds, "descriptors back to the baseline")
    fault_proxy.close()  # idempotent


def test_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="not a loopback IP"):
        FaultProxy("w").start(("0.0.0.0", 0), upstream=("127.0.0.1", 1))


def test_an_unreachable_upstream_resets_the_client(proxy: Any, events: list[Event]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()
    fault_proxy = proxy(dead)
    with (
        pytest.raises(ConnectionResetError),  # from connect() when the RST is that quick
        socket.create_connection(fault_proxy.address, timeout=BOUND_S) as sock,
    ):
        recv_all(sock)
    wait_until(lambda: len(named(events, "proxy_connection")) == 2, "the close event")
    assert named(events, "proxy_connection")[1]["how"].startswith("upstream_unreachable")


# -- with distq -------------------------------------------------------------------------------


@pytest.mark.processes
def test_a_worker_reset_after_its_first_lease_reply_loses_its_jobs_to_another(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path / "run", ["--task", "square", "--count", "20"]) as cluster:
        assert cluster.address is not None
        master = cluster.address.rsplit(":", 1)
        seen: list[Event] = []
        proxies = [
            FaultProxy(name, seed=5, on_event=lambda ev, **f: seen.append((ev, f)))
            for name in ("worker-1", "worker-2")
        ]
        workers: list[subprocess.Popen[bytes]] = []
        try:
            for fault_proxy in proxies:
                fault_proxy.start(upstream=(master[0], int(master[1])))
            proxies[0].add_toxic(
                Toxic(
                    "after-lease",
                    "reset",
                    after_frames=1,
                    frames_direction="downstream",
                    frames_matching=b"lease",
                )
            )
            for fault_proxy in proxies:
                argv = [sys.executable, "-m", "distq", "worker", "--name", fault_proxy.name]
                argv += ["--connect", format_address(fault_proxy.address)]
                env = {**cluster.env(), AUTHKEY_ENV: cluster.authkey.decode()}
                workers.append(subprocess.Popen(argv, env=env, cwd=tmp_path))
                if fault_proxy is proxies[0]:
                    assert workers[0].wait(60) == EXIT_MASTER_LOST
            assert cluster.wait_master(60) == 0
            assert workers[1].wait(60) == 0
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
            for fault_proxy in proxies:
                fault_proxy.close()
    fired = [f for ev, f in seen if ev == "toxic_fired"]
    assert [(f["proxy"], f["action"]) for f in fired] == [("worker-1", "reset")]
    lines = cluster.results_path.read_text().splitlines()
    assert len(lines) == 20


@pytest.mark.processes
def test_a_worker_with_reconnect_rejoins_after_a_reset_and_finishes_the_work(
    tmp_path: Path,
) -> None:
    """The same reset, but the worker may rejoin: it reconnects as the same worker, the
    master takes back what the old connection held, and the one worker finishes it all."""
    cut = Toxic(
        "after-lease",
        "reset",
        after_frames=1,
        frames_direction="downstream",
        frames_matching=b"lease",
    )
    fired = threading.Event()
    # Until the toxic is removed, each new connection may be reset too, and each reset
    # counts an attempt (the master cannot tell a rejoin is coming): room for several.
    master_args = ["--task", "square", "--count", "20", "--max-attempts", "10"]
    with Cluster(
        tmp_path / "run", master_args, proxy_seed=5, initial_toxics=[(cut, frozenset())]
    ) as cluster:
        cluster.on_proxy_event = lambda ev, **_: fired.set() if ev == "toxic_fired" else None
        worker = cluster.add_worker("worker-1", extra_args=["--reconnect-s", "60"])
        assert fired.wait(60), "the reset never fired"
        cluster.proxies["worker-1"].remove_toxic("after-lease")
        assert cluster.wait_master(60) == 0
        assert worker.wait(60) == 0, worker.log_tail()
    history = History.load_run(cluster.run_dir)
    verdict = judge(
        history, ["exactly_once", "correct_values"], CheckContext(expected=cluster.system.expected)
    )
    assert verdict.status == "pass", verdict.report(history)
    assert {e.get("worker") for e in history.select("result_accepted")} == {"worker-1"}
    [rejoined, *_] = history.select("worker_rejoined", src="master")
    assert rejoined.get("pid") == worker.pid
    reconnected = history.select("reconnected", src="worker-1")
    assert reconnected
    assert "lost the master" in reconnected[0].get("reason")
