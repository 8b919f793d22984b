"""The Job tutorial's worker: take Jobs from the dispatch queue, put a Result for each.

python batch_worker.py HOST PORT AUTHKEY [GET_TIMEOUT_S]
"""

import queue
import sys
import time
from multiprocessing.managers import BaseManager

from tasks import Result


class JobManager(BaseManager):
    pass


JobManager.register("get_dispatch_queue")
JobManager.register("get_result_queue")


def main() -> None:
    host, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    timeout_s = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    manager = JobManager(address=(host, port), authkey=authkey)
    manager.connect()
    dispatch = manager.get_dispatch_queue()
    results = manager.get_result_queue()
    while True:
        try:
            job = dispatch.get(timeout=timeout_s)
        except queue.Empty:
            print("dispatch queue is empty", flush=True)
            break
        time.sleep(0.05)  # the work
        results.put(Result(job.job_id, job.n * job.n))
    print("worker exit", flush=True)


if __name__ == "__main__":
    main()
