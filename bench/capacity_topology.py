"""Where the capacity bench's server and load tool run: one machine's loopback, or two namespaces as two hosts.

Why two: on loopback the kernel receives each datagram into its socket inside the sender's system call, so the
server's CPU time holds the load tool's receive path for every egress packet (and the tool's holds the server's
for every ingress one). On a network each host pays its own. ``two-hosts`` runs the server in one network
namespace and the load tool in another, joined by a veth pair whose ends receive like two network cards: each end's
receive runs in a kernel thread pinned to its own side's CPU (bench/peers/netns.py's "napi" steering, ADR 0049).
The server's figure is then its process's CPU (what it pays to send, and its share of the receive) plus, reported
apart, its end's receive thread (the receive path of its ingress, which a real host pays in softirq).

    server ns  [callsd serve, CPU 0] --vsXXXX====veth====vtXXXX-- [callsd loadtest, CPU 1]  tool ns
                  ^ napi/vsXXXX thread, CPU 0                   napi/vtXXXX thread, CPU 1 ^

A topology gives the argv prefixes of both sides, the server's address, its auth (open auth is refused off
loopback: a token secret shared with the tool), a way for a bench thread to reach the server's HTTP port
(`Topology.reach`) and the `KernelWatch` that records each side's receive CPU, UDP counters and backlog drops.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.peers.netns import (
    NetnsError,
    Pair,
    ReceiveThreads,
    cpu_ns,
    entered,
    interface_counters,
    softnet_drops,
    udp_counters,
)

__all__ = ["LOOPBACK", "TOPOLOGIES", "KernelWatch", "Topology", "make_topology"]

TOPOLOGIES = ("loopback", "two-hosts")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat's unit


@dataclass(frozen=True, slots=True)
class Topology:
    """One place to run: ``server_prefix``/``tool_prefix`` go before each side's (pinned) argv; the server listens
    and offers its ICE candidate on ``server_address``; ``token_secret`` (empty: open auth) is shared by both."""

    name: str
    server_address: str = "127.0.0.1"
    server_prefix: tuple[str, ...] = ()
    tool_prefix: tuple[str, ...] = ()
    server_namespace: str = ""  # empty: the machine's own
    tool_namespace: str = ""
    server_interface: str = ""  # its veth end (two-hosts)
    threads: ReceiveThreads = field(default_factory=lambda: ReceiveThreads(server=(), tool=()))
    token_secret: str = ""

    def reach(self) -> contextlib.AbstractContextManager[None]:
        """The calling thread in the server's network for the block (its HTTP address is not routed from the
        machine's own namespace)."""
        return entered(self.server_namespace) if self.server_namespace else contextlib.nullcontext()

    def server_env(self) -> dict[str, str]:
        """The `callsd serve` settings that depend on where it runs."""
        env = {"CALLSD_HTTP_LISTEN": self.server_address, "CALLSD_RTC_ICE_ADDRESS_UDP": self.server_address,
               "CALLSD_AUTH_MODE": "open"}
        if self.token_secret:
            env |= {"CALLSD_AUTH_MODE": "token", "CALLSD_AUTH_SECRET": self.token_secret}
        return env


LOOPBACK = Topology("loopback")


def make_topology(name: str, stack: contextlib.ExitStack) -> Topology:
    """``name`` (one of TOPOLOGIES) made now; its namespaces are removed when ``stack`` closes (and at exit)."""
    if name == "loopback":
        return LOOPBACK
    if name != "two-hosts":
        raise ValueError(f"unknown topology {name!r}: one of {', '.join(TOPOLOGIES)}")
    pair = Pair.create()
    stack.callback(pair.close)
    threads = pair.steer("napi", server_cpu=0, tool_cpu=1)
    return Topology(name, server_address=pair.server_address, server_prefix=tuple(pair.server_args()),
                    tool_prefix=tuple(pair.tool_args()), server_namespace=pair.server_ns, tool_namespace=pair.tool_ns,
                    server_interface=pair.server_interface, threads=threads, token_secret=secrets.token_hex(16))


def _process_cpu(pid: int) -> float:
    """User + system seconds of every thread of ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def _egress(topology: Topology, url: str) -> float:
    """The server's RTP packets sent so far (its /metrics), or -1 if it did not answer."""
    from callsd.app.loadtest.runner import parse_metrics

    try:
        with topology.reach(), urllib.request.urlopen(url + "/metrics", timeout=5) as answer:
            return parse_metrics(answer.read().decode()).get("rtp_packets_out", -1.0)
    except OSError:
        return -1.0


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    server_cpu: float  # seconds, the server process
    server_receive_ns: int  # the receive threads of the server's end ("napi" steering)
    tool_receive_ns: int
    egress: float  # the server's RTP packets sent (/metrics)


class KernelWatch:
    """`run_shape`'s kernel-side record: each namespace's UDP counters and the machine's backlog drops over the
    whole run, and over a steady window (``settle`` seconds after the joins to a second before the tool stops)
    the server's CPU, its end's receive thread and the tool's, per egress packet. Loopback has no threads and one
    namespace (the machine's, shared with everything else): only the window's process CPU is meaningful there."""

    def __init__(self, topology: Topology, server_pid: int, steady: float, settle: float = 3.0) -> None:
        self.topology = topology
        self.server_pid = server_pid
        self.steady = steady
        self.settle = settle
        self.result: dict[str, Any] = {}

    def _veth(self) -> dict[str, int]:
        """The server's veth end's counters (empty on loopback): its tx_packets is the egress datagrams when the
        server segments its GSO batches itself, as "napi" steering makes it."""
        if not self.topology.server_interface:
            return {}
        return interface_counters(self.server_pid, self.topology.server_interface)

    def _udp(self) -> tuple[dict[str, int], dict[str, int]]:
        server = udp_counters(self.server_pid)
        tool = udp_counters(self.topology.tool_namespace) if self.topology.tool_namespace else server
        return server, tool

    def _sample(self, url: str) -> _Sample:
        return _Sample(at=time.monotonic(), server_cpu=_process_cpu(self.server_pid),
                       server_receive_ns=cpu_ns(self.topology.threads.server),
                       tool_receive_ns=cpu_ns(self.topology.threads.tool), egress=_egress(self.topology, url))

    @contextlib.contextmanager
    def __call__(self, url: str, join: float) -> Iterator[None]:
        samples: list[_Sample] = []
        stop = threading.Event()
        started = time.monotonic()
        udp_before, drops_before, veth_before = self._udp(), softnet_drops(), self._veth()

        def sample_at_steady_start_and_end() -> None:
            for at in (join + self.settle, join + self.steady - 1.0):
                if stop.wait(max(0.0, started + at - time.monotonic())):
                    return
                samples.append(self._sample(url))

        thread = threading.Thread(target=sample_at_steady_start_and_end, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            udp_after = self._udp()
            with contextlib.suppress(OSError, NetnsError):  # the server has exited, and its /proc view with it
                veth_before = {k: v - veth_before[k] for k, v in self._veth().items()}
            self.result = {
                "server_veth_run": veth_before,
                "topology": self.topology.name,
                "server_udp_run": {k: v - udp_before[0][k] for k, v in udp_after[0].items()},
                "tool_udp_run": {k: v - udp_before[1][k] for k, v in udp_after[1].items()},
                "softnet_drops_run": softnet_drops() - drops_before,
            }
            if len(samples) == 2:
                self.result |= _window(*samples)


def _window(first: _Sample, last: _Sample) -> dict[str, Any]:
    seconds = max(last.at - first.at, 1e-9)
    egress = last.egress - first.egress
    out: dict[str, Any] = {"window_seconds": round(seconds, 2),
                           "server_cpu_percent": round(100 * (last.server_cpu - first.server_cpu) / seconds, 1),
                           "server_receive_cpu_percent": round(
                               100 * (last.server_receive_ns - first.server_receive_ns) / 1e9 / seconds, 1),
                           "tool_receive_cpu_percent": round(
                               100 * (last.tool_receive_ns - first.tool_receive_ns) / 1e9 / seconds, 1)}
    if first.egress < 0 or last.egress < 0 or egress <= 0:
        return out
    out["egress_pps"] = round(egress / seconds)
    process = 1e6 * (last.server_cpu - first.server_cpu) / egress
    receive = (last.server_receive_ns - first.server_receive_ns) / 1000 / egress
    out |= {"us_per_egress_packet": round(process, 2), "server_receive_us_per_egress": round(receive, 2),
            "us_per_egress_with_receive": round(process + receive, 2),
            "tool_receive_us_per_egress": round((last.tool_receive_ns - first.tool_receive_ns) / 1000 / egress, 2)}
    return out
