"""A master under hostile or careless peers: slow drips, idle sockets, key guessing,
floods of refusals, no descriptors left, a full disk. Real processes on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from multiprocessing.context import AuthenticationError
from pathlib import Path
from typing import Any

import psutil
import pytest

from distq.errors import EXIT_MASTER_BUSY, EXIT_OUTPUT_FAILED
from distq.events import read_events
from distq.protocol import BUSY, ClientSettings, authenticated_client, parse_address
from harness import systems
from harness.runtime.cluster import Cluster

pytestmark = pytest.mark.processes

BOUND_S = 60.0
PER_PEER = 16  # DoorPolicy.max_pending_per_peer
CROWDED = 64  # half of MasterConfig.max_pending_handshakes: from here on, shares count


def events(cluster: Cluster, ev: str) -> list[dict[str, Any]]:
    return [e for e in read_events(cluster.events_path("master")) if e["ev"] == ev]


def counted(cluster: Cluster, ev: str, **match: Any) -> int:
    """How many refusals the master logged, one by one or as counts."""
    host = match.pop("host", "")
    found = [
        e
        for e in events(cluster, ev)
        if all(e.get(k) == v for k, v in match.items()) and e.get("peer", "").startswith(host)
    ]
    return sum(int(e.get("count", 1)) for e in found)


def open_from(source: str, address: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(BOUND_S)
    sock.connect(parse_address(address))
    return sock


def test_a_slow_drip_cannot_hold_a_handshake_past_one_deadline(tmp_path: Path) -> None:
    args = ["--task", "square", "--count", "1", "--handshake-timeout-s", "1"]
    with Cluster(tmp_path / "run", args) as cluster:
        assert cluster.address is not None
        sock = open_from("127.0.0.1", cluster.address)
        sock.settimeout(0.3)
        started = time.monotonic()
        closed = False
        # A frame of 200 bytes announced, then one byte every 0.3 s: each read is answered
        # well within 1 s; only a deadline for the whole handshake ends it.
        sock.sendall(b"\0\0\0\xc8")
        while time.monotonic() - started < 20:
            try:
                sock.sendall(b"x")
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        sock.close()
        assert closed, "the dripping peer held its handshake for 20 s"
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
    assert counted(cluster, "handshake_timeout") == 1


def test_one_address_cannot_take_every_handshake_slot(tmp_path: Path) -> None:
    args = ["--task", "square", "--count", "4", "--handshake-timeout-s", "30"]
    with Cluster(tmp_path / "run", args) as cluster, ExitStack() as stack:
        assert cluster.address is not None
        idle = [stack.enter_context(open_from("127.0.0.2", cluster.address)) for _ in range(200)]
        # Past its share, that address is told the master is busy, at once.
        turned_away = idle[-1].recv(64)
        assert turned_away[4:] == BUSY
        cluster.add_worker()  # from 127.0.0.1: not held back by 127.0.0.2's sockets
        assert cluster.wait_master(BOUND_S) == 0
        for sock in idle:
            sock.close()
    assert counted(cluster, "auth_rejected", kind="busy", host="127.0.0.2") >= 200 - CROWDED


def test_a_busy_master_is_retried_and_said_to_be_busy(tmp_path: Path) -> None:
    args = ["--task", "square", "--count", "2", "--handshake-timeout-s", "3"]
    with Cluster(tmp_path / "run", args) as cluster, ExitStack() as stack:
        assert cluster.address is not None
        for _ in range(CROWDED):
            stack.enter_context(open_from("127.0.0.1", cluster.address))
        # The door is crowded and the worker's own address holds more than its share: it
        # is told "busy" and keeps trying until the idle sockets time out (3 s), well
        # within its connect timeout.
        impatient = cluster.add_worker("impatient", extra_args=["--connect-timeout-s", "0.5"])
        patient = cluster.add_worker("patient", extra_args=["--connect-timeout-s", "30"])
        assert impatient.popen.wait(BOUND_S) == EXIT_MASTER_BUSY
        assert cluster.wait_master(BOUND_S) == 0
        assert patient.popen.wait(BOUND_S) == 0
    log = impatient.log_path.read_text().strip().splitlines()
    assert len(log) == 1, log
    assert "was busy (too many handshakes pending)" in log[0], log


def test_repeated_wrong_keys_from_one_address_are_slowed_down(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--task", "square", "--count", "1"]) as cluster:
        assert cluster.address is not None
        address = parse_address(cluster.address)
        ClientSettings.handshake_timeout_s = 10.0
        started = time.monotonic()
        for attempt in range(10):
            with pytest.raises(AuthenticationError):
                authenticated_client(address, authkey=b"wrong-%d-0123456789" % attempt)
        elapsed = time.monotonic() - started
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
    # Four tries free, then 0.05 s doubling to 1 s: 2.55 s for ten. The master counts a
    # failure just after the peer has its verdict, so the next try may see one fewer:
    # at least 1.5 s (unslowed, ten take about 0.05 s).
    assert elapsed >= 1.5, f"10 wrong keys in {elapsed:.2f} s"
    assert counted(cluster, "auth_rejected", kind="bad_key") == 10


def test_a_flood_of_refusals_is_counted_in_few_lines(tmp_path: Path) -> None:
    args = ["--task", "square", "--count", "2"]
    with Cluster(tmp_path / "run", args) as cluster:
        assert cluster.address is not None
        address = parse_address(cluster.address)
        started = time.monotonic()
        for _ in range(600):
            with socket.socket() as sock:
                sock.bind(("127.0.0.3", 0))
                sock.connect(address)
                sock.sendall(b"\0\0\0\x05garbage")
        elapsed = time.monotonic() - started
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
    refusals = [
        e
        for e in read_events(cluster.events_path("master"))
        if e["ev"] in ("auth_rejected", "handshake_timeout")
        and e.get("peer", "").startswith("127.0.0.3")
    ]
    assert sum(int(e.get("count", 1)) for e in refusals) == 600  # none uncounted
    # The first 5 one by one, then at most one line per kind per second (and at the end).
    assert len(refusals) <= 5 + 3 * (elapsed + 10), len(refusals)


def test_out_of_descriptors_the_master_backs_off_instead_of_spinning(tmp_path: Path) -> None:
    limit = 48
    command = [
        sys.executable,
        "-c",
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))\n"
        "from distq.cli import main\n"
        "sys.exit(main())",
    ]
    args = ["--task", "square", "--count", "1", "--handshake-timeout-s", "60"]
    system = systems.build({"command": command})
    with Cluster(tmp_path / "run", args, system=system) as cluster, ExitStack() as stack:
        assert cluster.address is not None
        assert cluster.master is not None
        for n in range(limit + 8):  # more than the master has descriptors for
            source = f"127.0.1.{n // (PER_PEER - 1) + 1}"
            stack.enter_context(open_from(source, cluster.address))
        cluster.master_events.wait_for(lambda e: e["ev"] == "accept_failed", BOUND_S, "EMFILE")
        master = psutil.Process(cluster.master.pid)
        before = sum(master.cpu_times()[:2])
        time.sleep(3.0)  # a measuring window, not synchronisation
        used = sum(master.cpu_times()[:2]) - before
        assert used < 1.0, f"the master used {used:.2f} s of CPU in 3 s out of descriptors"
    [failed] = events(cluster, "accept_failed")
    assert "Too many open files" in failed["reason"]


def test_jobs_never_see_the_authkey(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"task": "tests.tasks:getenv", "args": ["DISTQ_AUTHKEY"]}) + "\n")
    with Cluster(tmp_path / "run", ["--jobs", str(jobs)]) as cluster:
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
    [result] = [json.loads(line) for line in cluster.results_path.read_text().splitlines()]
    assert result["ok"]
    assert result["value"] is None


def test_a_master_bound_to_ipv6_loopback_serves(tmp_path: Path) -> None:
    with Cluster(
        tmp_path / "run", ["--task", "square", "--count", "5", "--host", "::1"]
    ) as cluster:
        assert cluster.address is not None
        assert cluster.address.startswith("[::1]:")
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
    assert len(cluster.results_path.read_text().splitlines()) == 5


def test_a_client_with_the_key_reaches_only_the_proxy_methods(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--task", "square", "--count", "1"]) as cluster:
        assert cluster.address is not None
        address = parse_address(cluster.address)
        conn = authenticated_client(address, authkey=cluster.authkey)
        try:
            conn.send((None, "create", ("board",), {}))
            kind, (ident, exposed) = conn.recv()
            assert kind == "#RETURN"
            assert "tick" not in exposed
            assert "stop" not in exposed
        finally:
            conn.close()
        served = authenticated_client(address, authkey=cluster.authkey)
        try:
            served.send((None, "accept_connection", ("test",), {}))
            assert served.recv() == ("#RETURN", None)
            for method in ("stop", "tick", "connection_closed"):
                served.send((ident, method, (), {}))
                kind, reply = served.recv()
                assert kind != "#RETURN", (kind, reply)
                assert "not in exposed" in str(reply), (kind, reply)
        finally:
            served.close()
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
    assert [
        json.loads(line)["value"] for line in cluster.results_path.read_text().splitlines()
    ] == [0]


def _master_cmd(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, DISTQ_AUTHKEY="disk-test-key-0123456789")
    return subprocess.Popen(
        [sys.executable, "-m", "distq", "master", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def _worker_cmd(address: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DISTQ_AUTHKEY="disk-test-key-0123456789")
    return subprocess.Popen(
        [sys.executable, "-m", "distq", "worker", "--connect", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def test_a_full_disk_under_results_stops_the_master_and_loses_no_accepted_result(
    tmp_path: Path,
) -> None:
    events_path = tmp_path / "master.events.jsonl"
    master = _master_cmd(
        tmp_path, "--task", "square", "--count", "50", "--results", "/dev/full",
        "--events", str(events_path),
    )  # fmt: skip
    worker = None
    try:
        assert master.stdout is not None
        ready = master.stdout.readline().split()
        assert ready[0] == "READY", ready
        worker = _worker_cmd(ready[1])
        _, stderr = master.communicate(timeout=BOUND_S)
        assert worker.wait(BOUND_S) == 0
    finally:
        for proc in (master, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert master.returncode == EXIT_OUTPUT_FAILED, stderr
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    errors = [line for line in lines if line.startswith("distq master: error:")]
    assert errors == [lines[-1]]
    assert "cannot write --results /dev/full: No space left on device" in lines[-1]
    shown = {json.loads(line)["job"] for line in lines if line.startswith("{")}
    accepted = {e["job"] for e in read_events(events_path) if e["ev"] == "result_accepted"}
    assert accepted
    assert shown == accepted


def test_a_full_disk_under_events_stops_the_master_with_one_line(tmp_path: Path) -> None:
    master = _master_cmd(tmp_path, "--task", "square", "--count", "5", "--events", "/dev/full")
    try:
        _, stderr = master.communicate(timeout=BOUND_S)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
    assert master.returncode == EXIT_OUTPUT_FAILED, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "cannot write --events /dev/full" in lines[0], stderr


def test_every_accepted_result_reaches_the_results_file(tmp_path: Path) -> None:
    # Results arrive on the server's threads while the main loop flushes: none may fall
    # between the two (the flood benchmark once lost three this way).
    with Cluster(tmp_path / "run", ["--task", "square", "--count", "3000"]) as cluster:
        for _ in range(2):
            cluster.add_worker(extra_args=["--prefetch", "4"])
        assert cluster.wait_master(BOUND_S) == 0
    lines = [json.loads(line) for line in cluster.results_path.read_text().splitlines()]
    assert sorted(line["job"] for line in lines) == list(range(3000))
    assert counted(cluster, "result_accepted") == 3000


def test_a_worker_whose_event_log_is_full_leaves_with_one_line(tmp_path: Path) -> None:
    with Cluster(tmp_path / "run", ["--task", "square", "--count", "5"]) as cluster:
        assert cluster.address is not None
        env = dict(os.environ, DISTQ_AUTHKEY=cluster.authkey.decode())
        full = subprocess.run(
            [sys.executable, "-m", "distq", "worker", "--connect", cluster.address,
             "--name", "full", "--events", "/dev/full"],
            capture_output=True, text=True, env=env, timeout=BOUND_S,
        )  # fmt: skip
        cluster.add_worker()
        assert cluster.wait_master(BOUND_S) == 0
    assert full.returncode == EXIT_OUTPUT_FAILED, full.stderr
    assert full.stderr.strip().splitlines() == [
        "distq worker: error: cannot write --events /dev/full: No space left on device; "
        "left the master"
    ]
    assert len(cluster.results_path.read_text().splitlines()) == 5


def test_a_journaled_master_on_a_full_disk_writes_every_result_when_resumed(
    tmp_path: Path,
) -> None:
    journal = str(tmp_path / "journal.db")
    args = ["--task", "square", "--count", "20", "--journal", journal]
    master = _master_cmd(tmp_path, *args, "--results", "/dev/full")
    worker = None
    try:
        assert master.stdout is not None
        worker = _worker_cmd(master.stdout.readline().split()[1])
        master.communicate(timeout=BOUND_S)
        worker.wait(BOUND_S)
    finally:
        for proc in (master, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert master.returncode == EXIT_OUTPUT_FAILED
    # No checkpoint was taken past the failed write: the resumed run writes them all.
    results = tmp_path / "results.jsonl"
    again = _master_cmd(tmp_path, *args, "--results", str(results))
    worker = None
    try:
        assert again.stdout is not None
        worker = _worker_cmd(again.stdout.readline().split()[1])
        _, stderr = again.communicate(timeout=BOUND_S)
        worker.wait(BOUND_S)
    finally:
        for resumed in (again, worker):
            if resumed is not None and resumed.poll() is None:
                resumed.kill()
                resumed.wait()
    assert again.returncode == 0, stderr
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(line["job"] for line in lines) == list(range(20))
