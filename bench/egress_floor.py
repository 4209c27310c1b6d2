"""The floor under issue 13's "<= 4 us per egress packet": what a framework-free C forwarder pays on this machine.

    python -m bench.egress_floor [--calls 100 200] [--seconds 4] [--warmup 1] [--rounds 2] [--veth] [--out FILE]
                                 [--topology loopback,veth-drop,veth,veth-rps,two-hosts]

Builds ``bench/egress_floor.c`` with the system compiler and libcrypto, then per ``--calls`` value runs its sink (the
load tool's side: one wildcard socket, every receiver a loopback address of its own, IP_PKTINFO and SO_TIMESTAMPNS on,
talkers' packets paced in 20 ms ticks) pinned to CPU 1 and its forwarder (recvmmsg, AES-128-GCM open, 7 copies
rewritten and sealed each with the receiver's own EVP context, sendmmsg of 64) pinned to CPU 0, the capacity bench's
pinning and shape (calls x 8 users x 2 talkers). It prints one JSON object: per run, the forwarder's user and system
CPU per egress packet over the steady window, with and without the cipher, and the loss the sink saw.

Why: the system time of this forwarder is the kernel's price of one loopback datagram (the send path, and the
delivery into the receiver's socket, which loopback runs in the sender's context); its user time is the cipher and
a copy. callsd's figure at the same shape (``bench.capacity_paths``) minus this one is callsd's own overhead.

``--topology`` (comma-separated, alternated within each shape) says where the two ends run:

- ``loopback``: both in the machine's namespace, every receiver a loopback address (the default, as before);
- ``veth-drop`` (also ``--veth``): both in a namespace of their own whose receivers are routed out of a veth device
  and dropped on arrival (`veth_namespace`): the send path alone; the sink there only sends the talkers' packets;
- ``veth``, ``veth-rps``, ``two-hosts``: the forwarder in a server namespace, the sink in a tool namespace, joined by
  a veth pair (bench/peers/netns.py's `Pair`; the receivers' 10.77.0.0/16 is local to the tool's namespace), with
  the pair's receive steering "backlog" (the kernel's default: the receive runs in the sender's system call, as on
  loopback), "rps" or "napi" (each end's receive on its own side's CPU, as on two hosts; docs/adr/0049). Each run
  also records where the receive work went: NET_RX softirqs and softirq time per CPU (/proc/softirqs, /proc/stat:
  machine-wide, so only meaningful on a quiet host), the sink's own CPU, and under "napi" each side's receive
  thread's CPU per egress packet (``server_receive_us_per_egress``: the forwarder's ingress, which a server pays
  on its own host; ``us_per_egress_with_receive`` adds it to the forwarder's figure).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.capacity import _pin  # the capacity bench's pinning (CPU 0 the forwarder, CPU 1 its sink)
from bench.peers.netns import Pair, ReceiveThreads, cpu_ns

SOURCE = Path(__file__).with_name("egress_floor.c")


def build(directory: Path) -> Path:
    """The forwarder binary, compiled from SOURCE (-O2, libcrypto, the native path's srtp_keys.h)."""
    binary = directory / "egress_floor"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wno-unused-function", "-o", str(binary), str(SOURCE), "-lcrypto"],
                   check=True)  # (srtp_keys.h's functions the floor does not call)
    return binary


VETH_BASE = "10.77.0.0"  # the receivers' network, routed into the veth pair of the run's own namespace


@contextlib.contextmanager
def veth_namespace() -> Iterator[list[str]]:
    """A namespace of its own with loopback up and a veth pair v0/v1, both up; 10.77.0.0/16 is routed out of v0 via
    a gateway whose permanent neighbour entry names a MAC address that v1 does not have, so every copy crosses the
    whole send path (socket, skb, route, neighbour, device) and is dropped as the first thing v1's IP receive does
    (another host's frame). Yields the `ip netns exec` prefix. (This kernel has no dummy device, no prio qdisc.)"""
    name = f"floor-{secrets.token_hex(3)}"
    ip = shutil.which("ip") or "/usr/sbin/ip"
    steps = [["netns", "add", name], ["-n", name, "link", "set", "lo", "up"],
             ["-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
             ["-n", name, "addr", "add", "10.78.0.1/30", "dev", "v0"],
             ["-n", name, "link", "set", "v0", "up"], ["-n", name, "link", "set", "v1", "up"],
             ["-n", name, "neigh", "add", "10.78.0.2", "lladdr", "02:00:00:00:00:02", "dev", "v0", "nud",
              "permanent"],
             ["-n", name, "route", "add", f"{VETH_BASE}/16", "via", "10.78.0.2", "dev", "v0"]]
    try:
        for step in steps:
            subprocess.run([ip, *step], check=True, capture_output=True, text=True, timeout=20)
        yield [ip, "netns", "exec", name]
    finally:
        subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=20)


@dataclass(frozen=True, slots=True)
class Place:
    """Where one run's forwarder and sink run: their argv prefixes, the forwarder's receiver network (None:
    loopback addresses) and the sink's address for the forwarder (None: 127.0.0.1), whether copies reach the sink
    (not under ``veth-drop``) and the pair's receive threads ("napi" steering)."""

    name: str
    forwarder: list[str]
    sink: list[str]
    receivers: str | None = None
    forwarder_address: str | None = None
    delivered: bool = True
    threads: ReceiveThreads = ReceiveThreads(server=(), tool=())


TOPOLOGIES = ("loopback", "veth-drop", "veth", "veth-rps", "two-hosts")
STEERING_OF = {"veth": "backlog", "veth-rps": "rps", "two-hosts": "napi"}  # the two-namespace topologies


def place(topology: str, stack: contextlib.ExitStack) -> Place:
    """The namespaces ``topology`` needs, made now and removed when ``stack`` closes."""
    if topology == "loopback":
        return Place("loopback", forwarder=[], sink=[])
    if topology == "veth-drop":
        inside = stack.enter_context(veth_namespace())
        return Place(topology, forwarder=inside, sink=inside, receivers=VETH_BASE, delivered=False)
    pair = Pair.create()
    stack.callback(pair.close)
    pair.route_to_tool(f"{VETH_BASE}/16")
    threads = pair.steer(STEERING_OF[topology], server_cpu=0, tool_cpu=1)
    return Place(topology, forwarder=pair.server_args(), sink=pair.tool_args(), receivers=VETH_BASE,
                 forwarder_address=pair.server_address, threads=threads)


def net_rx_per_cpu() -> list[int]:
    """NET_RX softirqs raised so far on each CPU (/proc/softirqs)."""
    for line in Path("/proc/softirqs").read_text().splitlines():
        if line.strip().startswith("NET_RX:"):
            return [int(x) for x in line.split()[1:]]
    return []


def softirq_ticks_per_cpu() -> list[int]:
    """Softirq time so far on each CPU, in clock ticks (/proc/stat's cpuN lines, 7th field)."""
    return [int(line.split()[7]) for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("cpu") and line[3].isdigit()]


@contextlib.contextmanager
def _reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """``proc``, killed and waited for on the way out if it still runs: every exit path of a run leaves none."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def one_run(binary: Path, calls: int, crypto: bool, warmup: float, seconds: float,
            where: Place | None = None) -> dict[str, Any]:
    """Sink first (it names its port), then the forwarder (it names its own); the sink learns the forwarder's port on
    stdin and starts the talkers. The forwarder stops after its window; the sink a second later. ``where``: the
    run's `Place` (loopback when None)."""
    where = where or Place("loopback", forwarder=[], sink=[])
    flag = "1" if crypto else "0"
    receivers = [where.receivers] if where.receivers else []
    sink_args = [flag, where.forwarder_address] if where.forwarder_address else [flag]
    before = net_rx_per_cpu(), softirq_ticks_per_cpu(), cpu_ns(where.threads.server), cpu_ns(where.threads.tool)
    with _reaped(subprocess.Popen([*where.sink, *_pin(1), str(binary), "sink", str(calls),
                                   str(warmup + seconds + 1.5), *sink_args],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)) as sink:
        assert sink.stdin is not None and sink.stdout is not None
        sink_port = sink.stdout.readline().strip()
        with _reaped(subprocess.Popen([*where.forwarder, *_pin(0), str(binary), "forward", str(calls), sink_port,
                                       str(warmup), str(seconds), flag, *receivers],
                                      stdout=subprocess.PIPE, text=True)) as forwarder:
            assert forwarder.stdout is not None
            sink.stdin.write(forwarder.stdout.readline())
            sink.stdin.close()
            result: dict[str, Any] = json.loads(forwarder.stdout.readline())
            forwarder.wait(timeout=30)
        after = net_rx_per_cpu(), softirq_ticks_per_cpu(), cpu_ns(where.threads.server), cpu_ns(where.threads.tool)
        seen: dict[str, Any] = json.loads(sink.stdout.readline())
        sink.wait(timeout=30)
    result["where"] = where.name
    result["valid"] = result["egress"] > 1  # no egress in the window: the sink's CPU was taken (a shared host)
    result["sink_sent"], result["sink_received"] = seen["sent"], seen["received"]
    result["sink_cpu_s"] = round(seen["user_s"] + seen["sys_s"], 4)
    delivered = seen["received"] / result["egress_total"] if result["egress_total"] else 0.0
    result["loss"] = round(max(0.0, 1 - delivered), 5) if where.delivered else None
    # where the receive work ran, over the forwarder's life (machine-wide counters: clean on a quiet host only)
    result["net_rx_softirqs_per_cpu"] = [b - a for a, b in zip(before[0], after[0], strict=True)]
    result["softirq_ticks_per_cpu"] = [b - a for a, b in zip(before[1], after[1], strict=True)]
    if where.threads.server or where.threads.tool:
        egress = max(1, result["egress_total"])
        result["server_receive_us_per_egress"] = round((after[2] - before[2]) / 1000 / egress, 4)
        result["tool_receive_us_per_egress"] = round((after[3] - before[3]) / 1000 / egress, 4)
        result["us_per_egress_with_receive"] = round(result["us_per_egress_packet"]
                                                     + result["server_receive_us_per_egress"], 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--seconds", type=float, default=4.0, help="steady window per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2, help="runs per (calls, cipher) pair, alternated")
    parser.add_argument("--veth", action="store_true",
                        help="also run each shape with the receivers behind a veth device (the send path alone): "
                             "the same as adding veth-drop to --topology")
    parser.add_argument("--topology", default="loopback",
                        help=f"comma-separated, alternated within each shape: {', '.join(TOPOLOGIES)}")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    topologies = [t for t in args.topology.split(",") if t] + (["veth-drop"] if args.veth else [])
    unknown = sorted(set(topologies) - set(TOPOLOGIES))
    if unknown:
        parser.error(f"--topology: unknown {', '.join(unknown)}; one of {', '.join(TOPOLOGIES)}")
    with tempfile.TemporaryDirectory(prefix="egress-floor-") as tmp, contextlib.ExitStack() as stack:
        binary = build(Path(tmp))
        places = [place(topology, stack) for topology in dict.fromkeys(topologies)]
        runs = []
        for round_ in range(args.rounds):
            for calls in args.calls:
                for where in places:
                    for crypto in (True, False):
                        run = one_run(binary, calls, crypto, args.warmup, args.seconds, where)
                        run["round"] = round_
                        runs.append(run)
                        loss = "" if run["loss"] is None else f", loss {run['loss']:.3%}"
                        loss += "" if run["valid"] else " (NOT VALID: nothing forwarded in the window)"
                        receive = (f", + own receive {run['server_receive_us_per_egress']:.2f} (tool's receive "
                                   f"{run['tool_receive_us_per_egress']:.2f})"
                                   if "server_receive_us_per_egress" in run else "")
                        print(f"calls {calls:4d} {run['where']:9s} cipher {'on ' if crypto else 'off'}: "
                              f"{run['us_per_egress_packet']:.2f} us/egress (user {run['user_us_per_egress']:.2f}, "
                              f"system {run['sys_us_per_egress']:.2f}){receive}, {run['egress_per_s']:.0f} pkt/s"
                              f"{loss}; NET_RX per CPU {run['net_rx_softirqs_per_cpu']}, softirq ticks "
                              f"{run['softirq_ticks_per_cpu']}", file=sys.stderr, flush=True)
    report = {"load_average": os.getloadavg(), "topologies": topologies, "runs": runs}
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
