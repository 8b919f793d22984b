"""The Job tutorial's master: dispatch Jobs in batches of 10 and, as the tutorial does,
collect results "while the dispatch queue is not empty" before sending the next batch.

    python batch_master.py PORT AUTHKEY [BATCHES] [RESULT_TIMEOUT_S]

That loop is the bug the tutorial ships: the dispatch queue is empty as soon as workers
have *taken* the jobs, not when they have finished them, so the next batch goes out while
the last one still runs, and the last results are never collected.
"""

import queue
import sys
from multiprocessing.managers import BaseManager

from tasks import Job

BATCH_SIZE = 10

dispatch_queue: "queue.Queue[Job]" = queue.Queue()
result_queue: "queue.Queue[object]" = queue.Queue()


def get_dispatch_queue() -> "queue.Queue[Job]":
    return dispatch_queue


def get_result_queue() -> "queue.Queue[object]":
    return result_queue


class JobManager(BaseManager):
    pass


JobManager.register("get_dispatch_queue", callable=get_dispatch_queue)
JobManager.register("get_result_queue", callable=get_result_queue)


def main() -> None:
    port, authkey = int(sys.argv[1]), sys.argv[2].encode()
    batches = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    result_timeout_s = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    manager = JobManager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    dispatch = manager.get_dispatch_queue()
    results = manager.get_result_queue()
    job_id = 0
    for _ in range(batches):
        for _ in range(BATCH_SIZE):
            dispatch.put(Job(job_id, job_id + 1))
            job_id += 1
        while not dispatch.empty():  # the tutorial's barrier
            result = results.get(timeout=result_timeout_s)
            print(f"job {result.job_id} done: {result.value}", flush=True)
    manager.shutdown()
    print("master exit", flush=True)


if __name__ == "__main__":
    main()
