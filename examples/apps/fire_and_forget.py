"""Tasks with no result to send back: each worker does the work (here: waits, as if it
resized an image) and asks for the next. The master puts the tasks and one ``None`` per
worker to stop it, waits until the queue stops draining, gives the last tasks a grace, and
stops.

    python fire_and_forget.py master PORT AUTHKEY COUNT WORKERS [GRACE_S]
    python fire_and_forget.py worker PORT AUTHKEY [WORK_S] [--exit-on N]

``--exit-on N``: the worker quits when it is handed N, without doing it (a bug).
"""

import queue
import sys
import time
from multiprocessing.managers import BaseManager

chores = queue.Queue()


class ChoreManager(BaseManager):
    pass


ChoreManager.register("get_chores", callable=lambda: chores)


def master(port, authkey, count, workers, grace_s):
    manager = ChoreManager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    queue_ = manager.get_chores()
    for n in range(count):
        queue_.put(f"image-{n}.png")
    for _ in range(workers):
        queue_.put(None)
    left, quiet_since = queue_.qsize(), time.monotonic()
    while left and time.monotonic() - quiet_since < 3:
        time.sleep(0.05)
        if queue_.qsize() != left:
            left, quiet_since = queue_.qsize(), time.monotonic()
    time.sleep(grace_s)  # the last chores are still being done
    print("all chores handed out", flush=True)
    manager.shutdown()


def worker(port, authkey, work_s, exit_on):
    manager = ChoreManager(address=("127.0.0.1", port), authkey=authkey)
    manager.connect()
    queue_ = manager.get_chores()
    while True:
        name = queue_.get()
        if name is None:
            break
        if name == exit_on:
            sys.exit(0)
        time.sleep(work_s)
        print(f"resized {name}", flush=True)


if __name__ == "__main__":
    role, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    rest = sys.argv[4:]
    if role == "master":
        master(port, authkey, int(rest[0]), int(rest[1]), float(rest[2]) if len(rest) > 2 else 2)
    else:
        exit_on = rest[rest.index("--exit-on") + 1] if "--exit-on" in rest else None
        worker(port, authkey, float(rest[0]) if rest and rest[0][0].isdigit() else 0.05, exit_on)
