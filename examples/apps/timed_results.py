"""Results that carry how they were made: ``{"n", "square", "pid", "took_s"}``. Their pid
and timing change from run to run, so a scenario judges them with a predicate.

    python timed_results.py master PORT AUTHKEY COUNT
    python timed_results.py worker PORT AUTHKEY [WORK_S] [--wrong N]

``--wrong N``: the worker gets N's square wrong (a bug).
"""

import os
import queue
import sys
import time
from multiprocessing.managers import BaseManager

jobs = queue.Queue()
done = queue.Queue()


class TimedManager(BaseManager):
    pass


TimedManager.register("jobs", callable=lambda: jobs)
TimedManager.register("done", callable=lambda: done)


def master(port, authkey, count):
    manager = TimedManager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    todo, finished = manager.jobs(), manager.done()
    for n in range(count):
        todo.put(n)
    slowest = 0.0
    for _ in range(count):
        try:
            slowest = max(slowest, finished.get(timeout=10)["took_s"])
        except queue.Empty:
            break
    print(f"slowest job took {slowest:.3f} s", flush=True)
    manager.shutdown()


def worker(port, authkey, work_s, wrong):
    manager = TimedManager(address=("127.0.0.1", port), authkey=authkey)
    manager.connect()
    todo, finished = manager.jobs(), manager.done()
    while True:
        try:
            n = todo.get(timeout=1)
        except queue.Empty:
            break
        began = time.monotonic()
        time.sleep(work_s)
        square = n * n if n != wrong else n * n - 1
        took_s = time.monotonic() - began
        finished.put({"n": n, "square": square, "pid": os.getpid(), "took_s": took_s})


if __name__ == "__main__":
    role, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    rest = sys.argv[4:]
    if role == "master":
        master(port, authkey, int(rest[0]))
    else:
        wrong = int(rest[rest.index("--wrong") + 1]) if "--wrong" in rest else None
        worker(port, authkey, float(rest[0]) if rest and rest[0][0].isdigit() else 0.05, wrong)
