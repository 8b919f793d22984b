"""The n*n tutorial's worker: connect with the key, take numbers until the queue stays
empty, put one result line per number.

    python task_worker.py HOST PORT AUTHKEY [GET_TIMEOUT_S] [WORK_S]
"""

import queue
import sys
import time
from multiprocessing.managers import BaseManager

from tasks import report


class QueueManager(BaseManager):
    pass


QueueManager.register("get_task_queue")
QueueManager.register("get_result_queue")


def main() -> None:
    host, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    timeout_s = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    work_s = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    manager = QueueManager(address=(host, port), authkey=authkey)
    manager.connect()
    tasks = manager.get_task_queue()
    results = manager.get_result_queue()
    while True:
        try:
            n = tasks.get(timeout=timeout_s)
        except queue.Empty:
            print("task queue is empty", flush=True)
            break
        print(f"run task {n}", flush=True)
        time.sleep(work_s)  # the work
        results.put(report(n))
    print("worker exit", flush=True)


if __name__ == "__main__":
    main()
