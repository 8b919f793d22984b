"""An app in four processes, none of which ever calls ``shutdown()``: a server that
serves two queues until Ctrl-C, a producer that puts the numbers, a collector that reads
the squares and returns, and the workers.

    python serve_forever.py server PORT AUTHKEY
    python serve_forever.py producer PORT AUTHKEY COUNT
    python serve_forever.py collector PORT AUTHKEY COUNT
    python serve_forever.py worker PORT AUTHKEY [WORK_S] [--skip N]

``--skip N``: the worker takes N and quietly drops it (a bug).
"""

import queue
import sys
import time
from multiprocessing.managers import BaseManager

numbers = queue.Queue()
squares = queue.Queue()


class Manager(BaseManager):
    pass


Manager.register("numbers", callable=lambda: numbers)
Manager.register("squares", callable=lambda: squares)


def connect(port, authkey):
    manager = Manager(address=("127.0.0.1", port), authkey=authkey)
    manager.connect()
    return manager


def server(port, authkey):
    manager = Manager(address=("127.0.0.1", port), authkey=authkey)
    manager.get_server().serve_forever()  # until Ctrl-C


def producer(port, authkey, count):
    todo = connect(port, authkey).numbers()
    for n in range(100, 100 + count):
        todo.put(n)
    print(f"put {count} numbers", flush=True)


def collector(port, authkey, count):
    done = connect(port, authkey).squares()
    total = 0
    for _ in range(count):
        try:
            total += done.get(timeout=10)
        except queue.Empty:
            break
    print(f"sum of squares {total}", flush=True)


def worker(port, authkey, work_s, skip):
    manager = connect(port, authkey)
    todo, done = manager.numbers(), manager.squares()
    while True:
        try:
            n = todo.get(timeout=2)
        except queue.Empty:
            break
        time.sleep(work_s)
        if n != skip:
            done.put(n * n)


if __name__ == "__main__":
    role, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    rest = sys.argv[4:]
    if role == "server":
        server(port, authkey)
    elif role in ("producer", "collector"):
        (producer if role == "producer" else collector)(port, authkey, int(rest[0]))
    else:
        skip = int(rest[rest.index("--skip") + 1]) if "--skip" in rest else None
        worker(port, authkey, float(rest[0]) if rest and rest[0][0].isdigit() else 0.05, skip)
