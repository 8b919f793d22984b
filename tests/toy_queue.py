"""A toy manager/worker queue that is not distq: proof that the harness's seam is real.

``python -m tests.toy_queue master JOBS EVENTS [--forget-lost] [--broker ADDRESS]`` serves
the jobs file over a JSON-lines TCP protocol; ``python -m tests.toy_queue worker ADDRESS NAME
EVENTS`` takes square jobs until told to stop. Both write the harness's history contract. A
worker's closed connection puts its job back, unless ``--forget-lost`` (the deliberately
broken copy). ``broker PORT`` stands in for a service the master needs before it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness import contract


def master(jobs_path: str, events_path: str, forget_lost: bool, broker: str | None) -> int:
    if broker is not None:  # it must be up first: the cluster starts it before the master
        host, _, port = broker.rpartition(":")
        socket.create_connection((host, int(port)), timeout=5).close()
    log = contract.EventWriter(events_path, contract.MASTER)
    jobs = [json.loads(line) for line in Path(jobs_path).read_text().splitlines() if line]
    pending = list(range(len(jobs)))
    attempts = [0] * len(jobs)
    done: set[int] = set()
    lock = threading.Lock()
    for job, spec in enumerate(jobs):
        log.write(contract.JOB_SUBMITTED, job=job, task=spec["task"], args=spec["args"])

    class Worker(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            name, held = "", None
            # A worker SIGKILLed with a reply still unread ends its connection with a reset,
            # not a close: it is a lost worker all the same, not an error of the handler.
            with contextlib.suppress(ConnectionError):
                for line in self.rfile:
                    request = json.loads(line)
                    with lock:
                        if request["op"] == "hello":
                            name = request["name"]
                            log.write(contract.WORKER_JOINED, worker=name)
                            reply: dict[str, Any] = {"op": "ok"}
                        elif request["op"] == "result":
                            job, held = request["job"], None
                            event = (
                                contract.DUPLICATE_DROPPED
                                if job in done
                                else contract.RESULT_ACCEPTED
                            )
                            done.add(job)
                            log.write(
                                event,
                                job=job,
                                attempt=attempts[job],
                                worker=name,
                                ok=True,
                                value=request["value"],
                            )
                            reply = {"op": "ok"}
                        elif pending:
                            held = pending.pop(0)
                            attempts[held] += 1
                            log.write(
                                contract.LEASED,
                                job=held,
                                attempt=attempts[held],
                                lease=held,
                                worker=name,
                            )
                            reply = {"op": "job", "job": held, **jobs[held]}
                        else:
                            reply = {"op": "stop" if len(done) == len(jobs) else "wait"}
                    self.wfile.write(json.dumps(reply).encode() + b"\n")
            with lock:  # the connection closed: the worker is gone
                lost = [] if held is None or held in done else [held]
                log.write(contract.WORKER_LOST, worker=name, jobs=lost)
                if lost and not forget_lost:
                    pending.insert(0, held)  # type: ignore[arg-type]

    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Worker) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        host, port = server.socket.getsockname()[:2]
        log.write(contract.MASTER_READY, address=f"{host}:{port}", pid=os.getpid())
        while len(done) < len(jobs):
            time.sleep(0.01)
        log.write(contract.MASTER_STOPPED, results=len(done))
        server.shutdown()
    return 0


def worker(address: str, name: str, events_path: str) -> int:
    log = contract.EventWriter(events_path, name)
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        lines = sock.makefile("rb")

        def call(**request: Any) -> dict[str, Any]:
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = lines.readline()
            return json.loads(reply) if reply else {"op": "stop"}  # the master is gone

        call(op="hello", name=name)
        while (reply := call(op="lease"))["op"] != "stop":
            if reply["op"] == "wait":
                time.sleep(0.05)
                continue
            log.write(contract.STARTED, job=reply["job"])
            n, *delay_s = reply["args"]
            time.sleep(delay_s[0] if delay_s else 0)
            call(op="result", job=reply["job"], value=n * n)
    return 0


def broker(port: int) -> int:
    with socket.create_server(("127.0.0.1", port)) as server:
        while True:
            server.accept()[0].close()


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "master":
        at = args.index("--broker") + 1 if "--broker" in args else None
        sys.exit(master(args[0], args[1], "--forget-lost" in args, args[at] if at else None))
    if role == "broker":
        sys.exit(broker(int(args[0])))
    sys.exit(worker(*args))
