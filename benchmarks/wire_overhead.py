"""Per-call overhead of watching a BaseManager app on the wire, over loopback.

A real manager server (a child process serving one queue) answers ``put`` and ``get``
calls made straight to it, through a plain relay (a ``FaultProxy``) and through an
observing relay (the same proxy tapped by a ``WireRecorder``: every frame decoded, logged
and translated), in alternating blocks so drift hits all alike. Also times decoding one
small frame alone. Prints the medians and, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import pickle
import queue
import statistics
import sys
import tempfile
import time
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any, cast

from harness.net.proxy import FaultProxy
from harness.wire.decode import decode_payload
from harness.wire.relay import WireRecorder
from harness.wire.translate import QueueNames

AUTHKEY = b"bench-key"
_queue: queue.Queue[Any] = queue.Queue()


def get_task_queue() -> queue.Queue[Any]:
    return _queue


class BenchManager(BaseManager):
    pass


BenchManager.register("get_task_queue", callable=get_task_queue)


def calls_us(tasks: Any, count: int) -> list[float]:
    """Microseconds per call, a put and a get per sample pair."""
    samples = []
    item = {"job_id": 7, "path": "/data/input-0007.csv"}
    for _ in range(count):
        started = time.perf_counter()
        tasks.put(item)
        middle = time.perf_counter()
        tasks.get()
        ended = time.perf_counter()
        samples += [(middle - started) * 1e6, (ended - middle) * 1e6]
    return samples


def decode_us(count: int) -> float:
    frame = pickle.dumps(("7f3a9c2b1d40", "put", ({"job_id": 7, "path": "/data/x.csv"},), {}))
    started = time.perf_counter()
    for _ in range(count):
        decode_payload(frame)
    return (time.perf_counter() - started) / count * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="put+get pairs per path")
    parser.add_argument("--blocks", type=int, default=8, help="alternating blocks (default 8)")
    options = parser.parse_args(argv)
    server = BenchManager(address=("127.0.0.1", 0), authkey=AUTHKEY)
    server.start()
    plain = FaultProxy("plain", seed=0)
    with tempfile.TemporaryDirectory() as run_dir:
        recorder = WireRecorder(
            Path(run_dir), QueueNames("get_task_queue", "get_result_queue"), time.monotonic()
        )
        try:
            address = cast(tuple[str, int], server.address)  # bound to a TCP address above
            plain_address = plain.start(upstream=address)
            observed = recorder.relay("worker-1", address, 0, lambda ev, **fields: None)
            paths: dict[str, Any] = {}
            for name, where in (
                ("direct", address),
                ("relay", plain_address),
                ("observed", observed.address),
            ):
                client = BenchManager(address=where, authkey=AUTHKEY)
                client.connect()
                paths[name] = client.get_task_queue()  # type: ignore[attr-defined]
                calls_us(paths[name], 200)  # warm up
            samples: dict[str, list[float]] = {name: [] for name in paths}
            per_block = max(1, options.calls // options.blocks)
            for _ in range(options.blocks):
                for name, tasks in paths.items():
                    samples[name] += calls_us(tasks, per_block)
            frames = recorder.frames
            errors = list(recorder.callback_errors)
        finally:
            plain.close()
            recorder.close()
            server.shutdown()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    decoding = decode_us(20000)
    relay_overhead = medians["relay"] - medians["direct"]
    observed_overhead = medians["observed"] - medians["direct"]
    print(
        f"{len(samples['direct'])} calls per path: direct median {medians['direct']:.1f} us, "
        f"plain relay {medians['relay']:.1f} us, observing relay {medians['observed']:.1f} us"
    )
    print(
        f"overhead per call: relay {relay_overhead:.1f} us, relay with decoding "
        f"{observed_overhead:.1f} us (decoding's share {observed_overhead - relay_overhead:.1f} us); "
        f"one small frame decodes in {decoding:.1f} us; {frames} frames observed, "
        f"{len(errors)} tap errors"
    )
    print(
        json.dumps(
            {
                "direct_median_us": round(medians["direct"], 2),
                "relay_median_us": round(medians["relay"], 2),
                "observed_median_us": round(medians["observed"], 2),
                "relay_overhead_us": round(relay_overhead, 2),
                "observed_overhead_us": round(observed_overhead, 2),
                "decoding_share_us": round(observed_overhead - relay_overhead, 2),
                "decode_one_frame_us": round(decoding, 2),
                "frames_observed": frames,
                "tap_errors": len(errors),
            }
        )
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
