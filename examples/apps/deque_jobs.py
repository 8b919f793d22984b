"""Jobs in a deque filled inside the server; workers take them with ``popleft()`` until it
is empty and put ``n * n`` on a result queue.

    python deque_jobs.py master PORT AUTHKEY COUNT
    python deque_jobs.py worker PORT AUTHKEY [WORK_S] [--forget N]

``--forget N``: the worker computes N but never puts its result (a bug).
"""

import collections
import queue
import sys
import time
from multiprocessing.managers import BaseManager

jobs = collections.deque()
results = queue.Queue()


class JobManager(BaseManager):
    pass


JobManager.register("get_jobs", callable=lambda: jobs)
JobManager.register("get_results", callable=lambda: results)


def master(port, authkey, count):
    jobs.extend(range(count))  # filled before the server starts: it serves this deque
    manager = JobManager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    answers = manager.get_results()
    squares = []
    for _ in range(count):
        try:
            squares.append(answers.get(timeout=10))
        except queue.Empty:
            break
    print(f"{len(squares)} of {count} squares, sum {sum(squares)}", flush=True)
    manager.shutdown()


def worker(port, authkey, work_s, forget):
    manager = JobManager(address=("127.0.0.1", port), authkey=authkey)
    manager.connect()
    todo, answers = manager.get_jobs(), manager.get_results()
    while True:
        try:
            n = todo.popleft()
        except IndexError:
            break
        time.sleep(work_s)
        if n != forget:
            answers.put(n * n)


if __name__ == "__main__":
    role, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    if role == "master":
        master(port, authkey, int(sys.argv[4]))
    else:
        rest = sys.argv[4:]
        forget = int(rest[rest.index("--forget") + 1]) if "--forget" in rest else None
        worker(port, authkey, float(rest[0]) if rest and rest[0][0].isdigit() else 0.1, forget)
