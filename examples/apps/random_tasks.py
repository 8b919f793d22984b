"""The tutorials' shape with their random draws: the tasks are ``randint(1, 4)``, so most
values come several times, and each result is the bare square.

    python random_tasks.py master PORT AUTHKEY COUNT SEED [--host HOST] [--wait S]
    python random_tasks.py worker PORT AUTHKEY [WORK_S] [--lose N] [--host HOST]

``--lose N``: the first time a worker is handed N, it drops the result (a bug).
``--host HOST``: the address the master binds and a worker connects to (default
127.0.0.1), as on machines of their own. ``--wait S``: how long the master waits for each
result before it gives up on the rest (default 5).
"""

import queue
import random
import sys
import time
from multiprocessing.managers import BaseManager

task_queue = queue.Queue()
result_queue = queue.Queue()


class QueueManager(BaseManager):
    pass


QueueManager.register("get_task_queue", callable=lambda: task_queue)
QueueManager.register("get_result_queue", callable=lambda: result_queue)


def master(host, port, authkey, count, seed, wait_s):
    manager = QueueManager(address=(host, port), authkey=authkey)
    manager.start()
    tasks, results = manager.get_task_queue(), manager.get_result_queue()
    draw = random.Random(seed)
    for _ in range(count):
        tasks.put(draw.randint(1, 4))
    total = 0
    for _ in range(count):
        try:
            total += results.get(timeout=wait_s)
        except queue.Empty:
            break
    print(f"sum of squares: {total}", flush=True)
    manager.shutdown()


def worker(host, port, authkey, work_s, lose):
    manager = QueueManager(address=(host, port), authkey=authkey)
    manager.connect()
    tasks, results = manager.get_task_queue(), manager.get_result_queue()
    while True:
        try:
            n = tasks.get(timeout=1)
        except queue.Empty:
            break
        time.sleep(work_s)
        if n == lose:
            lose = None
            continue
        results.put(n * n)


if __name__ == "__main__":
    role, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    rest = sys.argv[4:]
    host = rest[rest.index("--host") + 1] if "--host" in rest else "127.0.0.1"
    if role == "master":
        wait_s = float(rest[rest.index("--wait") + 1]) if "--wait" in rest else 5.0
        master(host, port, authkey, int(rest[0]), int(rest[1]), wait_s)
    else:
        lose = int(rest[rest.index("--lose") + 1]) if "--lose" in rest else None
        work_s = float(rest[0]) if rest and rest[0][0].isdigit() else 0.05
        worker(host, port, authkey, work_s, lose)
