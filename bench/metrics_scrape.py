"""The ``/metrics`` scrape's CPU against the number of sessions, in one process: what the load tool's 1 Hz scrape
costs the server, and where it goes.

    .venv/bin/python -m bench.metrics_scrape [--sessions 10,80,160,1600] [--scrapes 200] [--rounds 3]
    .venv/bin/python -m bench.metrics_scrape --base-tree DIR [--ab-rounds 3]   # another checkout's, alternated

Why: a py-spy profile of a join wave put 1.3-6.2 % of the server's CPU in ``render_metrics`` (docs/performance.md,
"Issue 13, session 10"). The server's registry is built as ``app/server.py`` builds it (the process collector, the
calls collector over a real ``MediaPlane`` of ``--sessions`` keyed peers and a hub whose machine has them in calls
of 8, the Trio task count, the loop-hold collector over a monitor that has seen a few hundred passes, the HTTP
guard's); each peer has a loopback socket of its own, so the process holds about one descriptor per session, as a
server holds one WebSocket per session. Each scrape is ``render_metrics(registry)``, the handler's work, timed
with the thread's CPU clock; the best of ``--rounds`` medians is reported per size. ``parts`` splits one size's
scrape into each collector's ``collect()`` and the text exposition of what they yielded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import trio

__all__ = ["main"]

# (direction, type) of the WebSocket messages a server has counted after a few joins (the hub's ws_events keys)
_WS_EVENTS = [("in", t) for t in ("join", "leave", "sdp", "ice", "mute", "unmute", "raise_hand", "ping", "batch",
                                  "reconnect")] + \
             [("out", t) for t in ("join_ack", "participant_joined", "participant_left", "sdp_offer", "sdp_answer",
                                   "ice", "muted", "unmuted", "voice", "call_started", "call_ended", "pong",
                                   "hand_raised", "hand_lowered", "host_changed", "error", "turn_credentials",
                                   "tracks", "state", "screen")]


def _registry(sessions: int) -> tuple[Any, Any, Any]:
    """The server's registry over ``sessions`` sessions; (registry, rig, the loop-hold uninstaller)."""
    from callsd.adapters.loop_holds import LoopHoldCollector, install_loop_holds
    from callsd.adapters.media.dtls import Certificate
    from callsd.adapters.metrics import build_registry
    from callsd.adapters.signaling import HubSettings, SignalingHub
    from callsd.app.http_guard import GuardCollector, GuardCounters
    from callsd.core.calls import events as ev

    from .hub_joins import _Recorder
    from .step_plane import open_step_plane

    rig = open_step_plane("native", sessions - 1, Certificate.generate("bench-metrics"), rcvbuf=1 << 16)
    recorder = _Recorder()
    for i in range(sessions):
        recorder.handle(ev.JoinCall(at=1000 + i, session_id=f"s{i}", channel_id=f"c{i // 8}", user_id=f"u{i}",
                                    call_id=f"call{i // 8}" if i % 8 == 0 else None))
    hub = SignalingHub(recorder, recorder.machine, plane=rig.plane, settings=HubSettings(rate=1e9, burst=10**9))
    counters = hub.counters
    counters.ws_connections_total = counters.ws_connections_open = sessions
    for n, key in enumerate(_WS_EVENTS):
        counters.ws_events[key] = sessions * (n + 1)
    counters.store_ops.update({"open": 1, "append": sessions * 3, "commit": sessions * 2})
    counters.rtc_sessions_total = sessions
    registry = build_registry(hub, rig.plane, "bench")
    holds, uninstall = install_loop_holds()
    registry.register(LoopHoldCollector(holds))
    guard = GuardCounters()
    guard.open = sessions
    guard.connection_errors["ConnectionResetError"] = 3
    registry.register(GuardCollector(guard))
    return registry, rig, uninstall


async def _warm_loop() -> None:
    """A few hundred passes of tasks named as the server's are, some of them holding the loop past the floor (so
    that the loop-hold collector exports a histogram per cause, as a loaded server's does), and collections."""
    import gc

    async def step_and_hold(passes: int, hold: float) -> None:
        for _ in range(passes):
            await trio.sleep(0)
        time.sleep(hold)  # a step that holds the loop, alone in its pass

    names = ("callsd.adapters.media.transport.UdpEndpoint._receive_loop", "callsd.adapters.media.plane._report_ticks",
             "callsd.adapters.media.transport.UdpEndpoint._housekeeping", "callsd.adapters.signaling.SignalingHub._writer",
             "hypercorn.trio.task_group._handle", "callsd.adapters.store.recorder.CallRecorder.commit_loop")
    async with trio.open_nursery() as nursery:
        for n, name in enumerate(names):
            nursery.start_soon(step_and_hold, 20 + 10 * n, 0.003 * (1 + n % 3), name=name)
    gc.collect(0)
    gc.collect(1)


def _scrape_cost(sessions: int, scrapes: int, rounds: int) -> dict[str, Any]:
    from callsd.adapters.metrics import render_metrics

    out: dict[str, Any] = {}

    async def run() -> None:
        registry, rig, uninstall = _registry(sessions)
        try:
            await _warm_loop()
            body, _ = render_metrics(registry)
            medians = []
            for _ in range(rounds):
                times = []
                for _ in range(scrapes):
                    start = time.thread_time()
                    render_metrics(registry)
                    times.append(time.thread_time() - start)
                medians.append(statistics.median(times))
            out.update(us_per_scrape=round(min(medians) * 1e6, 1), bytes=len(body),
                       samples=sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#")),
                       fds=len(os.listdir("/proc/self/fd")), parts=_parts(registry, scrapes))
        finally:
            uninstall()
            rig.close()

    trio.run(run)
    return out


def _parts(registry: Any, scrapes: int) -> dict[str, float]:
    """µs per scrape in each collector's ``collect()``, and in the text exposition of what they yielded."""
    from callsd.adapters.metrics import render_metrics
    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

    parts: dict[str, float] = {}
    families = []
    for collector in list(registry._collector_to_names) or list(registry._names_to_collectors.values()):  # noqa: SLF001
        start = time.thread_time()
        for _ in range(scrapes):
            got = list(collector.collect())
        parts[type(collector).__name__] = round((time.thread_time() - start) / scrapes * 1e6, 1)
        families.extend(got)

    class Prebuilt(Collector):
        def collect(self) -> Any:
            return iter(families)

    only = CollectorRegistry(auto_describe=False)
    only.register(Prebuilt())
    start = time.thread_time()
    for _ in range(scrapes):
        render_metrics(only)
    parts["exposition"] = round((time.thread_time() - start) / scrapes * 1e6, 1)
    return parts


def measure(sizes: list[int], scrapes: int, rounds: int) -> dict[str, Any]:
    return {str(n): _scrape_cost(n, scrapes, rounds) for n in sizes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.metrics_scrape", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", default="10,80,160,1600")
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base-tree", default="", metavar="DIR", help="another checkout's scrape, alternated")
    ap.add_argument("--ab-rounds", type=int, default=3, help="with --base-tree: child runs per tree")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sessions.split(",")]
    if not args.base_tree:
        print(json.dumps({"load": os.getloadavg()[0], "sizes": measure(sizes, args.scrapes, args.rounds)}))
        return 0
    from bench.joins import alternate_trees

    child = ["-m", "bench.metrics_scrape", "--sessions", args.sessions, "--scrapes", str(args.scrapes),
             "--rounds", str(args.rounds)]
    runs = list(alternate_trees(args.base_tree, args.ab_rounds, child))
    for run in runs:
        print(json.dumps(run), flush=True)
    summary = {tree: {n: sorted(r["sizes"][n]["us_per_scrape"] for r in runs if r["tree"] == tree)
                      for n in map(str, sizes)} for tree in ("base tree", "this tree")}
    print(json.dumps({"us_per_scrape": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
