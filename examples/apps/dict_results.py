"""Squares written to a shared dict (``squares[n] = n * n``, or ``update`` in batches); the
master polls ``len()`` until every square is in, then reads a copy.

    python dict_results.py master PORT AUTHKEY COUNT
    python dict_results.py worker PORT AUTHKEY [WORK_S] [--batch K] [--wrong N]

``--batch K``: the worker keeps K squares and writes them with one ``update``;
``--wrong N``: the worker writes a wrong square for N (a bug).
"""

import queue
import sys
import time
from multiprocessing.managers import BaseManager, DictProxy

todo = queue.Queue()
squares = {}


class SquareManager(BaseManager):
    pass


SquareManager.register("get_todo", callable=lambda: todo)
SquareManager.register("get_squares", callable=lambda: squares, proxytype=DictProxy)


def master(port, authkey, count):
    manager = SquareManager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    work, done = manager.get_todo(), manager.get_squares()
    for n in range(count):
        work.put(n)
    seen, quiet_since = 0, time.monotonic()
    while seen < count and time.monotonic() - quiet_since < 5:
        time.sleep(0.05)
        if len(done) != seen:
            seen, quiet_since = len(done), time.monotonic()
    print(f"{seen} of {count} squares: {sorted(done.copy().items())}", flush=True)
    manager.shutdown()


def option(rest, name, default):
    return int(rest[rest.index(name) + 1]) if name in rest else default


def worker(port, authkey, rest):
    manager = SquareManager(address=("127.0.0.1", port), authkey=authkey)
    manager.connect()
    work, done = manager.get_todo(), manager.get_squares()
    work_s = float(rest[0]) if rest and rest[0][0].isdigit() else 0.05
    batch, wrong = option(rest, "--batch", 0), option(rest, "--wrong", None)
    kept = {}
    while True:
        try:
            n = work.get(timeout=1)
        except queue.Empty:
            break
        time.sleep(work_s)
        square = n * n + (1 if n == wrong else 0)
        if not batch:
            done[n] = square
            continue
        kept[n] = square
        if len(kept) >= batch:
            done.update(kept)
            kept.clear()
    if kept:
        done.update(kept)


if __name__ == "__main__":
    role, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    if role == "master":
        master(port, authkey, int(sys.argv[4]))
    else:
        worker(port, authkey, sys.argv[4:])
