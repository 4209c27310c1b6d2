"""The per-packet cost of the receive step alone, both paths, in one process: user and system CPU per egress packet.

    python -m bench.forward_step [--receivers 4] [--packets 20000] [--chunk 200] [--rounds 3] [--json]
                                 [--twcc]

No child processes and no wakeups: one publisher's pre-protected SRTP packets (160 bytes of audio with a one-byte
audio-level extension that every route remaps) are written into the SFU's socket `--chunk` at a time, then the
endpoint's path drains them (`ReceivePath.drain`, the same call the receive loop makes) and forwards each to
`--receivers` routes through a real ``MediaPlane`` forwarder; the receivers' sockets are emptied outside the timed
part. The timed part is `getrusage` around the drain only, so user time is the path's own work and system time is
the kernel's (`recvfrom`/`recvmmsg`, `sendto`/`sendmmsg` and, on loopback, the delivery into the receivers'
sockets). The paths alternate `--rounds` times; the best round of each is reported with the ratio. Complements
`bench.forward`, which measures the whole process under a paced load (docs/performance.md).

`--twcc`: every receiver negotiated transport-wide congestion control (a ``TransportSequencer`` stamps each packet,
as browsers' answers ask; the native step stamps it in C, native/twcc_step.h).

`--join-writes N`: before each chunk, N joins' worth of attribute writes on new objects (a session's `peer`, a
peer's `_tx`, `address` and `twcc`: first None, then set, as a join does; `JoinWrites`), outside the timed part. At
50 joins/s a server sees such writes every ~1 ms, i.e. between any route's two packets (20 ms apart): with a chunk
covering every call once, N=1 is the join wave's case for the routes' cached send state (native/send_state.h).

`--callgrind` (native path only): runs under valgrind's callgrind with its cache simulation (32 KiB L1D, and a
1 MiB last level as this host's per-core L2), counting inside the native step only (``Engine_step``), and prints
instructions, data reads and writes and simulated misses per egress packet: figures the host's load cannot move
(docs/performance.md, sessions 6 and 7). Since session 10 the figure is the difference of two runs side by side
(``--packets`` and one packet per publisher), so what a run pays once (the rig's set-up drains: each client's
address is learnt through the path, as ICE learns it in a server) stays out; ``all_in`` is the full run's total
over its egress packets, the figure sessions 6-9 reported. Minutes at 42,000 egress packets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from callsd.adapters.media.dtls import Certificate
from callsd.adapters.media.forwarder import URI_AUDIO_LEVEL, InTrack, OutRoute
from callsd.adapters.media.route_record import SendStateOwner
from callsd.adapters.media.srtp import SrtpContext
from callsd.adapters.media.twcc_send import TransportSequencer
from callsd.core.calls.events import TrackKind

from .step_plane import best_of_rounds, open_step_plane, step_keys, timed_drain

SSRC = 0x1234
CERT = Certificate.generate("bench-step")


class JoinWrites(SendStateOwner):
    """The attributes a join writes that a route's send state is read from, on objects of its own: a new session's
    ``peer`` and a new peer's ``_tx``, ``address`` and ``twcc``, each first None (construction), then set."""

    __slots__ = ("peer", "_tx", "address", "twcc")
    peer: Any
    _tx: Any
    address: Any
    twcc: Any

    @classmethod
    def make(cls, n: int, tx: Any, address: Any) -> None:
        for _ in range(n):
            j = cls()
            j.peer = j._tx = j.address = j.twcc = None
            j.address = address
            j._tx = tx
            j.peer = j


def measure(fast_path: str, receivers: int, packets: int, chunk: int, twcc: bool = False,
            calls: int = 1, join_writes: int = 0) -> dict[str, Any]:
    """One run: µs of user and system CPU per egress packet spent in the drain. ``calls`` > 1: that many independent
    calls (one publisher and ``receivers`` receivers each, every session its own socket), their packets interleaved
    one call after another as a saturated server reads them, so the step works on a capacity-sized set of objects
    (the per-packet cost at 100 calls is mostly memory stalls, docs/performance.md) rather than one hot call."""
    label = fast_path
    per_call = receivers + 1
    rig = open_step_plane(fast_path, calls * per_call - 1, CERT, rcvbuf=4 << 20,
                          twcc=(lambda: TransportSequencer(3, time.monotonic)) if twcc else None)
    plane = rig.plane
    ext = bytes.fromhex("bede0001") + bytes([0x10, 0x30, 0, 0])
    per_publisher = max(1, packets // calls)
    wires: list[list[bytes]] = []
    for call in range(calls):
        base = call * per_call
        pub = plane.sessions[f"s{base}"]
        ssrc = SSRC + call
        track = InTrack(track_id=f"t{call}", session=pub, kind=TrackKind.AUDIO, media="audio", mid="0", ssrc=ssrc,
                        clock_rate=48000, codecs={111: ("opus", 48000, 2, "")}, ext={URI_AUDIO_LEVEL: 1},
                        stream_id="s")
        pub.inbound[ssrc] = track
        for i in range(1, receivers + 1):
            rcv = plane.sessions[f"s{base + i}"]
            route = OutRoute(track=track, receiver=rcv, ssrc=0x5000 + base + i, mid="", paused=False, ts_offset=i)
            route.set_mapping({111: 111}, {1: 2})
            route.negotiated = True
            track.routes[rcv.session_id] = route
        track.relive()
        sender = SrtpContext(step_keys(base)[1])
        wires.append([bytes(sender.protect_rtp(struct.pack("!BBHII", 0x90, 111, k & 0xFFFF,  # type: ignore[arg-type]
                                                           k * 960 & 0xFFFFFFFF, ssrc) + ext + bytes(140)))
                      for k in range(per_publisher)])
    wire = [wires[call][k] for k in range(per_publisher) for call in range(calls)]
    senders = [call * per_call for _ in range(per_publisher) for call in range(calls)]
    spare = plane.endpoint.peer("s0")
    assert spare is not None
    cost = timed_drain(rig, wire, chunk, senders=senders,
                       before_chunk=lambda _start: JoinWrites.make(join_writes, spare._tx, spare.address))  # noqa: SLF001
    rig.close()
    return {"path": label, "egress": cost.egress, **cost.per_egress_us()}


CALLGRIND = ("valgrind", "--tool=callgrind", "--cache-sim=yes", "--D1=32768,8,64", "--LL=1048576,16,64",
             "--toggle-collect=Engine_step")


@dataclass(frozen=True, slots=True)
class _CallgrindRun:
    """One native run of this benchmark under callgrind, started (``proc``), writing ``out`` in ``tmp``."""

    proc: subprocess.Popen[str]
    out: str
    tmp: str
    keep: str  # also copy callgrind's output here ("": not)


def _callgrind_start(argv: list[str], keep: str) -> _CallgrindRun:
    """Start one native run of this benchmark (``argv``) under callgrind; ``_callgrind_read`` collects it."""
    tmp = tempfile.mkdtemp(prefix="callsd-forward-step-")
    out = os.path.join(tmp, "callgrind.out")
    proc = subprocess.Popen([*CALLGRIND, f"--callgrind-out-file={out}", sys.executable, "-m", "bench.forward_step",
                             *argv, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return _CallgrindRun(proc, out, tmp, keep)


def _callgrind_read(run: _CallgrindRun) -> tuple[dict[str, int], int]:
    """A run's event totals inside ``Engine_step`` and its egress packets (waits for it; its files are removed)."""
    import shutil

    proc, out, keep = run.proc, run.out, run.keep
    try:
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"callgrind run failed: {stderr[-2000:]}")
        egress = int(json.loads(stdout)["rounds"][0]["egress"])
        with open(out) as f:
            text = f.read()
        if keep:
            with open(keep, "w") as f:
                f.write(text)
    finally:
        shutil.rmtree(run.tmp, ignore_errors=True)
    events = re.search(r"^events: (.*)$", text, re.M)
    totals = re.search(r"^(?:totals|summary): (.*)$", text, re.M)
    if events is None or totals is None:
        raise RuntimeError("callgrind wrote no totals")
    names, values = events.group(1).split(), totals.group(1).split()
    return {name: int(v) for name, v in zip(names, values, strict=True)}, egress


def callgrind_per_egress(argv: list[str], calls: int, keep: str = "") -> dict[str, Any]:
    """Each event's count inside ``Engine_step`` per egress packet (Ir instructions, Dr/Dw data reads and writes,
    D1mr/D1mw and DLmr/DLmw simulated misses), as the difference of two native runs under callgrind, side by side:
    ``argv`` and the same with one packet per publisher. The difference leaves out what a run pays once (the rig's
    set-up drains, each stream's first packet), so the figure is what one more egress packet costs; the full run's
    own totals per egress packet are reported too (``all_in``; sessions 6-9 reported that one). ``keep``: also copy
    the full run's callgrind output there, for ``callgrind_annotate`` (which function the counts are in)."""
    small = list(argv)
    small[small.index("--packets") + 1] = str(calls)
    full_run, small_run = _callgrind_start(argv, keep), _callgrind_start(small, "")
    (full, egress), (base, base_egress) = _callgrind_read(full_run), _callgrind_read(small_run)
    marginal = {name: round((full[name] - base[name]) / (egress - base_egress), 1) for name in full}
    all_in = {name: round(v / egress, 1) for name, v in full.items()}
    return marginal | {"egress": egress, "egress_once": base_egress, "all_in": all_in}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.forward_step", description=__doc__.split("\n\n")[0])
    ap.add_argument("--receivers", type=int, default=4)
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--chunk", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--twcc", action="store_true", help="receivers stamp transport-wide sequence numbers")
    ap.add_argument("--calls", type=int, default=1, help="independent calls, packets interleaved (working set)")
    ap.add_argument("--paths", default="python,native", help="which paths to run, alternated")
    ap.add_argument("--ab", metavar="VAR", help="also alternate the environment variable VAR=0 / VAR=1 (e.g. "
                    "CALLSD_NATIVE_PREFETCH): each path runs as path@VAR=0 and path@VAR=1")
    ap.add_argument("--join-writes", type=int, default=0, help="joins' attribute writes before each chunk "
                    "(the join wave's case for the routes' cached send state)")
    ap.add_argument("--callgrind", action="store_true", help="native only: instructions and simulated cache "
                    "misses per egress packet in one run under callgrind (minutes)")
    ap.add_argument("--callgrind-out", default="", metavar="FILE", help="with --callgrind: keep callgrind's "
                    "output in FILE (callgrind_annotate FILE: the counts by function)")
    args = ap.parse_args(argv)
    if not (1 <= args.receivers <= 64 and 1 <= args.packets <= 200_000 and 1 <= args.chunk <= 1000
            and 1 <= args.rounds <= 20 and 1 <= args.calls <= 400 and 0 <= args.join_writes <= 100):
        ap.error("receivers 1..64, packets 1..200000, chunk 1..1000, rounds 1..20, calls 1..400, join-writes 0..100")
    if args.callgrind:
        if args.paths != "native" or args.ab:
            ap.error("--callgrind counts the native step: --paths native, without --ab")
        child = ["--paths", "native", "--rounds", "1", "--receivers", str(args.receivers), "--packets",
                 str(args.packets), "--chunk", str(args.chunk), "--calls", str(args.calls), "--join-writes", str(args.join_writes)] + ["--twcc"] * args.twcc
        counts = callgrind_per_egress(child, args.calls, args.callgrind_out)
        print(json.dumps({"per_egress_packet": counts, "conditions": {
            "receivers": args.receivers, "packets": args.packets, "chunk": args.chunk, "twcc": args.twcc,
            "calls": args.calls, "join_writes": args.join_writes, "callgrind": " ".join(CALLGRIND)}}, indent=1))
        return
    load_start = os.getloadavg()
    rows = []
    for _ in range(args.rounds):
        for p in args.paths.split(","):
            for value in ("0", "1") if args.ab else ("",):
                if args.ab:
                    os.environ[args.ab] = value
                row = measure(p, args.receivers, args.packets, args.chunk, args.twcc, args.calls, args.join_writes)
                rows.append(row | {"path": f"{p}@{args.ab}={value}"} if args.ab else row)
    paths = tuple(dict.fromkeys(r["path"] for r in rows))
    result = best_of_rounds(rows, paths, {"receivers": args.receivers, "packets": args.packets, "chunk": args.chunk,
                                          "twcc": args.twcc, "calls": args.calls,
                                          "join_writes": args.join_writes}, load_start)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for r in rows:
        print(f"{r['path']:>7}: user {r['user_us']:.2f} + system {r['system_us']:.2f} = "
              f"{r['us_per_egress_packet']:.2f} µs per egress packet ({r['egress']} packets)")
    print(f"best rounds: native / python = {result['native_over_python']}; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
