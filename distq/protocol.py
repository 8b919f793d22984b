"""The wire seam shared by master and worker: the manager class, the board proxy and a
client connection that sets ``TCP_NODELAY`` and bounds every wait.

distq registers its one shared object on its own ``BaseManager`` subclass, never on
``BaseManager`` itself (registration there is process-global); the callable that makes
it is registered only on the master's subclass (``distq.server``).
"""

from __future__ import annotations

import socket
import struct
import time
from multiprocessing import connection, managers, util
from multiprocessing.context import AuthenticationError
from multiprocessing.managers import BaseManager, BaseProxy
from typing import Any

from distq.jobs import WireJob, WireResult
from distq.submissions import Refusal, WireOutcome, WireSubmission

__all__ = [
    "BUSY",
    "BoardProxy",
    "DistqManager",
    "MasterBusyError",
    "authenticated_client",
    "parse_address",
    "set_recv_timeout",
]

#: The frame a master sends instead of its challenge when it takes no more handshakes
#: (from this address, or at all) for now; a worker retries within its connect timeout.
BUSY = b"#BUSY#"


class MasterBusyError(ConnectionError):
    """The master turned the connection away for now: too many handshakes pending."""


#: Seconds a client waits for any single reply once connected; the server side uses
#: its own handshake timeout.
DEFAULT_RPC_TIMEOUT_S = 60.0


def set_recv_timeout(sock: socket.socket, timeout_s: float | None) -> None:
    """Bound every blocking read on ``sock`` (``None`` or 0: wait forever).

    ``multiprocessing.connection`` reads with ``os.read`` on a blocking descriptor, so a
    Python-level socket timeout does not apply; ``SO_RCVTIMEO`` does: the read fails with
    ``EAGAIN`` (``BlockingIOError``) when the time is up.
    """
    seconds = 0.0 if not timeout_s else max(timeout_s, 0.001)
    whole = int(seconds)
    sock.setsockopt(
        socket.SOL_SOCKET,
        socket.SO_RCVTIMEO,
        struct.pack("ll", whole, int((seconds - whole) * 1_000_000)),
    )


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:5000"`` or ``"[::1]:5000"`` -> (host, port). Raises ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"address {text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"address {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"address {text!r}: port {port} is out of range 0-65535")
    return host, port


def format_address(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ClientSettings:
    """Timeouts for connections made by this process (set once by the worker)."""

    connect_timeout_s: float = 5.0
    handshake_timeout_s: float = 5.0
    rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S


def authenticated_client(
    address: tuple[str, int],
    family: str | None = None,
    authkey: bytes | None = None,
    source_address: tuple[str, int] | None = None,
) -> connection.Connection:
    """Drop-in for ``multiprocessing.connection.Client`` over TCP, with bounded waits.

    Raises ``ConnectionRefusedError`` / ``OSError`` when nothing listens,
    ``TimeoutError`` when the handshake is not answered in time, and
    ``AuthenticationError`` when the key is refused.
    """
    give_up_at = time.monotonic() + ClientSettings.connect_timeout_s
    delay_s = 0.02
    while True:
        try:
            return _authenticated_client(address, authkey, source_address)
        except MasterBusyError:
            # Turned away for now: try again within the connect timeout, then say so.
            if time.monotonic() + delay_s > give_up_at:
                raise
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.5)


def _authenticated_client(
    address: tuple[str, int], authkey: bytes | None, source_address: tuple[str, int] | None
) -> connection.Connection:
    sock = socket.create_connection(
        address, timeout=ClientSettings.connect_timeout_s, source_address=source_address
    )
    try:
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_recv_timeout(sock, ClientSettings.handshake_timeout_s)
        conn = connection.Connection(sock.detach())
    finally:
        sock.close()
    try:
        if authkey is not None:
            first = conn.recv_bytes(256)
            if first == BUSY:
                raise MasterBusyError("the master is busy: too many handshakes pending")
            connection.answer_challenge(_Replay(conn, first), authkey)  # type: ignore[arg-type]
            connection.deliver_challenge(conn, authkey)
    except BlockingIOError:
        conn.close()
        raise TimeoutError("the handshake was not answered in time") from None
    except AssertionError:
        conn.close()
        raise AuthenticationError("the peer does not speak the manager protocol") from None
    except BaseException:
        conn.close()
        raise
    with socket.socket(fileno=conn.fileno()) as view:
        set_recv_timeout(view, ClientSettings.rpc_timeout_s)
        view.detach()
    return conn


class _Replay:
    """A connection whose first frame was already read: hands it out once more."""

    def __init__(self, conn: connection.Connection, first: bytes) -> None:
        self._conn = conn
        self._first: bytes | None = first

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return self._conn.recv_bytes(maxlength)

    def send_bytes(self, buf: bytes) -> None:
        self._conn.send_bytes(buf)


class BoardProxy(BaseProxy):
    """Client side of the master's board service. Each call is one round trip.

    Jobs and results travel as plain tuples (``WireJob``, ``WireResult``): pickling a
    frozen dataclass costs more than the board's own work on it.
    """

    _tls: Any  # BaseProxy's thread-local holder of the connection
    _idset: Any

    _exposed_ = (
        "hello",
        "lease",
        "report",
        "report_and_lease",
        "heartbeat",
        "bye",
        "open_session",
        "reserve_ids",
        "submit_jobs",
        "fetch_results",
        "end_session",
        "close_submissions",
    )

    # BaseProxy.__init__ assigns the stock client and uses it at once (incref); a data
    # descriptor outranks that assignment, so every connection of the proxy is ours.
    @property
    def _Client(self) -> Any:
        return authenticated_client

    @_Client.setter
    def _Client(self, value: Any) -> None:
        pass

    def _incref(self) -> None:
        # The stock proxy shares one connection per thread with every proxy of the same
        # address, and closing any of them closes it: one Submitter's close() cut the
        # connection another one's session lived on. Each proxy has its own instead.
        self._tls = util.ForkAwareLocal()
        self._idset = managers.ProcessLocalSet()  # type: ignore[attr-defined]
        super()._incref()  # type: ignore[misc]

    def hello(self, worker: str, pid: int, host: str, rejoin: bool = False) -> dict[str, Any]:
        if rejoin:
            return self._call("hello", worker, pid, host, True)  # type: ignore[no-any-return]
        return self._call("hello", worker, pid, host)  # type: ignore[no-any-return]

    def abandon(self) -> None:
        """Drop this proxy's connection without telling the master (it is gone or cut):
        no decref on collection, which would wait on a dead address."""
        finalizer = getattr(self, "_close", None)
        if finalizer is not None:
            finalizer.cancel()
        conn = getattr(self._tls, "connection", None)
        if conn is not None:
            conn.close()
            del self._tls.connection

    def lease(self, worker: str, max_n: int, wait_s: float) -> tuple[list[WireJob], bool]:
        return self._call("lease", worker, max_n, wait_s)  # type: ignore[no-any-return]

    def report(self, worker: str, results: list[WireResult]) -> bool:
        return bool(self._call("report", worker, results))

    def report_and_lease(
        self, worker: str, results: list[WireResult], max_n: int, wait_s: float
    ) -> tuple[list[WireJob], bool]:
        """``report`` then ``lease`` in one round trip."""
        reply = self._call("report_and_lease", worker, results, max_n, wait_s)
        return reply  # type: ignore[no-any-return]

    def heartbeat(self, worker: str) -> bool:
        return bool(self._call("heartbeat", worker))

    def open_session(self, collect: bool, window: int | None = None) -> dict[str, Any]:
        return self._call("open_session", collect, window)  # type: ignore[no-any-return]

    def reserve_ids(self, session: str, count: int) -> int:
        return int(self._call("reserve_ids", session, count))

    def submit_jobs(
        self, session: str, jobs: list[WireSubmission], wait_s: float
    ) -> tuple[int, list[Refusal]]:
        return self._call("submit_jobs", session, jobs, wait_s)  # type: ignore[no-any-return]

    def fetch_results(self, session: str, max_n: int, wait_s: float) -> list[WireOutcome]:
        return self._call("fetch_results", session, max_n, wait_s)  # type: ignore[no-any-return]

    def end_session(self, session: str) -> None:
        self._call("end_session", session)

    def close_submissions(self) -> None:
        self._call("close_submissions")

    def bye(self, worker: str) -> None:
        self._call("bye", worker)

    def _call(self, method: str, *args: Any) -> Any:
        call: Any = self._callmethod  # typeshed declares it as returning None
        return call(method, args)


class DistqManager(BaseManager):
    """The manager both sides use. The master serves a subclass of it in-process
    (``distq.server.ServedManager``), the only class where ``board`` has a callable."""

    _address: tuple[str, int]
    _authkey: bytes
    _state: Any

    def __init__(self, address: tuple[str, int], authkey: bytes) -> None:
        super().__init__(address=address, authkey=authkey)
        self._Client = authenticated_client

    def connect(self) -> None:
        conn = authenticated_client(self._address, authkey=self._authkey)
        try:
            managers.dispatch(conn, None, "dummy")  # type: ignore[attr-defined]
        finally:
            conn.close()
        self._state.value = managers.State.STARTED  # type: ignore[attr-defined]

    def board(self) -> BoardProxy:  # replaced by register(); here for the type checker
        raise NotImplementedError


# Clients only name the typeid and its proxy; the callable is the master's business.
DistqManager.register("board", proxytype=BoardProxy)
