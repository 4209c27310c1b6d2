"""The media plane's periodic Python at capacity size, per second of server time: what runs around the native step
when nothing joins, timed job by job in one process.

    .venv/bin/python -m bench.periodic_jobs [--calls 200] [--rounds 3] [--json]

A real ``MediaPlane`` (bench/step_plane.py's rig: every peer keyed on a loopback socket of its own, no handshake)
with ``--calls`` calls of 8 sessions, 2 publishers each and a route from each publisher to the 7 others (the capacity
shape), and one packet forwarded on every route so that every report has its SRs. Then each job the plane's tasks
run is called as often as they call it in one second (``PERIODS``), timed with the thread's CPU clock; the best of
``--rounds`` is reported per job, in ms of CPU per second (a share of one core), and in µs per egress packet at the
shape's nominal rate (calls x 2 talkers x 7 receivers x 50 packets/s). Consent STUN, signaling and the load tool's
``/metrics`` scrape are not in it (they are not the plane's timers); bench/egress_where.py sees everything, this
says which timer it is.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

from callsd.adapters.media import retransmit, twcc_recv
from callsd.adapters.media.dtls import Certificate
from callsd.adapters.media.forwarder import URI_AUDIO_LEVEL, InTrack, OutRoute
from callsd.adapters.media.plane_rtcp import send_nack
from callsd.adapters.media.srtp import SrtpContext
from callsd.core.calls.events import TrackKind

from .step_plane import empty_clients, open_step_plane, step_keys

USERS, TALKERS, PPS = 8, 2, 50
CERT = Certificate.generate("bench-periodic")


def build(calls: int) -> tuple[Any, Any]:
    """The rig with ``calls`` calls' tracks and routes, every route having carried one packet."""
    rig = open_step_plane("native", calls * USERS - 1, CERT, rcvbuf=1 << 20)
    plane = rig.plane
    server = rig.sock.getsockname()
    for call in range(calls):
        for talker in range(TALKERS):
            index = call * USERS + talker
            pub = plane.sessions[f"s{index}"]
            ssrc = 0x10000 + index
            track = InTrack(track_id=f"t{index}", session=pub, kind=TrackKind.AUDIO, media="audio", mid=str(talker),
                            ssrc=ssrc, clock_rate=48000, codecs={111: ("opus", 48000, 2, "")},
                            ext={URI_AUDIO_LEVEL: 1}, stream_id="s")
            pub.inbound[ssrc] = track
            plane.tracks[track.track_id] = track
            for other in range(USERS):
                if other == talker:
                    continue
                rcv = plane.sessions[f"s{call * USERS + other}"]
                route = OutRoute(track=track, receiver=rcv, ssrc=0x50000 + index * USERS + other, mid="",
                                 paused=False, ts_offset=0)
                route.set_mapping({111: 111}, {1: 1})
                route.negotiated = True
                track.routes[rcv.session_id] = route
                rcv.routes_in[track.track_id] = route
            track.relive()
            packet = SrtpContext(step_keys(index)[1]).protect_rtp(struct.pack("!BBHII", 0x80, 111, 1, 960, ssrc)
                                                                    + bytes(160))
            assert packet is not None
            rig.clients[index].sendto(bytes(packet), server)
    while plane.endpoint.path.drain(rig.sock, 256) >= 256:
        pass
    empty_clients(rig)
    return rig, plane


def jobs(plane: Any, ticks: Iterator[int]) -> dict[str, tuple[float, Callable[[], None]]]:
    """Each periodic job of the plane and the endpoint: (calls per second, the call), as their tasks make them;
    ``ticks`` numbers the housekeeping calls across rounds, so its clock keeps moving from one round to the next."""
    ep = plane.endpoint
    quarter = 4.0 / plane._report_interval  # noqa: SLF001 - _periodic's rate
    # The rig's peers were added outside Trio, on the endpoint's clock at 0: its timers must see a time just after
    # that, or every peer's consent has expired and the first housekeeping closes them all.
    clock = 1.0

    try:  # the peers the plane's round walks (session 10); a tree from before walks every peer
        feedback_peers = plane.feedback_peers.current
    except AttributeError:
        feedback_peers = ep.peers.__iter__

    def housekeeping() -> None:  # on a clock that moves a tick per call, as the task's: consent walks come due
        ep.check_timers(clock + next(ticks) * ep.config.tick)

    return {
        "RTCP reports (send_due_reports, 10 ticks a second)": (plane.reports.slots / plane._report_interval,  # noqa: SLF001
                                                                plane.send_due_reports),
        "endpoint housekeeping (check_timers: consent, DTLS timers)": (1.0 / ep.config.tick, housekeeping),
        "transport-cc feedback round (send_feedback)": (1.0 / twcc_recv.INTERVAL,
                                                        lambda: twcc_recv.send_feedback(feedback_peers(),
                                                                                        ep.send_rtcp_round)),
        "forwarder tick (key frames, layer state)": (quarter, lambda: plane.forwarder.tick(list(plane.tracks.values()))),
        "NACK round": (quarter, lambda: retransmit.nack_round(plane.forwarder, list(plane.tracks.values()), send_nack)),
        "ICE outcome watch": (quarter, lambda: plane.ice_watch.check(clock, ep.peer)),
        "probing tick": (10.0, plane.probes.tick),
    }


def measure(plane: Any, rounds: int) -> dict[str, float]:
    """Best-of-rounds ms of CPU per second of server time, per job."""
    best: dict[str, float] = {}
    ticks = itertools.count()
    for _ in range(rounds):
        for name, (per_second, call) in jobs(plane, ticks).items():
            n = max(1, round(per_second))
            start = time.thread_time()
            for _ in range(n):
                call()
            ms = (time.thread_time() - start) * 1000 * per_second / n
            best[name] = min(best.get(name, ms), ms)
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.periodic_jobs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    rig, plane = build(args.calls)
    try:
        best = measure(plane, args.rounds)
    finally:
        rig.close()
    egress = args.calls * TALKERS * (USERS - 1) * PPS
    rows = {name: {"ms_cpu_per_s": round(ms, 2), "us_per_egress_packet": round(ms * 1000 / egress, 4)}
            for name, ms in best.items()}
    total = sum(best.values())
    result = {"calls": args.calls, "sessions": args.calls * USERS, "egress_per_s": egress, "jobs": rows,
              "total_ms_cpu_per_s": round(total, 2), "total_us_per_egress_packet": round(total * 1000 / egress, 4),
              "load_average_start": load, "load_average_end": os.getloadavg()}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for name, row in rows.items():
        print(f"{row['ms_cpu_per_s']:8.2f} ms/s  {row['us_per_egress_packet']:.4f} µs/egress  {name}")
    print(f"{total:8.2f} ms/s  {total * 1000 / egress:.4f} µs/egress  total ({args.calls} calls, {egress} egress/s)")


if __name__ == "__main__":
    main()
