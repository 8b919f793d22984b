"""Tasks as ``(job_id, n)`` tuples, where many jobs share an ``n``; a worker takes up to
three at a time and puts their ``(job_id, n * n)`` results back in reverse order.

    python tuple_tasks.py master PORT AUTHKEY COUNT
    python tuple_tasks.py worker PORT AUTHKEY [WORK_S] [--twice ID]

``--twice ID``: the worker puts job ID's result twice (a bug).
"""

import queue
import sys
import time
from multiprocessing.managers import BaseManager

task_queue = queue.Queue()
result_queue = queue.Queue()


class TupleManager(BaseManager):
    pass


TupleManager.register("get_task_queue", callable=lambda: task_queue)
TupleManager.register("get_result_queue", callable=lambda: result_queue)


def master(port, authkey, count):
    manager = TupleManager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    tasks, results = manager.get_task_queue(), manager.get_result_queue()
    for job_id in range(count):
        tasks.put((job_id, job_id % 3))
    table = {}
    for _ in range(count):
        try:
            job_id, value = results.get(timeout=10)
        except queue.Empty:
            break
        table[job_id] = value
    try:  # what is left over (a result put twice), so nothing stays in the queue
        while True:
            job_id, value = results.get(timeout=0.5)
            print(f"again: {job_id}", flush=True)
    except queue.Empty:
        pass
    print(f"{len(table)} of {count}: {table}", flush=True)
    manager.shutdown()


def worker(port, authkey, work_s, twice):
    manager = TupleManager(address=("127.0.0.1", port), authkey=authkey)
    manager.connect()
    tasks, results = manager.get_task_queue(), manager.get_result_queue()
    while True:
        batch = []
        try:
            batch.append(tasks.get(timeout=1))
            while len(batch) < 3:
                batch.append(tasks.get_nowait())
        except queue.Empty:
            pass
        if not batch:
            break
        time.sleep(work_s)
        for job_id, n in reversed(batch):
            results.put((job_id, n * n))
            if job_id == twice:
                results.put((job_id, n * n))


if __name__ == "__main__":
    role, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    rest = sys.argv[4:]
    if role == "master":
        master(port, authkey, int(rest[0]))
    else:
        twice = int(rest[rest.index("--twice") + 1]) if "--twice" in rest else None
        worker(port, authkey, float(rest[0]) if rest and rest[0][0].isdigit() else 0.05, twice)
