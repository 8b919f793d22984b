"""A seeded TCP fault proxy: sits between one worker and the master and applies toxics.

One ``FaultProxy`` per worker, named after it, runs an asyncio loop in a background thread
so the harness's synchronous code can add and remove toxics, partition and heal while
traffic flows. Whether a toxic applies to a connection is drawn from
``random.Random(f"{seed}:{proxy}:{toxic}:{connection}")``, so one seed gives one set of
decisions. The proxy counts the length-prefixed frames of ``multiprocessing.connection``
in each direction, so a toxic can start, or cut the connection, at an exact frame boundary:
during the authkey challenge, after a lease reply, before a result reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from harness import contract
from harness.net.link import Address, Applied, EventSink, Link, Tap, abort_writer
from harness.net.toxics import TOXIC_KINDS, Direction, Flow, FrameCounter, Toxic

__all__ = [
    "TOXIC_KINDS",
    "Address",
    "Direction",
    "EventSink",
    "FaultProxy",
    "Flow",
    "FrameCounter",
    "SocketPlace",
    "Tap",
    "Toxic",
]

T = TypeVar("T")

#: Runs a socket factory where the proxy's sockets must live and returns the socket: in a
#: thread that entered a lab host's network namespace (``harness.net.netns.in_namespace``).
#: A socket belongs to the namespace it was made in for life, so the proxy's loop may run
#: anywhere while its listener and upstream connections are the host's.
SocketPlace = Callable[[Callable[[], socket.socket]], socket.socket]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FaultProxy:
    """A TCP proxy for one worker's connections to the master, with seeded toxics.

    Start it with ``start(upstream=master_address)`` and point the worker at the address
    it returns (``distq worker --connect HOST:PORT``). Every public method is safe to call
    from any thread. Connections are numbered from 0 in the order they are accepted. A
    ``tap`` sees every chunk read, before it is forwarded (``harness.wire`` decodes them).

    Events, each with ``proxy=name``, go to ``on_event(ev, **fields)`` (``EventLog.write``
    fits) from the proxy's thread: ``proxy_listening`` (address, upstream),
    ``proxy_upstream``, ``proxy_connection`` (connection, state ``opened`` with peer, or
    ``closed`` with how, bytes_/frames_/swallowed_ up and down), ``toxic_added`` (toxic,
    kind, direction, probability, its parameters and phase), ``toxic_removed``, ``toxic``
    (toxic, kind, direction, connection, decision ``applied`` | ``skipped``, probability),
    ``toxic_triggered`` (a phase met: frames, frames_flow), ``toxic_fired`` (action
    ``reset`` | ``limit_close``), ``partition`` (duration_s, reset_on_heal, connections),
    ``heal`` (by ``call`` | ``timer``, reset) and ``proxy_closed``.
    """

    def __init__(
        self,
        name: str,
        *,
        seed: int | str = 0,
        on_event: EventSink | None = None,
        call_timeout_s: float = 5.0,
        tap: Tap | None = None,
        place: SocketPlace | None = None,
    ) -> None:
        self.name = name
        self.tap = tap
        #: Where its sockets are made (a lab host's namespace); None: the harness's own.
        self.place = place
        self.seed = seed
        self.on_event = on_event
        self.call_timeout_s = call_timeout_s
        self._address: Address | None = None
        self._upstream: Address | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._toxics: dict[str, Toxic] = {}
        self._links: dict[int, Link] = {}
        self._next_index = 0
        self.flowing: asyncio.Event | None = None
        self._partition_links: set[int] | None = None
        self._sent_at_cut: dict[int, int] = {}  # bytes each link had sent when the cut began
        self._reset_on_heal = False
        self._heal_timer: asyncio.TimerHandle | None = None
        self._closed = False

    # -- lifecycle (caller's thread) ----------------------------------------------------

    @property
    def address(self) -> Address:
        if self._address is None:
            raise RuntimeError(f"proxy {self.name!r} is not started")
        return self._address

    @property
    def upstream(self) -> Address:
        if self._upstream is None:
            raise RuntimeError(f"proxy {self.name!r} is not started")
        return self._upstream

    def start(self, listen: Address = ("127.0.0.1", 0), *, upstream: Address) -> Address:
        """Listen on ``listen`` (loopback only, unless its sockets are made in a lab host's
        namespace: then the host's address) and forward to ``upstream``; returns the
        address actually listened on."""
        if self._loop is not None:
            raise RuntimeError(f"proxy {self.name!r} is already started")
        host = "127.0.0.1" if listen[0] == "localhost" else listen[0]
        if self.place is None and not _is_loopback(host):
            raise ValueError(
                f"proxy {self.name!r}: listen address {listen[0]!r} is not a loopback IP"
            )
        self._upstream = ("127.0.0.1" if upstream[0] == "localhost" else upstream[0], upstream[1])
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"fault-proxy-{self.name}", daemon=True
        )
        self._thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(self._listen(host, listen[1]), loop)
            self._address = future.result(self.call_timeout_s)
        except BaseException:
            self._closed = True
            self._stop_loop()
            raise
        self._emit(
            contract.PROXY_LISTENING, address=list(self._address), upstream=list(self.upstream)
        )
        return self._address

    def set_upstream(self, upstream: Address) -> None:
        """Send connections accepted from now on to ``upstream`` (e.g. a restarted master)."""
        self._call(lambda: self._set_upstream(upstream))

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the listener and every connection; stop the thread. Bounded, idempotent."""
        if self._closed or self._loop is None:
            self._closed = True
            return
        self._closed = True
        with contextlib.suppress(Exception):
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            future.result(timeout_s)
        self._stop_loop(timeout_s)
        self._emit(contract.PROXY_CLOSED)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- toxics (caller's thread) --------------------------------------------------------

    def add_toxic(self, toxic: Toxic) -> None:
        """Add ``toxic``; it meets every live connection and every new one."""
        self._call(lambda: self._add_toxic(toxic))

    def remove_toxic(self, name: str) -> None:
        """Remove a toxic from the proxy and from every connection. KeyError if unknown."""
        self._call(lambda: self._remove_toxic(name))

    @property
    def toxics(self) -> list[Toxic]:
        return self._call(lambda: list(self._toxics.values()))

    @property
    def open_connections(self) -> int:
        """How many connections are still being relayed (closed ones were read to the end)."""
        return self._call(lambda: len(self._links))

    def partition(self, duration_s: float | None = None, *, reset_on_heal: bool = False) -> None:
        """Cut this worker off: nothing crosses in either direction until ``heal()`` (or
        ``duration_s`` later). Data in flight is held, not dropped, like TCP across a real
        partition; new connections are accepted and held unconnected. On heal, held data
        flows again and held connections connect upstream; with ``reset_on_heal`` every
        connection that lived through the partition is reset instead."""
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s >= 0):
            raise ValueError(f"partition duration_s = {duration_s!r} is not a number >= 0")
        self._call(lambda: self._partition(duration_s, reset_on_heal))

    def heal(self) -> int | None:
        """End a partition now: how many bytes crossed it while it stood (0 for a clean
        cut), or None when there was none."""
        return self._call(lambda: self._heal("call"))

    # -- loop side ------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        loop = self._loop
        if loop is None or self._closed:
            raise RuntimeError(f"proxy {self.name!r} is not running")
        if self._thread is not None and threading.get_ident() == self._thread.ident:
            return fn()  # called from an event callback on the loop itself

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(self.call_timeout_s)

    def _stop_loop(self, timeout_s: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        if not thread.is_alive():
            loop.close()

    async def _listen(self, host: str, port: int) -> Address:
        self.flowing = asyncio.Event()
        self.flowing.set()
        if self.place is None:
            self._server = await asyncio.start_server(self._accept, host, port)
        else:
            listener = self.place(lambda: socket.create_server((host, port)))
            listener.setblocking(False)
            self._server = await asyncio.start_server(self._accept, sock=listener)
        sockname = self._server.sockets[0].getsockname()
        return (str(sockname[0]), int(sockname[1]))

    async def _shutdown(self) -> None:
        if self._heal_timer is not None:
            self._heal_timer.cancel()
        server = self._server
        if server is not None:
            server.close()
        links = list(self._links.values())
        for link in links:
            link.cut("proxy_closed", rst=False)
            for writer in link.writers.values():
                writer.transport.abort()
        pending = [t for link in links for t in (link.run_task, *link.tasks) if t is not None]
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        await asyncio.sleep(0)  # let the transports' connection_lost callbacks close sockets

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, not a coroutine: the link runs in a task of its own that close()
        # may cancel (a cancelled stream-handler task makes asyncio log an error).
        if self._closed:
            abort_writer(writer, rst=False)
            return
        index = self._next_index
        self._next_index += 1
        link = self._links[index] = Link(self, index, reader, writer)
        peer = writer.get_extra_info("peername")
        self._emit(contract.PROXY_CONNECTION, connection=index, state="opened", peer=_format(peer))
        if self._partition_links is not None:
            self._partition_links.add(index)
        for toxic in self._toxics.values():
            self._decide(link, toxic)
        link.run_task = asyncio.get_running_loop().create_task(link.run())

    def link_closed(self, link: Link) -> None:
        if self._links.pop(link.index, None) is None:
            return
        counters = link.counters
        self._emit(
            contract.PROXY_CONNECTION,
            connection=link.index,
            state="closed",
            how=link.how,
            bytes_up=link.sent_bytes["upstream"],
            bytes_down=link.sent_bytes["downstream"],
            frames_up=counters["upstream"].frames,
            frames_down=counters["downstream"].frames,
            swallowed_up=link.swallowed_bytes["upstream"],
            swallowed_down=link.swallowed_bytes["downstream"],
        )
        for applied in link.applied.values():
            self.toxic_event(contract.TOXIC_EFFECT, link, applied, **applied.effect())

    def _set_upstream(self, upstream: Address) -> None:
        self._upstream = upstream
        self._emit(contract.PROXY_UPSTREAM, upstream=list(upstream))

    def _add_toxic(self, toxic: Toxic) -> None:
        if toxic.name in self._toxics:
            raise ValueError(f"proxy {self.name!r} already has a toxic named {toxic.name!r}")
        self._toxics[toxic.name] = toxic
        self._emit(
            contract.TOXIC_ADDED,
            toxic=toxic.name,
            kind=toxic.kind,
            direction=toxic.direction,
            probability=toxic.probability,
            **toxic.params(),
        )
        for index in sorted(self._links):
            link = self._links[index]
            if not link.finished:
                self._decide(link, toxic)

    def _remove_toxic(self, name: str) -> None:
        if self._toxics.pop(name, None) is None:
            raise KeyError(f"proxy {self.name!r} has no toxic named {name!r}")
        for link in self._links.values():
            applied = link.applied.pop(name, None)
            if applied is not None:
                self.toxic_event(contract.TOXIC_EFFECT, link, applied, **applied.effect())
        self._emit(contract.TOXIC_REMOVED, toxic=name)

    def _decide(self, link: Link, toxic: Toxic) -> None:
        applied = link.meet(toxic, self.seed)
        self._emit(
            contract.TOXIC,
            toxic=toxic.name,
            kind=toxic.kind,
            direction=toxic.direction,
            connection=link.index,
            decision="skipped" if applied is None else "applied",
            probability=toxic.probability,
        )
        if applied is not None and applied.active and toxic.kind == "reset":
            link.schedule_reset(applied)

    def toxic_event(self, ev: str, link: Link, applied: Applied, **fields: Any) -> None:
        toxic = applied.toxic
        self._emit(
            ev,
            toxic=toxic.name,
            kind=toxic.kind,
            direction=toxic.direction,
            connection=link.index,
            **fields,
        )

    def _partition(self, duration_s: float | None, reset_on_heal: bool) -> None:
        assert self.flowing is not None
        if self._heal_timer is not None:
            self._heal_timer.cancel()
            self._heal_timer = None
        if self._partition_links is None:
            self._partition_links = set(self._links)
            self._sent_at_cut = {index: link.sent_total() for index, link in self._links.items()}
        self._reset_on_heal = reset_on_heal
        self.flowing.clear()
        self._emit(
            contract.PARTITION,
            duration_s=duration_s,
            reset_on_heal=reset_on_heal,
            connections=len(self._links),
        )
        if duration_s is not None:
            loop = asyncio.get_running_loop()
            self._heal_timer = loop.call_later(duration_s, self._heal, "timer")

    def _heal(self, by: str) -> int | None:
        assert self.flowing is not None
        if self._partition_links is None:
            return None
        # Measured before anything flows again: what crossed while the cut stood.
        passed = sum(
            link.sent_total() - self._sent_at_cut.get(index, 0)
            for index, link in self._links.items()
        )
        if self._heal_timer is not None:
            self._heal_timer.cancel()
            self._heal_timer = None
        reset = 0
        if self._reset_on_heal:
            for index in sorted(self._partition_links):
                link = self._links.get(index)
                if link is not None and not link.finished:
                    link.cut("partition_reset", rst=True)
                    reset += 1
        self._partition_links = None
        self.flowing.set()
        self._emit(contract.HEAL, by=by, reset=reset, passed_bytes=passed)
        return passed

    async def open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new connection to the upstream, from where the proxy's sockets live."""
        if self.place is None:
            return await asyncio.open_connection(*self.upstream)
        host, port = self.upstream
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self.place(lambda: socket.socket(family, socket.SOCK_STREAM))
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            return await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise

    async def hold(self) -> None:
        """Wait out a partition."""
        flowing = self.flowing
        if flowing is not None and not flowing.is_set():
            await flowing.wait()

    def _emit(self, ev: str, **fields: Any) -> None:
        if self.on_event is None:
            return
        with contextlib.suppress(Exception):  # a broken sink must not break the connections
            self.on_event(ev, proxy=self.name, **fields)


def _format(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return repr(address)
