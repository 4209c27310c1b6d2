"""The load tool's per-packet work without the event loop, for instruction counts that the machine's load cannot move.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python -m bench.loadtool_step shared 50
    .venv/bin/python -m bench.loadtool_step --callgrind          # every engine, 2 sizes each: Ir per packet

One process, one engine, 64 legs on loopback (9 of them talkers with one audio source: 7 packets received for each one sent, as in 8-user calls with 2 talkers), as `client_cost` in
bench/capacity.py: each round a plain socket sends every leg one pre-encrypted audio packet and the engine drains
them all (its receive pump's body: the C drain, or epoll + one ``recv`` per ready socket in Python), then the engine
runs one send tick. ``--callgrind`` runs each engine at two round counts under callgrind and divides the difference
in instructions by the difference in packets: the marginal user-space instructions per packet (received, and sent),
setup and imports cancelled out. Kernel work (the syscalls) is not in these counts; bench/loadtool_cost.py measures
CPU time all-in.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.capacity import loopback_legs

LEGS = 64
TALKERS = 9  # 64 received for 9 sent: the capacity shape's 7 : 1


def run(media: str, rounds: int, delay_sample: int) -> dict[str, int]:
    import pylibsrtp
    from callsd.peer import Identity, MediaEngine, Source

    key = os.urandom(28)
    profile = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
    engine = MediaEngine(Identity(), delay_sample=delay_sample, media=media)

    src, legs = loopback_legs(engine, key, LEGS, sending=True)
    for n, leg in enumerate(legs[:TALKERS]):
        source = Source(kind="audio", ssrc=9000 + n, user_number=n)
        source.configure("0", 111, {})
        source.enabled = True
        leg.add_source(source)
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                            srtp_profile=profile))
    talker = Source(kind="audio", ssrc=1000, user_number=99)
    talker.configure("0", 111, {})
    wire = [tx.protect(talker.packets(time.monotonic_ns())[0]) for _ in range(rounds)]
    addresses = [leg.local_address for leg in legs]
    by_fd = {leg.sock.fileno(): leg for leg in legs}
    receiver = engine._receiver  # noqa: SLF001 - the pump's body, without its waits
    for packet in wire:
        for address in addresses:
            src.sendto(packet, address)
        if receiver is None:
            while events := engine.epoll.poll(0):
                for fd, _ in events:
                    engine._read_one(by_fd[fd])  # noqa: SLF001
        else:
            shared = engine.port is not None
            fd = engine.port.fileno() if engine.port is not None else engine.epoll.fileno()
            _, rest = (receiver.drain_shared if shared else receiver.drain)(fd, 4096, engine, engine.stats)
            for leg, data, arrival_ns in rest:
                engine._handle(leg, data, arrival_ns)  # noqa: SLF001
        engine.send_tick(1, time.monotonic_ns())
    engine.sync()
    return {"received": engine.rx_packets, "sent": engine.tx_packets, "srtp_errors": engine.srtp_errors}


def callgrind(media: str, rounds: int, delay_sample: int) -> tuple[int, dict[str, int]]:
    """Total instructions (Ir) of one `run` under callgrind, and its counts."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                               "-m", "bench.loadtool_step", media, str(rounds), "--delay-sample", str(delay_sample)],
                              capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
        collected = re.search(r"Collected : (\d+)", proc.stderr)
        assert collected is not None, proc.stderr[-2000:]
        return int(collected.group(1)), json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtool_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("media", nargs="?", default="shared", help="python, native or shared")
    parser.add_argument("rounds", nargs="?", type=int, default=50)
    parser.add_argument("--delay-sample", type=int, default=4)
    parser.add_argument("--callgrind", action="store_true", help="Ir per packet for every engine (minutes)")
    args = parser.parse_args(argv)
    if not args.callgrind:
        print(json.dumps(run(args.media, args.rounds, args.delay_sample)))
        return 0
    out: dict[str, Any] = {"legs": LEGS, "talkers": TALKERS, "delay_sample": args.delay_sample, "engines": {}}
    for media in ("python", "native", "shared"):
        (ir1, c1), (ir2, c2) = (callgrind(media, r, args.delay_sample) for r in (40, 120))
        packets = (c2["received"] + c2["sent"]) - (c1["received"] + c1["sent"])
        out["engines"][media] = {"ir_per_packet": round((ir2 - ir1) / packets), "packets": packets,
                                 "srtp_errors": c2["srtp_errors"]}
        print(media, out["engines"][media], file=sys.stderr, flush=True)
    base = out["engines"]["python"]["ir_per_packet"]
    out["vs_python"] = {m: round(base / v["ir_per_packet"], 2) for m, v in out["engines"].items()}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
