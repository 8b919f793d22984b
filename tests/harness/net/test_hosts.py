"""A lab of hosts: real namespaces, real sockets between them, faults measured by the
kernel's counters, and nothing left behind, a SIGKILLed harness included.

Every test is skipped, saying why, where the machine cannot build a lab (no root, no
pyroute2, a kernel without clsact or classic BPF filters).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from ipaddress import ip_address

import pytest

from harness.net.hosts import LAB_NETWORK, Lab, lab_unavailable
from harness.net.netns import in_namespace
from harness.net.proxy import FaultProxy
from harness.wire.relay import in_host
from tests.support import REPO, net_namespaces, wait_until

pytestmark = [pytest.mark.processes]

WHY = lab_unavailable()
needs_lab = pytest.mark.skipif(WHY is not None, reason=WHY or "")

#: A UDP receiver: counts the datagrams it gets for ``seconds``, prints the count.
RECEIVE = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 9000))
sock.settimeout(0.2)
print("bound", flush=True)
count, end = 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        count += len(sock.recv(65536)) > 0
    except TimeoutError:
        pass
print(count, flush=True)
"""
#: A UDP sender: ``count`` datagrams of ``size`` bytes, then exits.
SEND = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[2])):
    sock.sendto(b"x" * int(sys.argv[3]), (sys.argv[1], 9000))
    time.sleep(0.002)
"""


def lab_inodes(lab: Lab) -> set[int]:
    return {os.fstat(fd).st_ino for fd in lab.descriptors}


def python_in(lab: Lab, host: str, code: str, *args: str) -> list[str]:
    return lab.enter_argv(host, [sys.executable, "-c", code, *args])


ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def datagrams(lab: Lab, sender: str, receiver: str, count: int = 200, size: int = 64) -> int:
    """How many of ``count`` datagrams from ``sender`` reach ``receiver``."""
    argv = python_in(lab, receiver, RECEIVE, lab.address(receiver), "3")
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=ENV) as listening:
        try:
            assert listening.stdout is not None
            assert listening.stdout.readline().strip() == "bound"
            argv = python_in(lab, sender, SEND, lab.address(receiver), str(count), str(size))
            subprocess.run(argv, env=ENV, timeout=60, check=True)
            out, _ = listening.communicate(timeout=60)
        finally:
            listening.kill()
    return int(out.strip())


@needs_lab
def test_hosts_get_addresses_of_the_benchmarking_range_and_reach_each_other() -> None:
    with Lab() as lab:
        assert all(ip_address(lab.address(name)) in LAB_NETWORK for name in ("a", "b"))
        assert datagrams(lab, "a", "b", count=50) == 50


@needs_lab
def test_isolate_drops_every_packet_both_ways_until_healed() -> None:
    with Lab() as lab:
        fault = lab.isolate(["b"])
        assert datagrams(lab, "a", "b", count=50) == 0
        assert datagrams(lab, "b", "a", count=50) == 0
        evidence = lab.heal(fault)
        assert evidence.dropped > 0  # ARP requests: no datagram leaves without a neighbour
        assert datagrams(lab, "a", "b", count=50) == 50


@needs_lab
def test_one_way_drops_one_direction_only() -> None:
    with Lab() as lab:
        fault = lab.one_way(["b"], ["a"])
        assert datagrams(lab, "b", "a", count=50) == 0
        assert datagrams(lab, "a", "b", count=50) == 50
        assert lab.heal(fault).dropped >= 50


@needs_lab
def test_partition_cuts_the_named_sides_and_spares_the_rest() -> None:
    with Lab() as lab:
        fault = lab.partition(["a"], ["b"])
        assert datagrams(lab, "a", "b", count=30) == 0
        assert datagrams(lab, "b", "a", count=30) == 0
        assert datagrams(lab, "a", "c", count=30) == 30
        assert lab.heal(fault).dropped >= 60


@needs_lab
def test_loss_drops_a_share_of_the_packets() -> None:
    with Lab() as lab:
        fault = lab.loss(["b"], 0.5)
        arrived = datagrams(lab, "a", "b", count=400)
        evidence = lab.heal(fault)
        assert 80 <= arrived <= 320  # 200 expected; far outside is a broken filter
        assert evidence.dropped >= 400 - arrived


@needs_lab
def test_bandwidth_holds_packets_back_at_the_rate() -> None:
    with Lab() as lab:
        fault = lab.bandwidth(["a"], 64)  # 8 kB/s; the sender offers 200 kB/s
        arrived = datagrams(lab, "a", "b", count=300, size=1400)
        evidence = lab.heal(fault)
        assert arrived < 150
        assert evidence.held_back > 0 or evidence.dropped > 0
        assert datagrams(lab, "a", "b", count=100, size=1400) == 100


@needs_lab
def test_a_closed_lab_leaves_no_namespace() -> None:
    before = net_namespaces()
    with Lab() as lab:
        lab.host("a")
        lab.host("b")
        made = lab_inodes(lab)
        assert made <= net_namespaces()
        assert datagrams(lab, "a", "b", count=5) == 5
    assert not made & net_namespaces()
    assert net_namespaces() <= before | net_namespaces()  # nothing of ours remains


HARNESS = """
import sys, time
from harness.net.hosts import Lab
from harness.runtime.reaper import Reaper
import os, subprocess
lab = Lab().__enter__()
reaper = Reaper("LAB_TEST_TAG", sys.argv[1])
env = {**os.environ, "LAB_TEST_TAG": sys.argv[1]}
for host in ("master", "worker-1"):
    subprocess.Popen(lab.enter_argv(host, [sys.executable, "-c", "import time; time.sleep(600)"]),
                     env=env, start_new_session=True)
print(" ".join(str(os.fstat(fd).st_ino) for fd in lab.descriptors), flush=True)
time.sleep(600)
"""


@needs_lab
def test_a_sigkilled_harness_leaves_no_namespace() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", HARNESS, f"lab-{os.getpid()}"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) as harness:
        assert harness.stdout is not None
        made = {int(inode) for inode in harness.stdout.readline().split()}
        assert len(made) == 3
        wait_until(lambda: made <= net_namespaces(), "the hosts' processes to start inside them")
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    wait_until(lambda: not made & net_namespaces(), "the lab's namespaces to be gone")


@needs_lab
def test_reject_resets_every_connection_of_the_host_and_keeps_its_listeners() -> None:
    with Lab() as lab:
        address = lab.address("server")
        listener = lab.run_in("server", lambda: socket.create_server((address, 7000)))
        with listener:
            clients = [
                lab.run_in("client", lambda: socket.create_connection((address, 7000), timeout=5))
                for _ in range(3)
            ]
            accepted = [listener.accept()[0] for _ in clients]
            assert lab.reject(["client"]) == 3
            for conn in accepted:
                conn.settimeout(5)
                with pytest.raises(ConnectionResetError):
                    conn.recv(1)
                conn.close()
            for client in clients:
                client.close()
            again = lab.run_in(
                "client", lambda: socket.create_connection((address, 7000), timeout=5)
            )
            again.close()


def _echo_once(listener: socket.socket) -> None:
    connection, _ = listener.accept()
    with connection:
        connection.sendall(connection.recv(64))


@needs_lab
def test_a_proxy_placed_in_a_host_listens_and_dials_from_inside_it() -> None:
    # A relay of a BaseManager app on hosts: its listener is the serving host's, and its
    # upstream leg reaches a server on that host's own loopback, which no other namespace
    # (the harness's included) has.
    with Lab() as lab:
        master = lab.host("master")
        lab.host("worker-1")
        listener = in_namespace(master.fd, lambda: socket.create_server(("127.0.0.1", 0)))
        server = threading.Thread(target=_echo_once, args=(listener,), daemon=True)
        server.start()
        proxy = FaultProxy("worker-1", place=in_host(master.fd))
        try:
            address = proxy.start((master.address, 0), upstream=listener.getsockname())
            assert address[0] == master.address

            def talk() -> bytes:
                with socket.create_connection(address, timeout=5) as sock:
                    sock.sendall(b"ping")
                    return sock.recv(64)

            assert lab.run_in("worker-1", talk) == b"ping"
        finally:
            proxy.close()
            listener.close()
        server.join(5)
        assert not server.is_alive()


def test_a_proxy_without_a_place_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="is not a loopback IP"):
        FaultProxy("worker-1").start(("198.18.0.1", 0), upstream=("127.0.0.1", 9))
