"""The per-packet cost of forwarding simulcast video, both paths, in one process: CPU per egress video packet, and
how often the native step still calls Python.

    python -m bench.simulcast_step [--receivers 6] [--frames 1500] [--rtx-share 0.02] [--twcc] [--rounds 3] [--json]

Like ``bench.forward_step`` (no child processes, no wakeups; `getrusage` around the endpoint's drain only), with a
simulcast publisher instead of an audio one: a VP8 screen share in three layers (q, h, f: 1, 3 and 8 packets of
300, 700 and 1100 bytes per frame, 30 frames a second of virtual time, a key frame on every layer every 100 frames),
its layer SSRCs learnt from the RID extension, an RTX stream per layer of which ``--rtx-share`` of the packets
are retransmissions (a copy of a packet sent a few frames before). ``--receivers`` routes, their layer chosen from
a fixed estimate per receiver (a third each on q, h and f). Reported per path: µs of user and system CPU per egress
video packet, and per path the share of ingress RTP packets handed to the Python per-packet path (``on_rtp``) and
the Python calls the native step makes per egress packet (layer decisions every ``DECIDE_INTERVAL_S`` per route,
rate windows, key-frame requests, switches). The paths alternate ``--rounds`` times; the best round of each is
reported with the ratio (docs/performance.md, docs/video.md). ``--twcc``: every receiver negotiated transport-cc
(a ``TransportSequencer`` stamps each packet sent to it, as Chromium receivers have; on the native path that is
stamped by the step itself since ADR 0024; ``--stamp-ab`` adds the path "native-pystamp", where a subclass makes
the step call the sequencer's Python ``stamp`` for each packet as before, for the A/B in one run).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from callsd.adapters.media.dtls import Certificate
from callsd.adapters.media.forwarder import InTrack, OutRoute
from callsd.adapters.media.srtp import SrtpContext
from callsd.adapters.media.twcc_send import SequencerTwin, TransportSequencer
from callsd.core.calls.events import TrackKind
from callsd.core.wire.simulcast_sdp import REPAIRED_RID_URI, RID_URI

from .step_plane import best_of_rounds, open_step_plane, step_keys, timed_drain

CERT = Certificate.generate("bench-simulcast")
RIDS = ("q", "h", "f")
PER_FRAME = (1, 3, 8)
SIZE = (300, 700, 1100)
SSRCS = (0x1000, 0x2000, 0x3000)
RTX_SSRCS = (0x1001, 0x2001, 0x3001)
RID_EXT, RRID_EXT, VP8_PT, RTX_PT = 10, 11, 96, 97
ESTIMATES = (150_000, 700_000, None)  # per receiver, in turn: the q, h and f layers' worth (None: the top one)


def _ext(ext_id: int, rid: str) -> bytes:
    body = bytes([ext_id << 4 | (len(rid) - 1)]) + rid.encode()
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def _stream(frames: int, rtx_share: float) -> list[tuple[float, bytes]]:
    """(virtual time, plain RTP) of the publisher: every layer's packets, frame by frame, with RTX copies."""
    out: list[tuple[float, bytes]] = []
    seq = [0, 10000, 20000]
    rtx_seq = [0, 0, 0]
    sent: list[list[bytes]] = [[], [], []]
    owed = 0.0
    for frame in range(frames):
        at = 1000.0 + frame / 30
        key = frame % 100 == 0
        for layer, rid in enumerate(RIDS):
            for k in range(PER_FRAME[layer]):
                desc = bytes([0x90 if k == 0 else 0x80, 0xE0, 0x80 | (frame >> 8 & 0x7F), frame & 0xFF,
                              frame & 0xFF, 0x20, 0x00 if key and k == 0 else 0x01])
                plain = (struct.pack("!BBHII", 0x90 | 0, VP8_PT | (0x80 if k == PER_FRAME[layer] - 1 else 0),
                                     seq[layer], frame * 3000 & 0xFFFFFFFF, SSRCS[layer])
                         + _ext(RID_EXT, rid) + desc + bytes(SIZE[layer] - len(desc)))
                seq[layer] = (seq[layer] + 1) & 0xFFFF
                sent[layer].append(plain)
                out.append((at, plain))
                owed += rtx_share
                if owed >= 1 and len(sent[layer]) > 20:
                    owed -= 1
                    old = sent[layer][-20]
                    start = 12 + len(_ext(RID_EXT, rid))
                    rtx = (struct.pack("!BBHII", 0x90, RTX_PT, rtx_seq[layer], int.from_bytes(old[4:8], "big"),
                                       RTX_SSRCS[layer]) + _ext(RRID_EXT, rid) + old[2:4] + old[start:])
                    rtx_seq[layer] += 1
                    out.append((at, rtx))
    return out


class _PythonStamped(SequencerTwin):
    """A sequencer the native step does not recognise (the pure-Python twin, not a C record): it calls ``stamp``
    (the pre-ADR 0024 cost)."""

    __slots__ = ()
    results = TransportSequencer.results


def _count_calls(obj: Any, names: tuple[str, ...], calls: Counter[str]) -> None:
    """Count calls to ``obj``'s methods ``names`` (instance attributes shadow the class's, for the C step too)."""
    for name in names:
        method: Callable[..., Any] = getattr(obj, name)

        def counted(*args: Any, _m: Callable[..., Any] = method, _n: str = name) -> Any:
            calls[_n] += 1
            return _m(*args)

        setattr(obj, name, counted)


def measure(fast_path: str, receivers: int, frames: int, rtx_share: float, twcc: bool = False,
            chunk: int = 200) -> dict[str, Any]:
    """One run of one path (see the module docstring)."""
    label = fast_path
    sequencer: type[TransportSequencer] | type[_PythonStamped] = TransportSequencer
    if fast_path == "native-pystamp":
        fast_path, sequencer = "native", _PythonStamped
    rig = open_step_plane(fast_path, receivers, CERT, rcvbuf=8 << 20,
                          twcc=(lambda: sequencer(5, time.monotonic)) if twcc else None)
    plane = rig.plane
    pub = plane.sessions["s0"]
    track = InTrack(track_id="screen", session=pub, kind=TrackKind.SCREEN_VIDEO, media="video", mid="0", ssrc=None,
                    clock_rate=90000, codecs={VP8_PT: ("vp8", 90000, 1, "")},
                    ext={RID_URI: RID_EXT, REPAIRED_RID_URI: RRID_EXT}, stream_id="s")
    pub.published["0"] = track
    plane.tracks[track.track_id] = track
    now = [1000.0]
    sim = plane.simulcast
    sim._clock = lambda: now[0]  # noqa: SLF001 - virtual time: 30 frames a second whatever the CPU
    estimates = {f"s{i}": ESTIMATES[(i - 1) % 3] for i in range(1, receivers + 1)}
    sim._estimate = estimates.get  # noqa: SLF001 - a fixed estimate per receiver
    sim.add_track(track, RIDS, RTX_PT)
    for i in range(1, receivers + 1):
        rcv = plane.sessions[f"s{i}"]
        route = OutRoute(track=track, receiver=rcv, ssrc=0x5000 + i, mid="", paused=False, ts_offset=i)
        route.set_mapping({VP8_PT: VP8_PT}, {})
        route.negotiated = True
        track.routes[rcv.session_id] = route
    track.relive()
    calls: Counter[str] = Counter()
    _count_calls(sim, ("_decide", "_keyframe", "_switched", "_route_state"), calls)
    _count_calls(plane.endpoint.handler, ("on_rtp",), calls)
    sender = SrtpContext(step_keys(0)[1])
    stream = [(at, bytes(sender.protect_rtp(p))) for at, p in _stream(frames, rtx_share)]  # type: ignore[arg-type]

    def advance_clock(start: int) -> None:
        now[0] = stream[min(start + chunk, len(stream)) - 1][0]

    cost = timed_drain(rig, [data for _, data in stream], chunk, advance_clock)
    rig.close()
    out = cost.egress
    counters = plane.counters
    python_calls = calls["_decide"] + calls["_keyframe"] + calls["_switched"] + calls["_route_state"]
    return {"path": label, "ingress": len(stream), "egress": out, **cost.per_egress_us(),
            "python_path_share": calls["on_rtp"] / len(stream),
            "python_calls_per_egress_packet": python_calls / out if out else None,
            "calls": dict(calls), "switches": counters["simulcast_switches"], "rtx_in": counters["rtx_in"],
            "layer_out": [counters[f"simulcast_rtp_out_l{k}"] for k in range(3)]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.simulcast_step", description=__doc__.split("\n\n")[0])
    ap.add_argument("--receivers", type=int, default=6)
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--rtx-share", type=float, default=0.02)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--twcc", action="store_true", help="receivers with transport-cc (a sequencer stamps each packet)")
    ap.add_argument("--stamp-ab", action="store_true",
                    help="with --twcc: also the native path calling the sequencer's Python stamp per packet")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not (1 <= args.receivers <= 64 and 100 <= args.frames <= 20_000 and 0 <= args.rtx_share <= 0.5
            and 1 <= args.rounds <= 20):
        ap.error("receivers 1..64, frames 100..20000, rtx-share 0..0.5, rounds 1..20")
    load_start = os.getloadavg()
    paths = ("python", "native", "native-pystamp") if args.twcc and args.stamp_ab else ("python", "native")
    rows = []
    for r in range(args.rounds):
        for p in paths:
            rows.append(measure(p, args.receivers, args.frames, args.rtx_share, args.twcc))
            if not args.json:
                print(f"round {r + 1}/{args.rounds} {p}: {rows[-1]['us_per_egress_packet']:.2f} µs", flush=True)
    result = best_of_rounds(rows, paths, {"receivers": args.receivers, "frames": args.frames,
                                          "rtx_share": args.rtx_share, "twcc": args.twcc}, load_start)
    best = result["paths"]
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for p in paths:
        b = best[p]
        print(f"{p:>14}: user {b['user_us']:.2f} + system {b['system_us']:.2f} = {b['us_per_egress_packet']:.2f} µs "
              f"per egress video packet ({b['egress']} packets, layers out {b['layer_out']}, {b['switches']} "
              f"switches, {b['rtx_in']} RTX in); Python path {100 * b['python_path_share']:.3f} % of ingress, "
              f"{b['python_calls_per_egress_packet']:.4f} Python calls per egress packet {b['calls']}")
    print(f"best rounds: native / python = {result['native_over_python']:.2f}; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
