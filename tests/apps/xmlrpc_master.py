"""A BaseManager master with ``serializer="xmlrpclib"``: it puts three tasks, takes them
back itself and shuts down. Its frames are XML-RPC, not pickles.

    python xmlrpc_master.py PORT AUTHKEY
"""

import queue
import sys
from multiprocessing.managers import BaseManager

task_queue: "queue.Queue[object]" = queue.Queue()


def get_task_queue() -> "queue.Queue[object]":
    return task_queue


class XmlManager(BaseManager):
    pass


XmlManager.register("get_task_queue", callable=get_task_queue)


def main() -> None:
    port, authkey = int(sys.argv[1]), sys.argv[2].encode()
    manager = XmlManager(address=("127.0.0.1", port), authkey=authkey, serializer="xmlrpclib")
    manager.start()
    tasks = manager.get_task_queue()
    for path in ("/data/a.csv", "/data/b.csv", "/data/c.csv"):
        tasks.put({"path": path})
    for _ in range(3):
        print(tasks.get(timeout=5), flush=True)
    manager.shutdown()


if __name__ == "__main__":
    main()
