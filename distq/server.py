"""The master's server: the stock manager server plus what the tutorials lack.

A bounded, logged handshake (``auth_rejected``, ``handshake_timeout``), ``TCP_NODELAY``,
and a callback when a worker's connection closes, so its leases go back at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from multiprocessing import connection
from multiprocessing.context import AuthenticationError
from multiprocessing.managers import Server
from traceback import format_exc
from typing import Any

from distq.events import EventLog
from distq.protocol import BoardProxy, DistqManager, format_address, set_recv_timeout
from distq.service import BoardService, set_caller

__all__ = ["DistqServer", "ServedManager", "current_service"]

_serving: BoardService | None = None


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

    def attach(self, service: BoardService, log: EventLog) -> None:
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
        # Python before 3.13 listens with a backlog of 16: a burst of connecting workers
        # would see dropped SYNs and a one-second retransmit. listen() again resizes it.
        sock = getattr(getattr(self.listener, "_listener", None), "_socket", None)
        if isinstance(sock, socket.socket):
            sock.listen(max(service.config.max_pending_handshakes, 128))
        self._accepter = threading.Thread(target=self.accepter, name="accepter", daemon=True)
        self._accepter.start()

    def accepter(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn = self.listener.accept()
            except OSError:
                if self.stop_event.is_set():
                    return
                continue
            if not self._handshakes.acquire(blocking=False):
                self.log.write(
                    "auth_rejected",
                    peer=_peer(conn),
                    kind="overload",
                    reason="too many pending handshakes",
                )
                conn.close()
                continue
            with self._pending_lock:
                self._pending += 1
                self._open += 1
            threading.Thread(target=self.handle_request, args=(conn,), daemon=True).start()

    def pending_handshakes(self) -> int:
        with self._pending_lock:
            return self._pending

    def open_connections(self) -> int:
        """Accepted connections not closed yet: a worker between its handshake and its
        first call counts, so a stopping master still answers it."""
        with self._pending_lock:
            return self._open

    def _handle_request(self, c: connection.Connection) -> None:
        try:
            try:
                request = self._handshake(c)
            finally:
                with self._pending_lock:
                    self._pending -= 1
                self._handshakes.release()
            if request is not None:
                self._dispatch(c, request)  # a worker's whole session, until it hangs up
        finally:
            with self._pending_lock:
                self._open -= 1

    def _handshake(self, c: connection.Connection) -> Any:
        """Authenticate both ways and read the first request, or log why not (-> None)."""
        peer = "?"
        try:
            with socket.socket(fileno=c.fileno()) as sock:
                try:
                    peer = format_address(sock.getpeername())
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    set_recv_timeout(sock, self.service.config.handshake_timeout_s)
                finally:
                    sock.detach()
            connection.deliver_challenge(c, self.authkey)
            connection.answer_challenge(c, self.authkey)
            request = c.recv()
            with socket.socket(fileno=c.fileno()) as sock:
                set_recv_timeout(sock, None)
                sock.detach()
        except BlockingIOError:
            self.log.write("handshake_timeout", peer=peer)
            return None
        except AuthenticationError as exc:
            self.log.write("auth_rejected", peer=peer, kind="bad_key", reason=str(exc))
            return None
        except (OSError, EOFError, AssertionError) as exc:
            # Garbage, a peer that hung up mid-handshake, or a non-manager client.
            reason = str(exc) or type(exc).__name__
            self.log.write("auth_rejected", peer=peer, kind="protocol", reason=reason)
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
        """Stop accepting connections; the ones open keep their threads until they end."""
        self.stop_event.set()
        self.listener.close()

    def detach(self) -> None:
        """Serve nothing any more (the master is done)."""
        global _serving
        _serving = None


def _peer(conn: connection.Connection) -> str:
    try:
        with socket.socket(fileno=conn.fileno()) as sock:
            try:
                return format_address(sock.getpeername())
            finally:
                sock.detach()
    except OSError:
        return "?"


class ServedManager(DistqManager):
    """The master's own manager class: the only one on which ``board`` has a callable,
    so clients never import (or register) anything of the master."""

    _registry: Any
    _serializer: str

    def get_server(self) -> DistqServer:
        return DistqServer(self._registry, self._address, self._authkey, self._serializer)


ServedManager.register("board", callable=current_service, proxytype=BoardProxy)
