"""Two parts of the load tool's Python around its media engine, old against new in one process (issue 13).

    .venv/bin/python -m bench.loadtool_parts                     # 200 calls x 8 x 2, 5 alternations
    .venv/bin/python -m bench.loadtool_parts --calls 200 --json out.json

- **The send tick's walk**: ``calls x 8`` connected legs on the shared-port engine, two talkers per call whose audio
  sources are muted (so no packet is built or sent: what is left is the walk over the legs, the part
  `MediaEngine.legs_with_sources` cut). The tick is given every leg (``walk-all``, before) or only the legs with
  sources (``with-sources``, now), alternated in blocks of ``--ticks`` ticks; CPU time (``time.process_time``) per
  tick.
- **The progress snapshot**: the same number of legs, each with 7 received streams in a steady-state shape (counters
  set, sampled), summed by `MediaEngine.snapshot` (one pass, now) and by the former two walks (`delivery`, then the
  streams' properties), alternated; CPU time per snapshot. The worker takes one every 0.5 s.

CPU time of one process, so the machine's load moves both sides alike; the medians and their ratio are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.capacity import engine_srtp_session

USERS_PER_CALL = 8
TALKERS = 2


def _old_snapshot_sums(engine: Any, legs: list[Any]) -> tuple[int, ...]:
    """The sums as the snapshot made them before the one-pass version: `delivery`, then a walk over properties."""
    delivery_expected, delivery_lost = engine.delivery(legs)
    expected = received = lost = e2e_expected = e2e_lost = 0
    for leg in legs:
        for st in leg.streams.values():
            expected += st.expected
            received += st.received
            lost += st.lost
            e2e_expected += st.e2e_expected
            e2e_lost += st.e2e_lost
    return expected, received, lost, e2e_expected, e2e_lost, delivery_expected, delivery_lost


def _engine(calls: int) -> tuple[Any, list[Any]]:
    from callsd.peer import Identity, Leg, MediaEngine, Source
    from callsd.peer.stats import StreamStats

    engine = MediaEngine(Identity(), media="shared")
    key = os.urandom(28)
    legs: list[Any] = []
    for call in range(calls):
        for user in range(USERS_PER_CALL):
            number = call * USERS_PER_CALL + user
            leg = Leg(engine, user_number=number, call_index=call, ufrag="u", pwd="p")
            leg.state = "connected"
            leg.tx = engine_srtp_session(engine, key, True)
            if user < TALKERS:
                source = Source(kind="audio", ssrc=10_000 + number, user_number=number, seed=number)
                source.configure("0", 111, {})
                source.enabled = False  # the walk only: nothing built or sent
                source.started_ns = 1
                engine.add_source(source)
                leg.add_source(source)
            for other in range(USERS_PER_CALL - 1):  # what a user hears in an 8-user call, counters mid-run
                stats = StreamStats("audio", 48000)
                stats.started = True
                stats.base_seq, stats.max_seq, stats.cycles, stats.received = 100, 4000, 0x10000, 69_800
                stats.sender = (call * USERS_PER_CALL + other % TALKERS) * 4
                stats.first_counter, stats.last_counter, stats.first_index, stats.last_index = 3, 69_880, 0, 69_790
                leg.streams[20_000 + other] = stats
            legs.append(leg)
    return engine, legs


def measure(calls: int, rounds: int, ticks: int) -> dict[str, Any]:
    engine, legs = _engine(calls)
    with_sources = engine.legs_with_sources
    walk: dict[str, list[float]] = {"walk-all": [], "with-sources": []}
    snap: dict[str, list[float]] = {"two-walks": [], "one-pass": []}
    now = time.monotonic_ns()
    engine.stopped_ns = now
    new = engine.snapshot(legs)
    old = _old_snapshot_sums(engine, legs)
    keys = ("expected", "received", "lost", "e2e_expected", "e2e_lost", "delivery_expected", "delivery_lost")
    assert tuple(new[k] for k in keys) == old, (new, old)
    for _ in range(rounds):
        for name, given in (("walk-all", engine.legs), ("with-sources", with_sources)):
            engine.legs_with_sources = given
            t0 = time.process_time()
            for i in range(ticks):
                engine.send_tick(1, now + i * 20_000_000)
            walk[name].append(1e6 * (time.process_time() - t0) / ticks)
        engine.legs_with_sources = with_sources
        for name, run in (("two-walks", lambda: _old_snapshot_sums(engine, legs)),
                          ("one-pass", lambda: engine.snapshot(legs))):
            t0 = time.process_time()
            for _ in range(10):
                run()
            snap[name].append(1e3 * (time.process_time() - t0) / 10)
    for leg in legs:
        leg.close()
    med_walk = {k: round(statistics.median(v), 1) for k, v in walk.items()}
    med_snap = {k: round(statistics.median(v), 2) for k, v in snap.items()}
    return {
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "loadavg": list(os.getloadavg()),
        "shape": f"{calls} x {USERS_PER_CALL} x {TALKERS}", "legs": len(legs),
        "send_tick_walk_us": walk, "send_tick_walk_us_median": med_walk,
        "walk_ratio": round(med_walk["walk-all"] / med_walk["with-sources"], 2),
        "snapshot_ms": snap, "snapshot_ms_median": med_snap,
        "snapshot_ratio": round(med_snap["two-walks"] / med_snap["one-pass"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtool_parts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="alternations of old and new")
    parser.add_argument("--ticks", type=int, default=200, help="send ticks per block")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    out = measure(args.calls, args.rounds, args.ticks)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
