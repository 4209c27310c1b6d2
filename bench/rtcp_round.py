"""What the server's RTCP reporting round costs and how long it holds the event loop, both paths, in one process.

    python -m bench.rtcp_round [--calls 100] [--size 8] [--rounds 3] [--paths python,native] [--json]
                               [--builder-against REV]

``--calls`` calls of ``--size`` users on a real ``MediaPlane`` whose peers are keyed on loopback sockets
(bench/step_plane.py): each user publishes one audio stream that has carried packets and receives the other
users', so every session's report is a compound of ``size - 1`` SRs and an RR with one block, as in the capacity
shape. Three ways of sending the same round, alternated ``--rounds`` times per path:

* ``burst_each``: the round before docs/adr/0042, all sessions at once, one ``Peer.send_rtcp`` (SRTCP protect and a
  ``sendto``) per report;
* ``burst_batch``: all sessions at once through the endpoint's ``send_rtcp_round`` (on the native path SRTCP in C
  and one ``sendmmsg``; on the Python path the same as ``burst_each``);
* ``ticks_batch``: what the server does now, the interval's ``REPORT_SLOTS`` ticks, each the sessions of its slot.

Per way: µs of CPU (user + system, ``getrusage``) and of wall time per report sent, and the longest time one call
held the loop (the whole round for a burst; the longest tick for ticks), in the thread's CPU time (what it holds on
a CPU of its own) and in wall time (plus whatever preempted it). The receivers' sockets are emptied outside the
timed part. The best round (by CPU per report) of each (path, way) is reported, with ratios against
``burst_each``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from callsd.adapters.media import plane_rtcp, rtcp_term
from callsd.adapters.media.dtls import Certificate
from callsd.adapters.media.forwarder import InTrack, OutRoute
from callsd.adapters.media.report_schedule import REPORT_SLOTS
from callsd.core.calls.events import TrackKind

from .step_plane import StepPlane, empty_clients, open_step_plane

CERT = Certificate.generate("bench-rtcp")
WAYS = ("burst_each", "burst_batch", "ticks_batch")


def _call_rig(fast_path: str, calls: int, size: int) -> StepPlane:
    """``calls`` × ``size`` keyed sessions, each publishing a stream its call's others receive, all with traffic."""
    rig = open_step_plane(fast_path, calls * size - 1, CERT, rcvbuf=1 << 16)
    plane = rig.plane
    now = time.monotonic()
    for n in range(calls * size):
        pub = plane.sessions[f"s{n}"]
        ssrc = 0x10000 + n
        track = InTrack(track_id=f"t{n}", session=pub, kind=TrackKind.AUDIO, media="audio", mid="0", ssrc=ssrc,
                        clock_rate=48000, codecs={111: ("opus", 48000, 2, "")}, ext={}, stream_id="s")
        track.started, track.base_seq, track.max_seq, track.packets = True, 0, 4999, 4990
        track.last_ts, track.last_rx = 4999 * 960, now
        pub.inbound[ssrc] = track
        pub.published["0"] = track
        first = n - n % size
        for other in range(first, first + size):
            if other == n:
                continue
            rcv = plane.sessions[f"s{other}"]
            route = OutRoute(track=track, receiver=rcv, ssrc=0x500000 + n * 64 + other % size, mid="",
                             paused=False, ts_offset=other)
            route.packets, route.octets = 4990, 4990 * 160
            track.routes[rcv.session_id] = route
            rcv.routes_in[track.track_id] = route
        track.relive()
    return rig


def _timed(calls: list[Callable[[], None]]) -> tuple[float, float, float, float]:
    """(wall seconds, CPU seconds, longest single call in wall seconds, and in the thread's CPU seconds) of running
    ``calls`` one after another. The CPU figure is what the call holds the loop for on a CPU of its own; the wall
    one adds whatever preempted it (on a busy host, most of the difference)."""
    longest = longest_cpu = 0.0
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for call in calls:
        t0, c0 = time.perf_counter(), time.thread_time()
        call()
        longest_cpu = max(longest_cpu, time.thread_time() - c0)
        longest = max(longest, time.perf_counter() - t0)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, longest, longest_cpu


def measure(fast_path: str, calls: int, size: int, repeats: int) -> list[dict[str, Any]]:
    """One rig, the three ways each ``repeats`` times in turn; a row per way (its best repeat by wall time)."""
    rig = _call_rig(fast_path, calls, size)
    plane = rig.plane
    counters = plane.forwarder.counters
    sessions = list(plane.sessions.values())

    def each() -> None:
        plane_rtcp.send_reports(sessions, counters, plane.simulcast.sr_timestamp)

    ways: dict[str, list[Callable[[], None]]] = {
        "burst_each": [each],
        "burst_batch": [plane.send_reports],
        "ticks_batch": [plane.send_due_reports] * REPORT_SLOTS,
    }
    best: dict[str, dict[str, Any]] = {}
    empty_clients(rig)
    for _ in range(repeats):
        for way in WAYS:
            sent_before = plane.endpoint.counters.rtcp_out
            wall, cpu, longest, longest_cpu = _timed(ways[way])
            sent = plane.endpoint.counters.rtcp_out - sent_before
            received = empty_clients(rig)
            row = {"path": fast_path, "way": way, "reports": sent, "received": received,
                   "wall_us_per_report": wall / sent * 1e6, "cpu_us_per_report": cpu / sent * 1e6,
                   "longest_hold_ms": longest * 1e3, "longest_hold_cpu_ms": longest_cpu * 1e3,
                   "round_ms": wall * 1e3}
            if way not in best or row["cpu_us_per_report"] < best[way]["cpu_us_per_report"]:
                best[way] = row
    rig.close()
    return [best[w] for w in WAYS]


def builder_ab(rev: str, calls: int, size: int, turns: int = 15) -> dict[str, Any]:
    """``rtcp_term.session_reports`` as it was at git revision ``rev`` against today's, on the same sessions in one
    process, alternated ``turns`` times: the thread's CPU µs per session (the building alone, nothing sent). The old
    one gets the simulcast forwarder's ``sr_timestamp`` as the plane passed it then."""
    source = subprocess.run(["git", "show", f"{rev}:adapters/media/rtcp_term.py"], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parent.parent).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rtcp_term_then.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("rtcp_term_then", path)
        assert spec is not None and spec.loader is not None
        then = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(then)
    rig = _call_rig("native", calls, size)
    sessions = list(rig.plane.sessions.values())
    now, ntp = time.monotonic(), rtcp_term.ntp_now(time.time())

    def per_session(build: Callable[..., list[bytes]], own_clock: Any) -> float:
        start = time.thread_time()
        for s in sessions:
            build(s.rtcp_ssrc, s.routes_in.values(), s.inbound.values(), now, ntp, own_clock)
        return (time.thread_time() - start) / len(sessions) * 1e6

    old: list[float] = []
    new: list[float] = []
    for _ in range(turns):
        old.append(per_session(then.session_reports, rig.plane.simulcast.sr_timestamp))
        new.append(per_session(rtcp_term.session_reports, None))
    rig.close()
    old.sort()
    new.sort()
    return {"rev": rev, "old_us_per_session": old, "new_us_per_session": new, "best_ratio": new[0] / old[0],
            "median_ratio": new[turns // 2] / old[turns // 2]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.rtcp_round", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="runs per path, alternated")
    ap.add_argument("--repeats", type=int, default=5, help="each way's repeats within a run (best kept)")
    ap.add_argument("--paths", default="python,native")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--builder-against", metavar="REV", help="also time the report building of git revision REV "
                    "against today's (rtcp_term.session_reports, alternated in this process)")
    args = ap.parse_args(argv)
    if not (1 <= args.calls <= 200 and 2 <= args.size <= 16 and 1 <= args.rounds <= 10 and 1 <= args.repeats <= 20):
        ap.error("calls 1..200, size 2..16, rounds 1..10, repeats 1..20")
    load_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for path in args.paths.split(","):
            rows += [row | {"round": r} for row in measure(path, args.calls, args.size, args.repeats)]
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = f"{row['path']}/{row['way']}"
        if key not in best or row["cpu_us_per_report"] < best[key]["cpu_us_per_report"]:
            best[key] = row
    ratios = {key: {field: row[field] / best[f"{row['path']}/burst_each"][field]
                    for field in ("cpu_us_per_report", "longest_hold_cpu_ms", "longest_hold_ms")}
              for key, row in best.items()}
    result: dict[str, Any] = {"best": best, "over_burst_each": ratios, "rounds": rows,
              "conditions": {"calls": args.calls, "size": args.size, "sessions": args.calls * args.size,
                             "slots": REPORT_SLOTS, "cpus": os.cpu_count(), "load_average_start": load_start,
                             "load_average_end": os.getloadavg()}}
    if args.builder_against:
        result["builder"] = builder_ab(args.builder_against, args.calls, args.size)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for key, row in best.items():
        ratio = ratios[key]
        print(f"{key:>20}: {row['cpu_us_per_report']:6.2f} µs CPU per report, longest hold {row['longest_hold_cpu_ms']:6.2f} "
              f"ms CPU ({row['longest_hold_ms']:6.2f} wall); × {ratio['cpu_us_per_report']:.2f} CPU, "
              f"× {ratio['longest_hold_cpu_ms']:.2f} hold against burst_each ({row['reports']} reports, "
              f"{row['received']} received)")
    if "builder" in result:
        b = result["builder"]
        print(f"building a session's reports: {b['old_us_per_session'][0]:.2f} µs at {b['rev']}, "
              f"{b['new_us_per_session'][0]:.2f} now (× {b['best_ratio']:.2f} best, × {b['median_ratio']:.2f} median)")
    print(f"load average {' '.join(f'{x:.1f}' for x in load_start)} -> "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
