"""A producer on ``distq.client.Submitter``: submits jobs to an open master while the
workers run, the way a program feeding distq does. The scenario library runs it as the
``producer`` role (``[system] producer = ["python", "producer.py", "{address}", ...]``).

    python producer.py HOST:PORT --count N [--delay-s D] [--sessions K] [--window W]
                       [--flush-every F] [--hold-after H] [--collect] [--malformed M]
                       [--collect-after-s C] [--abandon-after A]

Jobs are ``square`` of 0..N-1 (with ``--delay-s``, each sleeps that long). ``--sessions``
submitters share the numbers (ids come from each one's own blocks); each flushes every
``--flush-every`` jobs and writes a ``flushed`` event naming the ids the master
acknowledged. ``--hold-after H`` (one session): after flushing the first H jobs, wait to be
killed; the producer started again (the same command) reads its own event log, starts
after what was flushed and finishes the rest. ``--collect``: each submitter collects its
results with ``as_completed``; a result twice, a wrong one or one missing (a timeout)
makes the producer exit 1; ``--collect-after-s C``: only after C seconds (a program that
does other work first, while the results pile up). ``--abandon-after A`` (with ``--collect``): stop iterating
``as_completed`` after A results, then collect the rest with a new one: a result handed
out twice, or one the abandoned iteration took with it, makes the producer exit 1.
``--malformed M``: each session then submits M jobs of no such
task, whose refusals the next flush must report. Then it closes submissions (the master stops once every job is
terminal; also after a refusal, which it counts) and writes ``producer_done`` with its
tally. The authkey comes from DISTQ_AUTHKEY; the event log from HARNESS_EVENTS, its name
from HARNESS_PROCESS (the harness sets both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from distq.client import Submitter
from distq.errors import SubmissionRefused
from harness.contract import FLUSHED, PRODUCER_DONE, EventWriter

HOLD_S = 600  # the harness kills a holding producer long before
MALFORMED_TASK = "no such task"  # neither a built-in nor a module:function reference


def flushed_before(path: str | None) -> int:
    """How many jobs an earlier run of this producer had acknowledged (its own log)."""
    if not path or not os.path.exists(path):
        return 0
    done = 0
    with open(path, encoding="utf-8") as log:
        for line in log:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line torn by the kill
            if event.get("ev") == FLUSHED:
                done = max(done, int(event.get("through", 0)))
    return done


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.submitted = 0
        self.results = 0
        self.duplicates = 0
        self.wrong = 0
        self.refused = 0
        self.unreported = 0
        self.missing = 0


def run_session(
    submitter: Submitter,
    numbers: list[int],
    options: argparse.Namespace,
    log: EventWriter,
    tally: Tally,
) -> None:
    expected: dict[int, int] = {}
    pending: list[int] = []
    args: tuple[Any, ...] = ()
    for number in numbers:
        args = (number, options.delay_s) if options.delay_s else (number,)
        job = submitter.submit("square", list(args))
        expected[job] = number * number
        pending.append(job)
        if len(pending) >= options.flush_every or number == numbers[-1]:
            try:
                submitter.flush()
            except SubmissionRefused as exc:
                with tally.lock:
                    tally.refused += len(exc.refusals)
                raise
            log.write(FLUSHED, jobs=pending, count=len(pending), through=number + 1)
            with tally.lock:
                tally.submitted += len(pending)
            pending = []
            if options.hold_after is not None and number + 1 == options.hold_after:
                time.sleep(HOLD_S)  # killed here: what was flushed must still be done
    if options.malformed:
        submit_malformed(submitter, options.malformed, log, tally)
    if not options.collect:
        return
    time.sleep(options.collect_after_s)
    seen: set[int] = set()
    abandon_after = options.abandon_after
    while True:
        for result in submitter.as_completed(timeout_s=options.collect_timeout_s):
            with tally.lock:
                tally.results += 1
                if result.job_id in seen:
                    tally.duplicates += 1
                elif not result.ok or result.value != expected.get(result.job_id):
                    tally.wrong += 1
            seen.add(result.job_id)
            if abandon_after is not None and len(seen) >= abandon_after:
                break  # the caller stops early: the rest must wait for the next iteration
        else:
            break
        abandon_after = None
    with tally.lock:
        tally.missing += len(set(expected) - seen)


def submit_malformed(submitter: Submitter, count: int, log: EventWriter, tally: Tally) -> None:
    """Submit ``count`` jobs the master must refuse (no such task): each refusal must be
    reported to this producer by the next flush, none silently dropped."""
    bad = [submitter.submit(MALFORMED_TASK, []) for _ in range(count)]
    try:
        submitter.flush()
    except SubmissionRefused as exc:
        reported = {job for job, _reason in exc.refusals}
    else:
        reported = set()
        log.write(FLUSHED, jobs=bad, count=len(bad))  # the master says it took them
    with tally.lock:
        tally.unreported += len(set(bad) - reported)


def main() -> int:
    parser = argparse.ArgumentParser(prog="producer.py")
    parser.add_argument("address")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--window", type=int)
    parser.add_argument("--flush-every", type=int, default=10)
    parser.add_argument("--hold-after", type=int)
    parser.add_argument("--collect", action="store_true")
    parser.add_argument("--malformed", type=int, default=0)
    parser.add_argument("--collect-timeout-s", type=float, default=60.0)
    parser.add_argument("--collect-after-s", type=float, default=0.0)
    parser.add_argument("--abandon-after", type=int)
    options = parser.parse_args()
    key = os.environb[b"DISTQ_AUTHKEY"]
    events = os.environ.get("HARNESS_EVENTS")
    log = EventWriter(events, os.environ.get("HARNESS_PROCESS", "producer"))
    start = flushed_before(events)
    numbers = list(range(start, options.count))
    if start:
        options.hold_after = None  # started again: finish the rest
    submitters = [
        Submitter.connect(
            options.address, key, window=options.window, collect_results=options.collect
        )
        for _ in range(options.sessions)
    ]
    tally = Tally()
    failures: list[BaseException] = []

    def session(index: int) -> None:
        try:
            run_session(submitters[index], numbers[index :: options.sessions], options, log, tally)
        except BaseException as exc:  # reported below, with the tally
            failures.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(options.sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:  # also after a failure, so the master can finish and the run be judged
        submitters[0].close_submissions()
    except Exception as exc:  # refusals again, or the master is gone
        failures.append(exc)
    log.write(
        PRODUCER_DONE,
        submitted=tally.submitted,
        results=tally.results,
        duplicates=tally.duplicates,
        wrong=tally.wrong,
        refused=tally.refused,
        unreported=tally.unreported,
        missing=tally.missing,
    )
    for submitter in submitters:
        submitter.abandon()
    for failure in failures:
        print(f"producer: {type(failure).__name__}: {failure}", file=sys.stderr)
    bad = failures or tally.duplicates or tally.wrong or tally.unreported or tally.missing
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
