"""The n*n tutorial's master: serve a task queue and a result queue, put numbers, collect
result lines, shut down.

    python task_master.py PORT AUTHKEY [COUNT] [PAUSE_S] [RESULT_TIMEOUT_S]

Written the way the tutorials write it, faults included: nothing is retried, a result
that never comes ends the wait after a time-out, and the key is on the command line.
"""

import queue
import sys
import time
from multiprocessing.managers import BaseManager

task_queue: "queue.Queue[int]" = queue.Queue()
result_queue: "queue.Queue[str]" = queue.Queue()


def get_task_queue() -> "queue.Queue[int]":
    return task_queue


def get_result_queue() -> "queue.Queue[str]":
    return result_queue


class QueueManager(BaseManager):
    pass


QueueManager.register("get_task_queue", callable=get_task_queue)
QueueManager.register("get_result_queue", callable=get_result_queue)


def main() -> None:
    port, authkey = int(sys.argv[1]), sys.argv[2].encode()
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    pause_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    result_timeout_s = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0
    manager = QueueManager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    tasks = manager.get_task_queue()
    results = manager.get_result_queue()
    for number in range(count):
        n = 1000 + number  # distinct numbers: each task item names its job
        print(f"put task {n}", flush=True)
        tasks.put(n)
        time.sleep(pause_s)
    print("collecting results", flush=True)
    for _ in range(count):
        try:
            line = results.get(timeout=result_timeout_s)
        except queue.Empty:
            print("no more results", flush=True)
            break
        print(f"result: {line}", flush=True)
    manager.shutdown()
    print("master exit", flush=True)


if __name__ == "__main__":
    main()
