"""A BaseManager worker whose work runs in child processes, each with its own connection:
the shape of a worker with a process pool.

    python pool_worker.py HOST PORT AUTHKEY CHILDREN [GET_TIMEOUT_S] [WORK_S] [detach]

The top process only starts the children and waits for them; each child connects to the
master itself, takes numbers until the task queue stays empty, and puts one result each.
With ``detach`` each child double-forks into a session of its own, the way a daemon does:
it leaves the worker's process tree, so no signal to that tree reaches it.
"""

import multiprocessing
import os
import queue
import sys
import time
from multiprocessing.managers import BaseManager


class QueueManager(BaseManager):
    pass


QueueManager.register("get_task_queue")
QueueManager.register("get_result_queue")


def work(host: str, port: int, authkey: bytes, timeout_s: float, work_s: float) -> None:
    manager = QueueManager(address=(host, port), authkey=authkey)
    manager.connect()
    tasks, results = manager.get_task_queue(), manager.get_result_queue()
    while True:
        try:
            n = tasks.get(timeout=timeout_s)
        except queue.Empty:
            return
        time.sleep(work_s)
        results.put(f"{n} * {n} = {n * n}")


def detached(args: tuple[str, int, bytes, float, float]) -> int:
    """Run ``work`` in a grandchild outside this process's tree; a pipe that reads EOF
    when the grandchild is gone."""
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.close(done_r)
            try:
                work(*args)
            finally:
                os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)
    os.close(done_w)
    return done_r


def main() -> None:
    host, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    children = int(sys.argv[4])
    timeout_s = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
    work_s = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    if len(sys.argv) > 7 and sys.argv[7] == "detach":
        pipes = [detached((host, port, authkey, timeout_s, work_s)) for _ in range(children)]
        for done in pipes:
            while os.read(done, 1):
                pass
        print("worker exit", flush=True)
        return
    context = multiprocessing.get_context("fork")
    pool = [
        context.Process(target=work, args=(host, port, authkey, timeout_s, work_s))
        for _ in range(children)
    ]
    for child in pool:
        child.start()
    for child in pool:
        child.join()
    print("worker exit", flush=True)


if __name__ == "__main__":
    main()
