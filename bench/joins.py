"""Join cost A/B: offer/answer rounds and server CPU per join, with and without pre-negotiated audio slots.

    .venv/bin/python -m bench.joins [--rounds 2 --calls 10 --users 8 --unmuted 2 --slots 8]   (~1 min per run)

Each run is `bench.memory server` (a fresh `callsd serve` pinned to CPU 0, `callsd loadtest` joining calls × users
at calls × users ÷ join-duration joins/s, held, then left); the modes alternate run by run in one session so that
the shared machine's load hits both alike (docs/performance.md: prefer ratios within one run, and CPU time to wall
time). Figures per run: ``sdp_rounds_per_join`` (client ``sdp`` messages ÷ joins: every round has exactly one),
``join_cpu_ms_per_user`` (the load tool's: server CPU between 1 s samples during the join window ÷ joins),
``cpu_ms_to_held_per_join`` (the server's whole CPU time from before the first join until every user is held ÷
joins: joins, the media of the talkers, timers), RSS per session and p95 join → first audio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Any

from bench.memory import run_server

__all__ = ["main"]

_FIGURES = ("sdp_rounds_per_join", "join_cpu_ms_per_user", "cpu_ms_to_held_per_join", "rss_kib_per_session",
            "p95_join_to_first_audio_ms")


def _median(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, int | float)]
    return statistics.median(numbers) if numbers else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.joins", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="runs per mode, alternated")
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--unmuted", type=int, default=2)
    p.add_argument("--join-duration", type=float, default=5.0)
    p.add_argument("--hold", type=float, default=8.0)
    p.add_argument("--slots", type=int, default=8, help="audio slots the B runs ask for")
    p.add_argument("--output", default="", help="write every run's figures to this JSON file")
    a = p.parse_args(argv)
    modes = {"per-track sections": (), f"{a.slots} audio slots": ("--audio-slots", str(a.slots))}
    runs: list[dict[str, Any]] = []
    for n in range(a.rounds):
        for mode, extra in modes.items():
            r = run_server(a.calls, a.users, a.unmuted, a.join_duration, a.hold, extra)
            r.update(mode=mode, round=n, loadavg_after=list(os.getloadavg()))
            runs.append(r)
            print(json.dumps({k: r.get(k) for k in ("mode", "round", "joined", "failed", *_FIGURES,
                                                    "loadavg_after")}), flush=True)
    summary = {mode: {f: _median([r.get(f) for r in runs if r["mode"] == mode]) for f in _FIGURES}
               for mode in modes}
    print(json.dumps({"median": summary}, indent=1))
    if a.output:
        with open(a.output, "w") as f:
            json.dump({"runs": runs, "median": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
