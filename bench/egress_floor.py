"""The floor under issue 13's "<= 4 us per egress packet": what a framework-free C forwarder pays on this machine.

    python -m bench.egress_floor [--calls 100 200] [--seconds 4] [--warmup 1] [--rounds 2] [--out FILE]

Builds ``bench/egress_floor.c`` with the system compiler and libcrypto, then per ``--calls`` value runs its sink (the
load tool's side: one wildcard socket, every receiver a loopback address of its own, IP_PKTINFO and SO_TIMESTAMPNS on,
talkers' packets paced in 20 ms ticks) pinned to CPU 1 and its forwarder (recvmmsg, AES-128-GCM open, 7 copies
rewritten and sealed each with the receiver's own EVP context, sendmmsg of 64) pinned to CPU 0, the capacity bench's
pinning and shape (calls x 8 users x 2 talkers). It prints one JSON object: per run, the forwarder's user and system
CPU per egress packet over the steady window, with and without the cipher, and the loss the sink saw.

Why: the system time of this forwarder is the kernel's price of one loopback datagram (the send path, and the
delivery into the receiver's socket, which loopback runs in the sender's context); its user time is the cipher and
a copy. callsd's figure at the same shape (``bench.capacity_paths``) minus this one is callsd's own overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("egress_floor.c")


def build(directory: Path) -> Path:
    """The forwarder binary, compiled from SOURCE (-O2, libcrypto)."""
    binary = directory / "egress_floor"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(SOURCE), "-lcrypto"], check=True)
    return binary


def pinned(cpu: int) -> list[str]:
    """taskset prefix for a CPU, when the machine has two CPUs and taskset exists (as bench.capacity pins)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def one_run(binary: Path, calls: int, crypto: bool, warmup: float, seconds: float) -> dict[str, Any]:
    """Sink first (it names its port), then the forwarder (it names its own); the sink learns the forwarder's port on
    stdin and starts the talkers. The forwarder stops after its window; the sink a second later."""
    flag = "1" if crypto else "0"
    sink = subprocess.Popen([*pinned(1), str(binary), "sink", str(calls), str(warmup + seconds + 1.5), flag],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sink.stdin is not None and sink.stdout is not None
    sink_port = sink.stdout.readline().strip()
    forwarder = subprocess.Popen([*pinned(0), str(binary), "forward", str(calls), sink_port, str(warmup),
                                  str(seconds), flag], stdout=subprocess.PIPE, text=True)
    assert forwarder.stdout is not None
    sink.stdin.write(forwarder.stdout.readline())
    sink.stdin.close()
    result: dict[str, Any] = json.loads(forwarder.stdout.readline())
    forwarder.wait(timeout=30)
    seen: dict[str, Any] = json.loads(sink.stdout.readline())
    sink.wait(timeout=30)
    result["sink_received"] = seen["received"]
    result["loss"] = round(max(0.0, 1 - seen["received"] / result["egress_total"]), 5) if result["egress_total"] else 1.0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--seconds", type=float, default=4.0, help="steady window per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2, help="runs per (calls, cipher) pair, alternated")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="egress-floor-") as tmp:
        binary = build(Path(tmp))
        runs = []
        for round_ in range(args.rounds):
            for calls in args.calls:
                for crypto in (True, False):
                    run = one_run(binary, calls, crypto, args.warmup, args.seconds)
                    run["round"] = round_
                    runs.append(run)
                    print(f"calls {calls:4d} cipher {'on ' if crypto else 'off'}: "
                          f"{run['us_per_egress_packet']:.2f} us/egress (user {run['user_us_per_egress']:.2f}, "
                          f"system {run['sys_us_per_egress']:.2f}), {run['egress_per_s']:.0f} pkt/s, "
                          f"loss {run['loss']:.3%}", file=sys.stderr, flush=True)
    report = {"load_average": os.getloadavg(), "runs": runs}
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
