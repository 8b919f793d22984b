"""A distq master under a handshake flood: does a new worker still get in, and does it
still work at speed?

Two runs of the same jobs (``square`` with a short sleep each), one worker each:
unflooded, and flooded. In the flooded run, before the worker is started and until the
master exits, the benchmark's threads hold, from addresses other than the worker's:
1000 wrong-key handshakes (32 at a time, from 127.0.0.2; those past the address's share
are told "busy"), 128 slow-drip sockets (a frame
announced, then one byte every 3 s each, reconnecting when dropped; from 127.0.0.3) and
200 idle sockets that reconnect as soon as they are dropped (from 127.0.0.4). The worker
(from 127.0.0.1) must join within its --connect-timeout-s; its rate is the master's
"first lease -> last result" window. The master's peak threads and descriptors are
sampled, and its event log's refusal lines are counted against the stated bound: per
attacking address, 5 one by one plus one line per kind of refusal per second.

Also measured: how many wrong-key verdicts one address gets per second with 64
handshakes at a time (how fast a key could be guessed from it).

The last line of output is one JSON object; exit 1 when the worker did not join or a
result is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from multiprocessing import connection
from multiprocessing.context import AuthenticationError
from pathlib import Path
from typing import Any

import psutil

HOST = "127.0.0.1"
WRONG_KEY_FROM, DRIP_FROM, IDLE_FROM = "127.0.0.2", "127.0.0.3", "127.0.0.4"
CONNECT_TIMEOUT_S = 10.0
RUN_TIMEOUT_S = 180.0
REFUSAL_KINDS = 3  # bad_key/protocol, busy, timeout: the summary lines one address can cost
_WINDOW = re.compile(r"([0-9.]+) s from first lease to last result")


class Flood:
    """The attacking threads; ``stop()`` ends them and closes every socket."""

    def __init__(self, address: tuple[str, int], wrong_keys: int, drips: int, idle: int) -> None:
        self.address = address
        self.stopping = threading.Event()
        self.wrong_key_attempts = 0
        self.wrong_key_target = wrong_keys
        self._lock = threading.Lock()
        self.wrong_keys_challenged = 0  # attempts that got as far as a wrong answer
        self._threads = [threading.Thread(target=self._wrong_keys, daemon=True) for _ in range(32)]
        self._threads.append(threading.Thread(target=self._drip, args=(drips,), daemon=True))
        self._threads.append(threading.Thread(target=self._idle, args=(idle,), daemon=True))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(10)

    def _connect(self, source: str) -> socket.socket | None:
        sock = socket.socket()
        try:
            sock.bind((source, 0))
            sock.settimeout(5.0)
            sock.connect(self.address)
            return sock
        except OSError:
            sock.close()
            return None

    def _wrong_keys(self) -> None:
        while not self.stopping.is_set():
            with self._lock:
                if self.wrong_key_attempts >= self.wrong_key_target:
                    return
                self.wrong_key_attempts += 1
            sock = self._connect(WRONG_KEY_FROM)
            if sock is None:
                continue
            sock.settimeout(None)
            conn = connection.Connection(sock.detach())
            try:
                first = conn.recv_bytes(256)
                if first.startswith(b"#CHALLENGE#"):
                    with self._lock:
                        self.wrong_keys_challenged += 1
                    replay = _Replay(conn, first)
                    connection.answer_challenge(replay, secrets.token_bytes(16))  # type: ignore[arg-type]
            except (AuthenticationError, AssertionError, OSError, EOFError):
                pass
            finally:
                conn.close()

    def _drip(self, count: int) -> None:
        socks: list[socket.socket | None] = [None] * count
        while not self.stopping.is_set():
            for index in range(count):
                sock = socks[index]
                try:
                    if sock is None:
                        sock = socks[index] = self._connect(DRIP_FROM)
                        if sock is not None:
                            sock.sendall(struct.pack("!i", 200))
                    elif sock is not None:
                        sock.sendall(b"x")
                except OSError:
                    if sock is not None:
                        sock.close()
                    socks[index] = None
            self.stopping.wait(3.0)
        for sock in socks:
            if sock is not None:
                sock.close()

    def _idle(self, count: int) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        live = 0
        while not self.stopping.is_set():
            while live < count and not self.stopping.is_set():
                sock = self._connect(IDLE_FROM)
                if sock is None:
                    self.stopping.wait(0.01)
                    continue
                selector.register(sock, selectors.EVENT_READ)
                live += 1
            for key, _ in selector.select(0.1):
                # Anything readable is the master's refusal (busy, or closed at the
                # handshake deadline): reconnect at once.
                refused = key.fileobj
                assert isinstance(refused, socket.socket)
                selector.unregister(refused)
                refused.close()
                live -= 1
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()


class _Replay:
    def __init__(self, conn: connection.Connection, first: bytes) -> None:
        self._conn, self._first = conn, first

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        first, self._first = self._first, b""
        return first or self._conn.recv_bytes(maxlength)

    def send_bytes(self, buf: bytes) -> None:
        self._conn.send_bytes(buf)


class Sampler:
    """Peak threads and descriptors of one process, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_threads = 0
        self.peak_fds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(psutil.Error):
                self.peak_threads = max(self.peak_threads, self.process.num_threads())
                self.peak_fds = max(self.peak_fds, self.process.num_fds())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(jobs: int, delay_s: float, flooded: bool, workdir: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "DISTQ_T0"}
    env["DISTQ_AUTHKEY"] = secrets.token_hex(16)
    name = "flooded" if flooded else "unflooded"
    jobs_path = workdir / f"{name}.jobs.jsonl"
    jobs_path.write_text(
        "".join(json.dumps({"task": "square", "args": [i, delay_s]}) + "\n" for i in range(jobs))
    )
    events = workdir / f"{name}.events.jsonl"
    results = workdir / f"{name}.results.jsonl"
    argv = [sys.executable, "-m", "distq", "master", "--jobs", str(jobs_path), "--host", HOST]
    argv += ["--events", str(events), "--results", str(results)]
    master = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    worker: subprocess.Popen[bytes] | None = None
    flood: Flood | None = None
    sampler = Sampler(master.pid)
    try:
        assert master.stdout is not None
        ready = master.stdout.readline().decode().split()
        if len(ready) != 2 or ready[0] != "READY":
            raise SystemExit(f"the master did not start: {ready}")
        host, _, port = ready[1].rpartition(":")
        if flooded:
            flood = Flood((host, int(port)), wrong_keys=1000, drips=128, idle=200)
            flood.start()
            time.sleep(1.0)  # let the flood take hold before the worker comes
        started = time.monotonic()
        worker_argv = [sys.executable, "-m", "distq", "worker", "--connect", ready[1]]
        worker_argv += ["--name", "real", "--connect-timeout-s", str(CONNECT_TIMEOUT_S)]
        worker = subprocess.Popen(worker_argv, env=env, stderr=subprocess.PIPE)
        joined_s = _wait_joined(events, started, CONNECT_TIMEOUT_S + 5)
        _, stderr = master.communicate(timeout=RUN_TIMEOUT_S)
        worker_code = worker.wait(30)
    finally:
        sampler.stop()
        if flood is not None:
            flood.stop()
        for proc in (master, worker):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL) if proc is master else proc.kill()
                proc.wait()
    text = stderr.decode(errors="replace")
    window = _WINDOW.findall(text)
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    got = {r["job"]: r["value"] for r in lines}
    wrong = sorted(i for i in range(jobs) if got.get(i) != i * i)
    correct = master.returncode == 0 and not wrong and len(lines) == jobs
    history = [json.loads(line) for line in events.read_text().splitlines()]
    refusals = [e for e in history if e["ev"] in ("auth_rejected", "handshake_timeout")]
    duration_s = history[-1]["t"] - history[0]["t"] if history else 0.0
    return {
        "jobs_per_s": jobs / float(window[0]) if window else 0.0,
        "joined_s": joined_s,
        "worker_exit": worker_code,
        "correct": correct,
        "results": len(lines),
        "wrong_or_missing": wrong[:10],
        "master_exit": master.returncode,
        "refusal_lines": len(refusals),
        "refusals_counted": sum(int(e.get("count", 1)) for e in refusals),
        "refusal_line_bound": 3 * (5 + REFUSAL_KINDS * (int(duration_s) + 2)) if flooded else 0,
        "event_log_bytes": events.stat().st_size,
        "run_s": round(duration_s, 3),
        "peak_threads": sampler.peak_threads,
        "peak_fds": sampler.peak_fds,
        "wrong_key_attempts": flood.wrong_key_attempts if flood else 0,
        "wrong_keys_challenged": flood.wrong_keys_challenged if flood else 0,
    }


def _wait_joined(events: Path, started: float, bound_s: float) -> float | None:
    """Seconds from the worker's start to its worker_joined event, or None."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if '"ev":"worker_joined"' in events.read_text():
                return round(time.monotonic() - started, 3)
        time.sleep(0.02)
    return None


def guess_rate(duration_s: float = 10.0, threads: int = 64) -> float:
    """Wrong-key verdicts per second one address gets, ``threads`` at a time: how fast
    a key can be guessed from one address (the master slows repeated failures down)."""
    env = {k: v for k, v in os.environ.items() if k != "DISTQ_T0"}
    env["DISTQ_AUTHKEY"] = secrets.token_hex(16)
    argv = [sys.executable, "-m", "distq", "master", "--open", "--host", HOST]
    master = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    verdicts = 0
    lock = threading.Lock()
    stop = threading.Event()

    def guess() -> None:
        nonlocal verdicts
        while not stop.is_set():
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.5", 0))
                sock.connect(address)
                conn = connection.Connection(sock.detach())
            except OSError:
                sock.close()
                continue
            try:
                first = conn.recv_bytes(256)
                if first.startswith(b"#CHALLENGE#"):
                    connection.answer_challenge(_Replay(conn, first), secrets.token_bytes(16))  # type: ignore[arg-type]
            except AuthenticationError:
                with lock:
                    verdicts += 1
            except (AssertionError, OSError, EOFError):
                pass
            finally:
                conn.close()

    try:
        assert master.stdout is not None
        host, _, port = master.stdout.readline().decode().split()[1].rpartition(":")
        address = (host, int(port))
        workers = [threading.Thread(target=guess, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        time.sleep(duration_s)  # the measuring window
        stop.set()
        for worker in workers:
            worker.join(10)
    finally:
        master.kill()
        master.wait()
    return verdicts / duration_s


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--delay-s", type=float, default=0.01, help="sleep in each job")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="distq-flood-") as workdir:
        quiet = run(options.jobs, options.delay_s, False, Path(workdir))
        loud = run(options.jobs, options.delay_s, True, Path(workdir))
    guesses_per_s = guess_rate()
    ratio = loud["jobs_per_s"] / quiet["jobs_per_s"] if quiet["jobs_per_s"] else 0.0
    for label, figures in (("unflooded", quiet), ("flooded", loud)):
        print(f"{label}: {json.dumps(figures)}")
    ok = loud["joined_s"] is not None and quiet["correct"] and loud["correct"]
    summary = {
        "benchmark": "flood",
        "jobs": options.jobs,
        "job_delay_s": options.delay_s,
        "unflooded_jobs_per_s": round(quiet["jobs_per_s"], 1),
        "flooded_jobs_per_s": round(loud["jobs_per_s"], 1),
        "ratio": round(ratio, 3),
        "ratio_target": 0.8,
        "new_worker_joined_s": loud["joined_s"],
        "connect_timeout_s": CONNECT_TIMEOUT_S,
        "wrong_key_attempts": loud["wrong_key_attempts"],
        "wrong_keys_challenged": loud["wrong_keys_challenged"],
        "refusals_counted": loud["refusals_counted"],
        "refusal_lines": loud["refusal_lines"],
        "refusal_line_bound": loud["refusal_line_bound"],
        "event_log_bytes": loud["event_log_bytes"],
        "peak_threads": loud["peak_threads"],
        "peak_fds": loud["peak_fds"],
        "unflooded_peak_threads": quiet["peak_threads"],
        "unflooded_peak_fds": quiet["peak_fds"],
        "results_correct": quiet["correct"] and loud["correct"],
        "worker_exits": [quiet["worker_exit"], loud["worker_exit"]],
        "wrong_key_verdicts_per_s_one_address": round(guesses_per_s, 1),
        "ok": ok and loud["refusal_lines"] <= loud["refusal_line_bound"],
    }
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
