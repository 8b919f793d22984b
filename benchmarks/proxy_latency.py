"""Round-trip overhead of the harness's fault proxy with no toxic, over loopback.

An echo server (a ``multiprocessing.connection`` listener with an authkey, in a child
process) answers small frames; the client times request/reply round trips straight to it
and through a ``FaultProxy``, in alternating blocks so drift hits both alike. Prints both
medians and, as the last line, one JSON object. Target: median overhead under 1 ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import secrets
import socket
import statistics
import sys
import threading
import time
from multiprocessing import connection
from multiprocessing.connection import Connection

from distq.protocol import authenticated_client
from harness.net.proxy import FaultProxy

HOST = "127.0.0.1"
TARGET_OVERHEAD_MS = 1.0


def _echo(conn: Connection) -> None:
    with socket.socket(fileno=conn.fileno()) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.detach()
    try:
        while True:
            conn.send_bytes(conn.recv_bytes())
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def serve_echo(authkey: bytes, address_out: Connection) -> None:
    """The child process: accept connections forever, one echo thread each."""
    with connection.Listener((HOST, 0), authkey=authkey) as listener:
        address_out.send(listener.address)
        address_out.close()
        while True:
            conn = listener.accept()
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def round_trips_ms(conn: Connection, payload: bytes, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        conn.send_bytes(payload)
        if conn.recv_bytes() != payload:
            raise RuntimeError("the echo came back different")
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=4000, help="per path (default 4000)")
    parser.add_argument("--blocks", type=int, default=8, help="alternating blocks (default 8)")
    parser.add_argument("--payload-bytes", type=int, default=100, help="frame size (default 100)")
    options = parser.parse_args(argv)
    authkey = secrets.token_bytes(16)
    payload = secrets.token_bytes(options.payload_bytes)
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    server = context.Process(target=serve_echo, args=(authkey, sender), daemon=True)
    server.start()
    proxy = FaultProxy("bench", seed=0)
    try:
        if not receiver.poll(30):
            raise RuntimeError("the echo server did not start")
        echo_address = receiver.recv()
        proxy_address = proxy.start(upstream=echo_address)
        direct = authenticated_client(echo_address, authkey=authkey)
        proxied = authenticated_client(proxy_address, authkey=authkey)
        per_block = max(1, options.round_trips // options.blocks)
        round_trips_ms(direct, payload, 200)  # warm up both paths
        round_trips_ms(proxied, payload, 200)
        direct_ms: list[float] = []
        proxied_ms: list[float] = []
        for _ in range(options.blocks):
            direct_ms += round_trips_ms(direct, payload, per_block)
            proxied_ms += round_trips_ms(proxied, payload, per_block)
        direct.close()
        proxied.close()
    finally:
        proxy.close()
        server.kill()
        server.join(5)
    direct_median = statistics.median(direct_ms)
    proxied_median = statistics.median(proxied_ms)
    overhead = proxied_median - direct_median
    verdict = "meets" if overhead < TARGET_OVERHEAD_MS else "misses"
    print(
        f"{len(direct_ms)} round trips of {options.payload_bytes} B each way: "
        f"direct median {direct_median:.3f} ms (p90 {_p90(direct_ms):.3f}), "
        f"proxied median {proxied_median:.3f} ms (p90 {_p90(proxied_ms):.3f})"
    )
    print(
        f"overhead {overhead:.3f} ms per round trip ({verdict} the target "
        f"< {TARGET_OVERHEAD_MS:g} ms)"
    )
    print(
        json.dumps(
            {
                "direct_median_ms": round(direct_median, 4),
                "proxied_median_ms": round(proxied_median, 4),
                "overhead_median_ms": round(overhead, 4),
            }
        )
    )
    return 0


def _p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


if __name__ == "__main__":
    sys.exit(main())
