"""Put on ``PYTHONPATH`` of an unmodified BaseManager master by the harness: its client
connections to the app's port go through the harness's relay, faulthandler answers the
stack-dump signal, and any sitecustomize found further down the path still runs.

Configured by ``DISTQ_WIRE_REDIRECT`` (``APP_PORT=RELAY_HOST:RELAY_PORT``), on hosts of
their own ``DISTQ_WIRE_APP_HOST`` (the serving host's address, the app's too), and
``DISTQ_WIRE_STACKS_SIGNAL`` (a signal number). Standard library only; never raises.
"""

import os
import sys
from typing import Any


def _redirect() -> None:
    spec = os.environ.get("DISTQ_WIRE_REDIRECT", "")
    if not spec:
        return
    app_port, _, relay = spec.partition("=")
    relay_host, _, relay_port = relay.rpartition(":")
    target = (relay_host, int(relay_port))
    port = int(app_port)
    local = {"", "0.0.0.0", "127.0.0.1", "localhost", "::", "::1"}
    app_host = os.environ.get("DISTQ_WIRE_APP_HOST", "")  # on hosts of their own
    if app_host:
        local.add(app_host)

    from multiprocessing import connection

    original = getattr(connection, "SocketClient")  # noqa: B009 (not in typeshed)

    def socket_client(address: Any) -> Any:
        # Client() and XmlClient() both look SocketClient up at call time.
        if isinstance(address, tuple) and address[1:2] == (port,) and address[0] in local:
            address = target
        return original(address)

    setattr(connection, "SocketClient", socket_client)  # noqa: B010


def _stacks() -> None:
    number = os.environ.get("DISTQ_WIRE_STACKS_SIGNAL", "")
    if number:
        import faulthandler

        faulthandler.register(int(number), all_threads=True)


def _chain() -> None:
    """Import the next sitecustomize on the path, as if this one were not there."""
    import importlib

    here = os.path.dirname(os.path.abspath(__file__))
    saved_path, saved_module = sys.path[:], sys.modules.pop(__name__, None)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        importlib.import_module("sitecustomize")
    except ModuleNotFoundError as exc:
        if exc.name != "sitecustomize":
            raise
    finally:
        sys.path[:] = saved_path
        if saved_module is not None and __name__ not in sys.modules:
            sys.modules[__name__] = saved_module


for _step in (_redirect, _stacks, _chain):
    try:
        _step()
    except Exception as _exc:  # a broken hook must not break the app it watches
        print(f"harness sitecustomize: {_step.__name__[1:]} failed: {_exc!r}", file=sys.stderr)
