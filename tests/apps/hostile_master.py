"""A BaseManager master that puts one hostile task: a pickle that appends the pid of
whoever unpickles it to MARKER. The manager's server process does (pickle from anyone with
the key is code execution); the harness, which decodes the same frame, must not.

    python hostile_master.py PORT AUTHKEY MARKER
"""

import os
import queue
import sys
from collections.abc import Callable
from multiprocessing.managers import BaseManager

task_queue: "queue.Queue[object]" = queue.Queue()
result_queue: "queue.Queue[object]" = queue.Queue()


def get_task_queue() -> "queue.Queue[object]":
    return task_queue


def get_result_queue() -> "queue.Queue[object]":
    return result_queue


class Hostile:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, (f"echo $PPID >> {self.marker}",))


class QueueManager(BaseManager):
    pass


QueueManager.register("get_task_queue", callable=get_task_queue)
QueueManager.register("get_result_queue", callable=get_result_queue)


def main() -> None:
    port, authkey, marker = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
    manager = QueueManager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    manager.get_task_queue().put(Hostile(marker))
    manager.shutdown()


if __name__ == "__main__":
    main()
