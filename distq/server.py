"""The master's server: the stock manager server plus what the tutorials lack.

Handshakes bounded by one deadline and admitted by the door policy (``distq.door``),
their refusals logged, ``TCP_NODELAY``, and a callback when a worker's connection closes.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import socket
import struct
import threading
import time
from collections.abc import Callable
from multiprocessing import connection
from multiprocessing.context import AuthenticationError
from multiprocessing.managers import Server
from traceback import format_exc
from typing import Any

from distq.door import Door, DoorPolicy
from distq.events import EventLog
from distq.protocol import BUSY, BoardProxy, DistqManager, format_address
from distq.service import BoardService, JournalDown, set_caller

__all__ = ["DistqServer", "ServedManager", "current_service"]

_serving: BoardService | None = None
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def current_service() -> BoardService:
    """The ``board`` typeid's callable: the service this process serves right now."""
    if _serving is None:
        raise RuntimeError("no board service is being served in this process")
    return _serving


class DistqServer(Server):
    """The stock manager server plus handshake accounting and connection tracking."""

    service: BoardService
    log: EventLog
    listener: connection.Listener
    authkey: bytes
    address: tuple[str, int]

    def __init__(self, registry: Any, address: tuple[str, int], authkey: bytes, serializer: str):
        host = address[0]
        if ":" not in host:
            super().__init__(registry, address, authkey, serializer)
            return
        # The stock server listens with AF_INET whatever the address: bind IPv6 ourselves.
        super().__init__(registry, ("127.0.0.1", 0), authkey, serializer)
        self.listener.close()
        self.listener = connection.Listener(address, family="AF_INET6", backlog=128)
        self.address = (host, self.listener.address[1])

    def attach(
        self, service: BoardService, log: EventLog, policy: DoorPolicy | None = None
    ) -> None:
        """Serve ``service`` from now on: start accepting connections."""
        global _serving
        _serving = service
        self.service = service
        self.log = log
        self.stop_event = threading.Event()
        self._handshakes = threading.BoundedSemaphore(service.config.max_pending_handshakes)
        self._pending_lock = threading.Lock()
        self._pending = 0  # connections whose handshake has not ended yet
        self._open = 0  # connections accepted and not yet closed (handshakes included)
        self._door = Door(policy or DoorPolicy(), time.monotonic)
        self._deadlines = Deadlines(self._flush_refusals)
        # Python before 3.13 listens with a backlog of 16: a burst of connecting workers
        # would see dropped SYNs and a one-second retransmit. listen() again resizes it.
        sock = getattr(getattr(self.listener, "_listener", None), "_socket", None)
        if isinstance(sock, socket.socket):
            sock.listen(max(service.config.max_pending_handshakes, 128))
        self._accepter = threading.Thread(target=self.accepter, name="accepter", daemon=True)
        self._accepter.start()

    def accepter(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                conn = self.listener.accept()
            except OSError as exc:
                if self.stop_event.is_set():
                    return
                # Out of descriptors (EMFILE) the connection stays queued and accept fails
                # again at once: back off instead of spinning, and say so once per streak.
                if failures == 0 and exc.errno in _OUT_OF_RESOURCES:
                    self.log.write("accept_failed", reason=exc.strerror or str(exc))
                failures += 1
                self.stop_event.wait(min(1.0, 0.005 * 2 ** min(failures, 8)))
                continue
            failures = 0
            host, peer = _peer(conn)
            with self._pending_lock:
                # Past half the pending handshakes the master takes, each address is held
                # to its share: a flood from one address leaves room for the others.
                crowded = self._pending >= self.service.config.max_pending_handshakes // 2
                admitted = self._door.admit(host, crowded=crowded)
            if not admitted or not self._handshakes.acquire(blocking=False):
                if admitted:
                    with self._pending_lock:
                        self._door.release(host, ok=None)
                self._refuse_busy(conn, host, peer)
                continue
            with self._pending_lock:
                self._pending += 1
                self._open += 1
            threading.Thread(
                target=self.handle_request, args=(conn, host, peer), daemon=True
            ).start()

    def _refuse_busy(self, conn: connection.Connection, host: str, peer: str) -> None:
        """Tell the peer the master is busy (a worker retries) and close at once."""
        with contextlib.suppress(OSError), socket.socket(fileno=conn.fileno()) as sock:
            try:
                sock.send(struct.pack("!i", len(BUSY)) + BUSY, socket.MSG_DONTWAIT)
            finally:
                sock.detach()
        conn.close()
        if self._alone("auth_rejected", host, "busy"):
            self.log.write(
                "auth_rejected", peer=peer, kind="busy", reason="too many pending handshakes"
            )

    def _alone(self, ev: str, host: str, kind: str) -> bool:
        """Whether a refusal is logged on its own line now (else the door counts it for
        the next summary line)."""
        with self._pending_lock:
            return self._door.refused(ev, host, kind)

    def _flush_refusals(self, force: bool = False) -> None:
        with self._pending_lock:
            due = self._door.summaries(force=force)
        for ev, fields in due:
            self.log.write(ev, **fields)

    def pending_handshakes(self) -> int:
        with self._pending_lock:
            return self._pending

    def open_connections(self) -> int:
        """Accepted connections not closed yet: a worker between its handshake and its
        first call counts, so a stopping master still answers it."""
        with self._pending_lock:
            return self._open

    def handle_request(self, conn: connection.Connection, host: str = "?", peer: str = "?") -> None:
        try:
            self._handle_request(conn, host, peer)
        except SystemExit:  # serve_client() ends with sys.exit(0) on EOF
            pass
        except JournalDown:
            pass  # no reply: the caller sees the connection close, "master lost"
        finally:
            conn.close()

    def _handle_request(self, c: connection.Connection, host: str = "?", peer: str = "?") -> None:
        try:
            request: Any = None
            try:
                request = self._handshake(c, host, peer)
            finally:
                with self._pending_lock:
                    self._pending -= 1
                    self._door.release(host, ok=request is not None)
                self._handshakes.release()
            if request is not None:
                self._dispatch(c, request)  # a worker's whole session, until it hangs up
        finally:
            with self._pending_lock:
                self._open -= 1

    def _handshake(self, c: connection.Connection, host: str, peer: str) -> Any:
        """Authenticate both ways and read the first request, all within one deadline,
        or log why not (-> None)."""
        with self._pending_lock:
            penalty_s = self._door.penalty_s(host)
        if penalty_s:
            # A peer that keeps failing waits before each try: guessing the key gets slow.
            self.stop_event.wait(penalty_s)
        with contextlib.suppress(OSError), socket.socket(fileno=c.fileno()) as sock:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            finally:
                sock.detach()
        token = self._deadlines.arm(c.fileno(), self.service.config.handshake_timeout_s)
        failure: tuple[str, str] | None = None
        try:
            connection.deliver_challenge(c, self.authkey)
            connection.answer_challenge(c, self.authkey)
            request = c.recv()
        except AuthenticationError as exc:
            failure = ("bad_key", str(exc))
        except (OSError, EOFError, AssertionError) as exc:
            # Garbage, a peer that hung up mid-handshake, or a non-manager client.
            failure = ("protocol", str(exc) or type(exc).__name__)
        finally:
            expired = self._deadlines.disarm(token)
        if expired:
            if self._alone("handshake_timeout", host, "timeout"):
                self.log.write("handshake_timeout", peer=peer)
            return None
        if failure is not None:
            kind, reason = failure
            if self._alone("auth_rejected", host, kind):
                self.log.write("auth_rejected", peer=peer, kind=kind, reason=reason)
            return None
        return request

    def _dispatch(self, c: connection.Connection, request: Any) -> None:
        try:
            _ignore, funcname, args, kwds = request
            if funcname not in self.public:
                raise ValueError(f"{funcname!r} unrecognized")
            func = getattr(self, funcname)
        except Exception:
            msg: tuple[str, Any] = ("#TRACEBACK", format_exc())
        else:
            try:
                msg = ("#RETURN", func(c, *args, **kwds))
            except Exception:
                msg = ("#TRACEBACK", format_exc())
        with contextlib.suppress(Exception):  # the peer is gone; handle_request closes it
            c.send(msg)

    def serve_client(self, conn: connection.Connection) -> None:
        set_caller(conn)
        try:
            super().serve_client(conn)
        finally:
            set_caller(None)
            self.service.connection_closed(conn)

    def close(self) -> None:
        """Stop accepting connections; the ones open keep their threads until they end.
        Refusals still counted go out now: none is left uncounted."""
        self.stop_event.set()
        self.listener.close()
        self._deadlines.close()
        self._flush_refusals(force=True)

    def detach(self) -> None:
        """Serve nothing any more (the master is done). Refusals of handshakes that ended
        after ``close`` are counted too."""
        global _serving
        _serving = None
        if hasattr(self, "_door"):
            self._flush_refusals(force=True)


def _peer(conn: connection.Connection) -> tuple[str, str]:
    """(host, host:port) of the connection's peer."""
    try:
        with socket.socket(fileno=conn.fileno()) as sock:
            try:
                address = sock.getpeername()
                return str(address[0]), format_address(address)
            finally:
                sock.detach()
    except OSError:
        return "?", "?"


class Deadlines:
    """One thread that ends handshakes past their deadline: it shuts the socket down,
    so the handshake's read returns at once however the peer drips its bytes. Also
    calls ``every_s`` periodically (the refusal summaries)."""

    def __init__(self, periodic: Callable[[], None], every_s: float = 0.25) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._fds: dict[int, int] = {}  # live token -> descriptor
        self._expired: set[int] = set()
        self._tokens = itertools.count()
        self._periodic = periodic
        self._every_s = every_s
        self._closed = False
        threading.Thread(target=self._run, name="handshake-deadlines", daemon=True).start()

    def arm(self, fd: int, within_s: float) -> int:
        token = next(self._tokens)
        with self._cond:
            self._fds[token] = fd
            heapq.heappush(self._heap, (time.monotonic() + within_s, token))
            self._cond.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Stop watching; True when the deadline had passed (the socket is shut down)."""
        with self._cond:
            self._fds.pop(token, None)
            if token in self._expired:
                self._expired.discard(token)
                return True
            return False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        next_periodic = time.monotonic() + self._every_s
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, token = heapq.heappop(self._heap)
                    fd = self._fds.pop(token, None)
                    if fd is None:
                        continue  # disarmed in time
                    self._expired.add(token)
                    # Under the lock: the handshake closes its descriptor only after
                    # disarm, so this is still the same socket.
                    with contextlib.suppress(OSError), socket.socket(fileno=fd) as sock:
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        finally:
                            sock.detach()
                wake = next_periodic
                if self._heap:
                    wake = min(wake, self._heap[0][0])
                self._cond.wait(max(0.0, wake - now))
            if time.monotonic() >= next_periodic:
                next_periodic = time.monotonic() + self._every_s
                self._periodic()


class ServedManager(DistqManager):
    """The master's own manager class: the only one on which ``board`` has a callable,
    so clients never import (or register) anything of the master."""

    _registry: Any
    _serializer: str

    def get_server(self) -> DistqServer:
        return DistqServer(self._registry, self._address, self._authkey, self._serializer)


ServedManager.register("board", callable=current_service, proxytype=BoardProxy)
