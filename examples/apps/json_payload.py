"""Tasks and results as JSON payloads: each task is bytes holding ``{"id": ..., "path":
...}``, each result text holding ``{"id": ..., "size": ...}``; the job id is inside.

    python json_payload.py master PORT AUTHKEY COUNT
    python json_payload.py worker PORT AUTHKEY [WORK_S] [--garble ID]

``--garble ID``: the worker reports a wrong size for job ID (a bug).
"""

import json
import queue
import sys
import time
from multiprocessing.managers import BaseManager

inbox = queue.Queue()
outbox = queue.Queue()


class PayloadManager(BaseManager):
    pass


PayloadManager.register("inbox", callable=lambda: inbox)
PayloadManager.register("outbox", callable=lambda: outbox)


def master(port, authkey, count):
    manager = PayloadManager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    tasks, results = manager.inbox(), manager.outbox()
    for job_id in range(count):
        tasks.put(json.dumps({"id": job_id, "path": "/srv/img/" + "x" * job_id}).encode())
    sizes = {}
    for _ in range(count):
        try:
            answer = json.loads(results.get(timeout=10))
        except queue.Empty:
            break
        sizes[answer["id"]] = answer["size"]
    print(sizes, flush=True)
    manager.shutdown()


def worker(port, authkey, work_s, garble):
    manager = PayloadManager(address=("127.0.0.1", port), authkey=authkey)
    manager.connect()
    tasks, results = manager.inbox(), manager.outbox()
    while True:
        try:
            task = json.loads(tasks.get(timeout=1))
        except queue.Empty:
            break
        time.sleep(work_s)
        size = len(task["path"]) + (7 if task["id"] == garble else 0)
        results.put(json.dumps({"id": task["id"], "size": size}))


if __name__ == "__main__":
    role, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    rest = sys.argv[4:]
    if role == "master":
        master(port, authkey, int(rest[0]))
    else:
        garble = int(rest[rest.index("--garble") + 1]) if "--garble" in rest else None
        worker(port, authkey, float(rest[0]) if rest and rest[0][0].isdigit() else 0.05, garble)
