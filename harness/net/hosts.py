"""Hosts of their own: a lab of network namespaces on one bridge, and faults in its kernel.

A lab is a parent namespace holding a bridge, and one namespace per host joined to it by a
veth pair, each host with one address from the benchmarking range 198.18.0.0/15 (RFC
2544). Nothing is routed to or from the machine's own interfaces. Every namespace is held
by a descriptor only (``harness.net.netns``): a dead harness leaves none behind.

Faults are classic BPF programs in direct-action mode on the ``clsact`` hook of each
host's bridge port, invisible to both ends (no FIN, no RST, no local error): ``isolate``,
``partition``, ``one_way`` and ``loss``; ``bandwidth`` is a token bucket (``tbf``) on both
ends of the host's link, ``delay`` a ``netem`` qdisc there (on kernels that have one:
``netem_unavailable`` says whether). Each returns its evidence when healed: the packets the
port's filters dropped while it stood (the qdisc's own counters), the packets the bucket
held back, or the packets netem delayed. ``reject`` resets every TCP connection of a host
at once (sock_diag's destroy: an RST to each peer) and counts them. Where the kernel has
no ``netem``, latency, reordering and slicing stay in the fault proxy
(``harness.net.proxy``).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from types import TracebackType
from typing import Any, TypeVar

from harness.contract import ActionName
from harness.net.netns import NamespaceError, enter_argv, in_namespace, new_namespace

__all__ = [
    "LAB_NETWORK",
    "Evidence",
    "Host",
    "KernelFault",
    "Lab",
    "LabError",
    "kernel_unavailable",
    "lab_unavailable",
    "netem_unavailable",
]

LAB_NETWORK = ipaddress.ip_network("198.18.0.0/15")
BRIDGE = "lab0"
HOST_LINK = "eth0"
T = TypeVar("T")

# -- rtnetlink, the few messages pyroute2 cannot encode (a classic BPF filter) ---------------
_RTM_NEWTFILTER, _RTM_DELTFILTER = 44, 45
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_TCA_KIND, _TCA_OPTIONS, _NLA_F_NESTED = 1, 2, 0x8000
_TCA_BPF_OPS_LEN, _TCA_BPF_OPS, _TCA_BPF_NAME, _TCA_BPF_FLAGS = 4, 5, 7, 8
_TCA_BPF_FLAG_ACT_DIRECT = 1
_ETH_P_ALL = 0x0003
_TC_H_ROOT = 0xFFFFFFFF
#: The clsact hooks: packets a port receives (from its host) and sends (to its host).
FROM_HOST, TO_HOST = 0xFFFFFFF2, 0xFFFFFFF3

# -- classic BPF: (code, jt, jf, k) ----------------------------------------------------------
_LDH_ABS, _LD_ABS, _JEQ_K, _JGE_K, _RET_K = 0x28, 0x20, 0x15, 0x35, 0x06
_SKF_AD_RANDOM = 0xFFFFF000 + 56  # a load of this offset reads the kernel's prandom_u32
_TC_ACT_SHOT, _TC_ACT_UNSPEC = 2, 0xFFFFFFFF  # drop; go on to the next filter
_ETH_TYPE, _IPV4, _IP_SRC, _IP_DST = 12, 0x0800, 26, 30
Program = list[tuple[int, int, int, int]]


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _filter_message(msg_type: int, index: int, hook: int, prio: int, program: Program) -> bytes:
    flags = _NLM_F_REQUEST | _NLM_F_ACK
    info = (prio << 16) | socket.htons(_ETH_P_ALL)
    body = struct.pack("=BBHiIII", socket.AF_UNSPEC, 0, 0, index, 0, hook, info)
    if msg_type == _RTM_NEWTFILTER:
        flags |= _NLM_F_CREATE | _NLM_F_EXCL
        ops = b"".join(struct.pack("=HBBI", *op) for op in program)
        options = (
            _attr(_TCA_BPF_OPS_LEN, struct.pack("=H", len(program)))
            + _attr(_TCA_BPF_OPS, ops)
            + _attr(_TCA_BPF_NAME, b"harness\0")
            + _attr(_TCA_BPF_FLAGS, struct.pack("=I", _TCA_BPF_FLAG_ACT_DIRECT))
        )
        body += _attr(_TCA_KIND, b"bpf\0") + _attr(_TCA_OPTIONS | _NLA_F_NESTED, options)
    return struct.pack("=IHHII", 16 + len(body), msg_type, flags, 1, 0) + body


def _netlink(message: bytes) -> None:
    """Send one rtnetlink request from the calling thread's namespace; raise its error."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        sock.settimeout(5)
        sock.send(message)
        reply = sock.recv(65536)
    (error,) = struct.unpack_from("=i", reply, 16)
    if error:
        raise OSError(-error, os.strerror(-error))


def drop_all() -> Program:
    return [(_RET_K, 0, 0, _TC_ACT_SHOT)]


def drop_addresses(offset: int, addresses: Sequence[str]) -> Program:
    """Drop IPv4 packets whose source (``offset`` 26) or destination (30) is listed."""
    count = len(addresses)
    program: Program = [(_LDH_ABS, 0, 0, _ETH_TYPE), (_JEQ_K, 0, count + 1, _IPV4)]
    program.append((_LD_ABS, 0, 0, offset))
    for number, address in enumerate(addresses):
        program.append((_JEQ_K, count - number, 0, int(ipaddress.IPv4Address(address))))
    return [*program, (_RET_K, 0, 0, _TC_ACT_UNSPEC), (_RET_K, 0, 0, _TC_ACT_SHOT)]


def drop_randomly(probability: float) -> Program:
    """Drop each IPv4 packet with ``probability``, drawn by the kernel per packet."""
    threshold = min(int(probability * 2**32), 2**32 - 1)
    return [
        (_LDH_ABS, 0, 0, _ETH_TYPE),
        (_JEQ_K, 0, 2, _IPV4),
        (_LD_ABS, 0, 0, _SKF_AD_RANDOM),
        (_JGE_K, 0, 1, threshold),
        (_RET_K, 0, 0, _TC_ACT_UNSPEC),
        (_RET_K, 0, 0, _TC_ACT_SHOT),
    ]


# -- sock_diag: reset a host's TCP connections ----------------------------------------------
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _SOCK_DESTROY = 4, 20, 21
_NLM_F_DUMP, _NLMSG_DONE, _NLMSG_ERROR = 0x300, 3, 2
_TCP_LISTEN = 10
_DIAG_REQUEST = struct.Struct("=BBBBI48s")  # family, protocol, ext, pad, states, sockid
_DIAG_MESSAGE_ID = slice(4, 52)  # the sockid inside an inet_diag_msg


def _diag_request(msg_type: int, flags: int, family: int, sockid: bytes) -> bytes:
    states = 0xFFFFFFFF & ~(1 << _TCP_LISTEN)  # connections, never a listening socket
    body = _DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, states, sockid)
    return struct.pack("=IHHII", 16 + len(body), msg_type, flags, 1, 0) + body


def reset_connections() -> int:
    """Reset every TCP connection of the calling thread's namespace (the kernel sends
    each peer an RST; the local end gets ECONNABORTED); how many it reset."""
    reset = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(5)
        sockids: list[tuple[int, bytes]] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            sock.send(
                _diag_request(_SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, family, b"")
            )
            done = False
            while not done:
                data = sock.recv(65536)
                offset = 0
                while offset < len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind in (_NLMSG_DONE, _NLMSG_ERROR):
                        done = True
                    else:
                        message = data[offset + 16 : offset + length]
                        sockids.append((message[0], message[_DIAG_MESSAGE_ID]))
                    offset += (length + 3) & ~3
        for owner, sockid in sockids:
            sock.send(_diag_request(_SOCK_DESTROY, _NLM_F_REQUEST | _NLM_F_ACK, owner, sockid))
            (error,) = struct.unpack_from("=i", sock.recv(65536), 16)
            if error == 0:
                reset += 1
            elif -error != errno.ENOENT:  # it closed meanwhile
                raise OSError(-error, f"resetting a connection: {os.strerror(-error)}")
    return reset


class LabError(RuntimeError):
    """The lab could not be built or changed; the message says what was missing."""


@dataclass(frozen=True, slots=True)
class Host:
    """One host of the lab: its namespace (a descriptor of the harness) and its port."""

    name: str
    address: str
    fd: int
    port: str  # its veth on the bridge, in the parent namespace


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a kernel fault measurably did while it stood, from the kernel's counters."""

    dropped: int  # packets its ports' filters dropped
    seen: int  # packets that met its ports' filters
    held_back: int  # packets a token bucket made wait (bandwidth)

    def record(self) -> dict[str, int]:
        return {"dropped": self.dropped, "seen": self.seen, "held_back": self.held_back}


@dataclass(slots=True)
class KernelFault:
    """One fault standing in the lab: the filters and buckets it put in place."""

    action: ActionName
    hosts: tuple[str, ...]
    filters: list[tuple[str, int, int]] = field(default_factory=list)  # (port, hook, prio)
    #: Qdiscs it added: (host, or None for the bridge side; link; kind, tbf or netem).
    buckets: list[tuple[str | None, str, str]] = field(default_factory=list)
    start: dict[str, tuple[int, int]] = field(default_factory=dict)  # port -> (dropped, seen)


def _ipr() -> Any:
    from pyroute2 import IPRoute

    return IPRoute()


def _stats(ipr: Any, link: str, kind: str) -> tuple[int, int, int]:
    """(drops, packets, overlimits) of the qdisc of ``kind`` on ``link``."""
    index = ipr.link_lookup(ifname=link)[0]
    for qdisc in ipr.get_qdiscs(index=index):
        if qdisc.get_attr("TCA_KIND") == kind:
            stats = qdisc.get_attr("TCA_STATS2")
            queue, basic = stats.get_attr("TCA_STATS_QUEUE"), stats.get_attr("TCA_STATS_BASIC")
            return int(queue["drops"]), int(basic["packets"]), int(queue["overlimits"])
    return 0, 0, 0


class Lab:
    """A run's lab, as a context manager that always lets every namespace go."""

    def __init__(self) -> None:
        self.hosts: dict[str, Host] = {}
        self._parent: int | None = None
        self._next_prio = 1

    def __enter__(self) -> Lab:
        try:
            self._parent = new_namespace()
            self._in_parent(self._make_bridge)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Let go of every namespace: with no process left inside, the kernel removes each
        with its links, bridge and filters."""
        for host in self.hosts.values():
            os.close(host.fd)
        self.hosts.clear()
        if self._parent is not None:
            os.close(self._parent)
            self._parent = None

    @property
    def descriptors(self) -> list[int]:
        return [
            *([] if self._parent is None else [self._parent]),
            *(h.fd for h in self.hosts.values()),
        ]

    def _in_parent(self, work: Callable[[Any], T]) -> T:
        if self._parent is None:
            raise LabError("the lab is closed")

        def run() -> T:
            with _ipr() as ipr:
                return work(ipr)

        return in_namespace(self._parent, run)

    def _in_host(self, name: str, work: Callable[[Any], T]) -> T:
        def run() -> T:
            with _ipr() as ipr:
                return work(ipr)

        return in_namespace(self.hosts[name].fd, run)

    @staticmethod
    def _make_bridge(ipr: Any) -> None:
        ipr.link("add", ifname=BRIDGE, kind="bridge")
        ipr.link("set", index=ipr.link_lookup(ifname=BRIDGE)[0], state="up")

    # -- hosts ---------------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        """The host called ``name``, made and joined to the bridge on first use."""
        found = self.hosts.get(name)
        if found is not None:
            return found
        number = len(self.hosts)
        address = str(LAB_NETWORK.network_address + number + 1)
        fd = new_namespace()
        port = f"h{number}"

        def plug(ipr: Any) -> None:
            ipr.link("add", ifname=port, kind="veth", peer={"ifname": HOST_LINK, "net_ns_fd": fd})
            index = ipr.link_lookup(ifname=port)[0]
            ipr.link("set", index=index, master=ipr.link_lookup(ifname=BRIDGE)[0], state="up")
            ipr.tc("add", "clsact", index)

        def configure(ipr: Any) -> None:
            index = ipr.link_lookup(ifname=HOST_LINK)[0]
            ipr.addr("add", index=index, address=address, prefixlen=LAB_NETWORK.prefixlen)
            ipr.link("set", index=index, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

        try:
            self._in_parent(plug)
            host = Host(name, address, fd, port)
            self.hosts[name] = host
        except BaseException:
            os.close(fd)
            raise
        self._in_host(name, configure)
        self._wait_up(name)
        return host

    def _wait_up(self, name: str, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until both ends of the host's link are up: until the kernel's
        link watcher has seen the carrier, a device drops what it is given to send."""
        host = self.hosts[name]

        def up(link: str) -> Callable[[Any], bool]:
            def check(ipr: Any) -> bool:
                found = ipr.get_links(ifname=link)
                return bool(found) and found[0].get_attr("IFLA_OPERSTATE") == "UP"

            return check

        deadline = time.monotonic() + timeout_s
        while not (self._in_host(name, up(HOST_LINK)) and self._in_parent(up(host.port))):
            if time.monotonic() >= deadline:
                raise LabError(f"the link of host {name} did not come up within {timeout_s:g} s")
            time.sleep(0.005)

    def address(self, name: str) -> str:
        return self.host(name).address

    def run_in(self, name: str, work: Callable[[], T]) -> T:
        """Run ``work`` in a thread inside host ``name``: the sockets it opens are the host's
        (the harness asking a server there whether it is ready)."""
        return in_namespace(self.host(name).fd, work)

    def enter_argv(self, name: str, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to start inside host ``name`` (made if need be)."""
        return enter_argv(self.host(name).fd, argv)

    # -- faults --------------------------------------------------------------------------------

    def _counters(self, ports: Iterable[str]) -> dict[str, tuple[int, int]]:
        def read(ipr: Any) -> dict[str, tuple[int, int]]:
            return {port: _stats(ipr, port, "clsact")[:2] for port in ports}

        return self._in_parent(read)

    def _filter(self, fault: KernelFault, host: str, hook: int, program: Program) -> None:
        port = self.hosts[host].port
        prio = self._next_prio
        self._next_prio += 1

        def add(ipr: Any) -> None:
            index = ipr.link_lookup(ifname=port)[0]
            _netlink(_filter_message(_RTM_NEWTFILTER, index, hook, prio, program))

        self._in_parent(add)
        fault.filters.append((port, hook, prio))

    def _begin(self, action: ActionName, hosts: Sequence[str]) -> KernelFault:
        for name in hosts:
            self.host(name)
        fault = KernelFault(action, tuple(hosts))
        fault.start = self._counters(self.hosts[name].port for name in hosts)
        return fault

    def isolate(self, hosts: Sequence[str]) -> KernelFault:
        """Cut each host off every other, both ways, silently: a host that lost its link."""
        fault = self._begin("isolate", hosts)
        for name in hosts:
            self._filter(fault, name, FROM_HOST, drop_all())
            self._filter(fault, name, TO_HOST, drop_all())
        return fault

    def partition(
        self, hosts: Sequence[str], peers: Sequence[str], action: ActionName = "partition"
    ) -> KernelFault:
        """Drop every packet between ``hosts`` and ``peers``, both ways."""
        fault = self._begin(action, [*hosts, *peers])
        for side, other in ((hosts, peers), (peers, hosts)):
            others = [self.hosts[name].address for name in other]
            for name in side:
                self._filter(fault, name, FROM_HOST, drop_addresses(_IP_DST, others))
        return fault

    def one_way(
        self, hosts: Sequence[str], peers: Sequence[str], action: ActionName = "one_way"
    ) -> KernelFault:
        """Drop the packets ``hosts`` send to ``peers``; the other way still works."""
        fault = self._begin(action, hosts)
        for peer in peers:
            self.host(peer)
        others = [self.hosts[name].address for name in peers]
        for name in hosts:
            self._filter(fault, name, FROM_HOST, drop_addresses(_IP_DST, others))
        return fault

    def loss(
        self, hosts: Sequence[str], probability: float, action: ActionName = "loss"
    ) -> KernelFault:
        """Drop each packet to or from each host with ``probability``."""
        if not 0.0 < probability <= 1.0:
            raise LabError(f"loss probability must be in (0, 1], got {probability}")
        fault = self._begin(action, hosts)
        for name in hosts:
            self._filter(fault, name, FROM_HOST, drop_randomly(probability))
            self._filter(fault, name, TO_HOST, drop_randomly(probability))
        return fault

    def bandwidth(
        self, hosts: Sequence[str], rate_kbit: float, action: ActionName = "bandwidth"
    ) -> KernelFault:
        """A token bucket of ``rate_kbit`` on each host's link, both ways."""
        if rate_kbit <= 0:
            raise LabError(f"bandwidth rate_kbit must be positive, got {rate_kbit}")
        fault = self._begin(action, hosts)
        rate = f"{rate_kbit:g}kbit"
        burst = max(int(rate_kbit * 1000 / 8 / 10), 3028)  # 0.1 s of traffic, two frames at least

        def shape(link: str) -> Callable[[Any], None]:
            def add(ipr: Any) -> None:
                index = ipr.link_lookup(ifname=link)[0]
                ipr.tc("add", "tbf", index, rate=rate, burst=burst, latency="1s")

            return add

        self._qdisc_on_links(fault, "tbf", shape)
        return fault

    def delay(
        self, hosts: Sequence[str], delay_ms: float, action: ActionName = "delay"
    ) -> KernelFault:
        """A ``netem`` qdisc holding each packet ``delay_ms`` on each host's link, both ways
        (``netem_unavailable`` says whether the kernel has one)."""
        if delay_ms <= 0:
            raise LabError(f"delay delay_ms must be positive, got {delay_ms}")
        fault = self._begin(action, hosts)

        def hold(link: str) -> Callable[[Any], None]:
            def add(ipr: Any) -> None:
                index = ipr.link_lookup(ifname=link)[0]
                ipr.tc("add", "netem", index, delay=int(delay_ms * 1000))  # microseconds

            return add

        self._qdisc_on_links(fault, "netem", hold)
        return fault

    def _qdisc_on_links(
        self, fault: KernelFault, kind: str, add: Callable[[str], Callable[[Any], None]]
    ) -> None:
        """Add a root qdisc of ``kind`` on both ends of each of the fault's hosts' links."""
        for name in fault.hosts:
            self._in_parent(add(self.hosts[name].port))
            fault.buckets.append((None, self.hosts[name].port, kind))
            self._in_host(name, add(HOST_LINK))
            fault.buckets.append((name, HOST_LINK, kind))

    def reject(self, hosts: Sequence[str]) -> int:
        """Reset every TCP connection of each host at once (RST to each peer), as a firewall
        that rejects would; its listening sockets stay. How many connections it reset."""
        return sum(self.run_in(name, reset_connections) for name in hosts)

    def heal(self, fault: KernelFault) -> Evidence:
        """Take the fault's filters and buckets away; what they did meanwhile."""
        ports = sorted({port for port, _, _ in fault.filters})
        ends = self._counters(ports) if ports else {}
        held_back = 0

        def unshape(link: str, kind: str) -> Callable[[Any], int]:
            def remove(ipr: Any) -> int:
                index = ipr.link_lookup(ifname=link)[0]
                _, packets, overlimits = _stats(ipr, link, kind)
                ipr.tc("del", index=index, handle=0, parent=_TC_H_ROOT)
                return packets if kind == "netem" else overlimits  # netem delays every one

            return remove

        for owner, link, kind in fault.buckets:
            if owner is None:
                held_back += self._in_parent(unshape(link, kind))
            elif owner in self.hosts:
                held_back += self._in_host(owner, unshape(link, kind))
        for port, hook, prio in fault.filters:

            def remove(ipr: Any, port: str = port, hook: int = hook, prio: int = prio) -> None:
                index = ipr.link_lookup(ifname=port)[0]
                _netlink(_filter_message(_RTM_DELTFILTER, index, hook, prio, []))

            self._in_parent(remove)
        fault.filters.clear()
        fault.buckets.clear()
        dropped = sum(ends[port][0] - fault.start.get(port, (0, 0))[0] for port in ports)
        seen = sum(ends[port][1] - fault.start.get(port, (0, 0))[1] for port in ports)
        return Evidence(dropped, seen, held_back)


@cache
def lab_unavailable() -> str | None:
    """Why this machine cannot build a lab (one line), or None when it can: pyroute2,
    CAP_NET_ADMIN for namespaces, and the kernel's clsact hook with classic BPF filters."""
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "hosts need pyroute2 (pip install 'distq[hosts]')"
    try:
        with Lab() as lab:
            fault = lab.isolate(["probe"])
            lab.heal(fault)
    except NamespaceError as exc:
        return f"hosts need network namespaces (CAP_NET_ADMIN, as root): {exc.strerror}"
    except OSError as exc:
        return f"hosts need the kernel's clsact qdisc and classic BPF tc filters: {exc}"
    except Exception as exc:  # a pyroute2 error for a missing kernel feature
        return f"hosts cannot be built here: {type(exc).__name__}: {exc}"
    return None


@cache
def netem_unavailable() -> str | None:
    """Why this machine cannot apply ``delay`` (one line), or None when it can: a lab, and
    the kernel's ``netem`` qdisc (``sch_netem``, often left out of a kernel built small)."""
    missing = lab_unavailable()
    if missing is not None:
        return missing
    try:
        with Lab() as lab:
            lab.heal(lab.delay(["probe"], 1.0))
    except Exception as exc:  # pyroute2's NetlinkError (ENOENT) for a missing qdisc kind
        code = getattr(exc, "code", None)
        why = os.strerror(code) if isinstance(code, int) else str(exc)
        return f"delay needs the kernel's netem qdisc (sch_netem); adding one failed: {why}"
    return None


def kernel_unavailable(actions: Iterable[str]) -> str | None:
    """Why a run on hosts whose faults are ``actions`` cannot happen here, or None."""
    if "delay" in actions:
        return netem_unavailable()
    return lab_unavailable()
