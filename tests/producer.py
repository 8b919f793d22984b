"""A producer process for the submitter tests: submits ``square`` jobs one call at a time
through the pipelined ``Submitter`` and says how far it got on stdout, one line at a time.

    python -m tests.producer HOST:PORT --jobs N [--report-every M] [--flush-at K]

Prints ``submitted COUNT`` every M jobs; with --flush-at, after K jobs it flushes and
prints ``flushed IDS`` (a JSON list, in submission order); after the last job it prints
``waiting`` and waits to be killed. The authkey comes from DISTQ_AUTHKEY.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from distq.client import Submitter


def main() -> None:
    parser = argparse.ArgumentParser(prog="tests.producer")
    parser.add_argument("address")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--report-every", type=int, default=1000)
    parser.add_argument("--flush-at", type=int)
    options = parser.parse_args()
    submitter = Submitter.connect(options.address, os.environb[b"DISTQ_AUTHKEY"])
    ids: list[int] = []
    for n in range(options.jobs):
        ids.append(submitter.submit("square", [n]))
        if (n + 1) % options.report_every == 0:
            print(f"submitted {n + 1}", flush=True)
        if options.flush_at is not None and n + 1 == options.flush_at:
            submitter.flush()
            print(f"flushed {json.dumps(ids)}", flush=True)
    print("waiting", flush=True)
    deadline = time.monotonic() + 600  # the test kills us long before
    while time.monotonic() < deadline:
        time.sleep(1)


if __name__ == "__main__":
    main()
