"""The floor under issue 13's "<= 4 us per egress packet": what a framework-free C forwarder pays on this machine.

    python -m bench.egress_floor [--calls 100 200] [--seconds 4] [--warmup 1] [--rounds 2] [--veth] [--out FILE]

Builds ``bench/egress_floor.c`` with the system compiler and libcrypto, then per ``--calls`` value runs its sink (the
load tool's side: one wildcard socket, every receiver a loopback address of its own, IP_PKTINFO and SO_TIMESTAMPNS on,
talkers' packets paced in 20 ms ticks) pinned to CPU 1 and its forwarder (recvmmsg, AES-128-GCM open, 7 copies
rewritten and sealed each with the receiver's own EVP context, sendmmsg of 64) pinned to CPU 0, the capacity bench's
pinning and shape (calls x 8 users x 2 talkers). It prints one JSON object: per run, the forwarder's user and system
CPU per egress packet over the steady window, with and without the cipher, and the loss the sink saw.

Why: the system time of this forwarder is the kernel's price of one loopback datagram (the send path, and the
delivery into the receiver's socket, which loopback runs in the sender's context); its user time is the cipher and
a copy. callsd's figure at the same shape (``bench.capacity_paths``) minus this one is callsd's own overhead.

``--veth`` adds, per shape, the same forwarder in a network namespace of its own whose receivers are routed out of a
veth device and dropped on arrival (`veth_namespace`): the send path alone, without the delivery into a receiving
socket, which on a real network runs on another machine. The sink there only sends the talkers' packets.
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
from pathlib import Path
from typing import Any

from bench.capacity import _pin  # the capacity bench's pinning (CPU 0 the forwarder, CPU 1 its sink)

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


def one_run(binary: Path, calls: int, crypto: bool, warmup: float, seconds: float,
            namespace: list[str] | None = None) -> dict[str, Any]:
    """Sink first (it names its port), then the forwarder (it names its own); the sink learns the forwarder's port on
    stdin and starts the talkers. The forwarder stops after its window; the sink a second later. In ``namespace``
    (a `veth_namespace`), both run there and the copies go out of its veth device."""
    flag = "1" if crypto else "0"
    inside = namespace or []
    receivers = [VETH_BASE] if namespace else []
    sink = subprocess.Popen([*inside, *_pin(1), str(binary), "sink", str(calls), str(warmup + seconds + 1.5), flag],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sink.stdin is not None and sink.stdout is not None
    sink_port = sink.stdout.readline().strip()
    forwarder = subprocess.Popen([*inside, *_pin(0), str(binary), "forward", str(calls), sink_port, str(warmup),
                                  str(seconds), flag, *receivers], stdout=subprocess.PIPE, text=True)
    assert forwarder.stdout is not None
    sink.stdin.write(forwarder.stdout.readline())
    sink.stdin.close()
    result: dict[str, Any] = json.loads(forwarder.stdout.readline())
    forwarder.wait(timeout=30)
    seen: dict[str, Any] = json.loads(sink.stdout.readline())
    sink.wait(timeout=30)
    result["where"] = "veth" if namespace else "loopback"
    result["valid"] = result["egress"] > 1  # no egress in the window: the sink's CPU was taken (a shared host)
    result["sink_sent"], result["sink_received"] = seen["sent"], seen["received"]
    delivered = seen["received"] / result["egress_total"] if result["egress_total"] else 0.0
    result["loss"] = None if namespace else round(max(0.0, 1 - delivered), 5)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--seconds", type=float, default=4.0, help="steady window per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2, help="runs per (calls, cipher) pair, alternated")
    parser.add_argument("--veth", action="store_true",
                        help="also run each shape with the receivers behind a veth device (the send path alone)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="egress-floor-") as tmp, contextlib.ExitStack() as stack:
        binary = build(Path(tmp))
        places: list[list[str] | None] = [None]
        if args.veth:
            places.append(stack.enter_context(veth_namespace()))
        runs = []
        for round_ in range(args.rounds):
            for calls in args.calls:
                for namespace in places:
                    for crypto in (True, False):
                        run = one_run(binary, calls, crypto, args.warmup, args.seconds, namespace)
                        run["round"] = round_
                        runs.append(run)
                        loss = "" if run["loss"] is None else f", loss {run['loss']:.3%}"
                        loss += "" if run["valid"] else " (NOT VALID: nothing forwarded in the window)"
                        print(f"calls {calls:4d} {run['where']:8s} cipher {'on ' if crypto else 'off'}: "
                              f"{run['us_per_egress_packet']:.2f} us/egress (user {run['user_us_per_egress']:.2f}, "
                              f"system {run['sys_us_per_egress']:.2f}), {run['egress_per_s']:.0f} pkt/s{loss}",
                              file=sys.stderr, flush=True)
    report = {"load_average": os.getloadavg(), "runs": runs}
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
