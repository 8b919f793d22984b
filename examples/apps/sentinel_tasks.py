"""Control items in the task queue: the master first puts how many words follow, then the
words, then one ``None`` per worker to stop it. Each result is ``(word, length)``.

    python sentinel_tasks.py master PORT AUTHKEY WORKERS
    python sentinel_tasks.py worker PORT AUTHKEY [WORK_S] [--miscount LETTER]

``--miscount LETTER``: words starting with LETTER are counted one too long (a bug).
"""

import queue
import sys
import time
from multiprocessing.managers import BaseManager

WORDS = "apple quince banana cherry quark date elder fig grape".split()
words_in = queue.Queue()
counts_out = queue.Queue()


class WordManager(BaseManager):
    pass


WordManager.register("words", callable=lambda: words_in)
WordManager.register("counts", callable=lambda: counts_out)


def master(port, authkey, workers):
    manager = WordManager(address=("127.0.0.1", port), authkey=authkey)
    manager.start()
    words, counts = manager.words(), manager.counts()
    words.put(len(WORDS))
    for word in WORDS:
        words.put(word)
    for _ in range(workers):
        words.put(None)
    lengths = {}
    for _ in WORDS:
        try:
            word, length = counts.get(timeout=10)
        except queue.Empty:
            break
        lengths[word] = length
    print(lengths, flush=True)
    manager.shutdown()


def worker(port, authkey, work_s, miscount):
    manager = WordManager(address=("127.0.0.1", port), authkey=authkey)
    manager.connect()
    words, counts = manager.words(), manager.counts()
    while True:
        word = words.get(timeout=10)
        if word is None:
            break
        if isinstance(word, int):
            print(f"{word} words to count", flush=True)
            continue
        time.sleep(work_s)
        counts.put((word, len(word) + (1 if word[0] == miscount else 0)))


if __name__ == "__main__":
    role, port, authkey = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    rest = sys.argv[4:]
    if role == "master":
        master(port, authkey, int(rest[0]))
    else:
        miscount = rest[rest.index("--miscount") + 1] if "--miscount" in rest else None
        worker(port, authkey, float(rest[0]) if rest and rest[0][0].isdigit() else 0.05, miscount)
