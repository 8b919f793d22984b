"""Results appended to a shared list: each worker appends ``[n, n * n]``; the master
watches the list grow and reads it whole at the end.

    python list_results.py master PORT AUTHKEY COUNT
    python list_results.py worker PORT AUTHKEY [WORK_S] [--twice N]

``--twice N``: the worker appends N's result twice (a bug).
"""

import queue
import sys
import time
from multiprocessing.managers import BaseManager, ListProxy

numbers = queue.Queue()
table = []


class ListManager(BaseManager):
    pass


ListManager.register("numbers", callable=lambda: numbers)
ListManager.register("table", callable=lambda: table, proxytype=ListProxy)


def master(port, authkey, count):
    manager = ListManager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    todo, rows = manager.numbers(), manager.table()
    for n in range(count):
        todo.put(n)
    seen, quiet_since = 0, time.monotonic()
    while seen < count and time.monotonic() - quiet_since < 5:
        time.sleep(0.05)
        if len(rows) != seen:
            seen, quiet_since = len(rows), time.monotonic()
    print(f"{seen} rows: {rows[:]}", flush=True)
    manager.shutdown()


def worker(port, authkey, work_s, twice):
    manager = ListManager(address=("127.0.0.1", port), authkey=authkey)
    manager.connect()
    todo, rows = manager.numbers(), manager.table()
    while True:
        try:
            n = todo.get(timeout=1)
        except queue.Empty:
            break
        time.sleep(work_s)
        rows.append([n, n * n])
        if n == twice:
            rows.append([n, n * n])


if __name__ == "__main__":
    role, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    rest = sys.argv[4:]
    if role == "master":
        master(port, authkey, int(rest[0]))
    else:
        twice = int(rest[rest.index("--twice") + 1]) if "--twice" in rest else None
        worker(port, authkey, float(rest[0]) if rest and rest[0][0].isdigit() else 0.05, twice)
