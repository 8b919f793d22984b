"""A worker that computes in its main thread and sends results from a collector thread
with a manager connection of its own: its results arrive on another connection than the
one its tasks came on.

    python collector.py master PORT AUTHKEY COUNT
    python collector.py worker PORT AUTHKEY [WORK_S] [--drop N]

``--drop N``: the collector loses N's result (a bug).
"""

import queue
import sys
import threading
import time
from multiprocessing.managers import BaseManager

tasks = queue.Queue()
results = queue.Queue()


class Manager(BaseManager):
    pass


Manager.register("tasks", callable=lambda: tasks)
Manager.register("results", callable=lambda: results)


def connect(port, authkey):
    manager = Manager(address=("127.0.0.1", port), authkey=authkey)
    manager.connect()
    return manager


def master(port, authkey, count):
    manager = Manager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    inbox, outbox = manager.tasks(), manager.results()
    for n in range(10, 10 + count):
        inbox.put(n)
    got = []
    for _ in range(count):
        try:
            got.append(outbox.get(timeout=10))
        except queue.Empty:
            break
    print(f"{len(got)} results of {count}", flush=True)
    manager.shutdown()


def collect(port, authkey, local, drop):
    outbox = connect(port, authkey).results()
    while (item := local.get()) is not None:
        n, value = item
        if n != drop:
            outbox.put(value)


def worker(port, authkey, work_s, drop):
    inbox = connect(port, authkey).tasks()
    local = queue.Queue()
    collector = threading.Thread(target=collect, args=(port, authkey, local, drop))
    collector.start()
    try:
        while True:
            try:
                n = inbox.get(timeout=1)
            except queue.Empty:
                break
            time.sleep(work_s)
            local.put((n, n * n))
    finally:  # the master may be gone (EOFError): the collector still stops
        local.put(None)
        collector.join()


if __name__ == "__main__":
    role, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    rest = sys.argv[4:]
    if role == "master":
        master(port, authkey, int(rest[0]))
    else:
        drop = int(rest[rest.index("--drop") + 1]) if "--drop" in rest else None
        worker(port, authkey, float(rest[0]) if rest and rest[0][0].isdigit() else 0.05, drop)
