"""`callsd serve` with two probes a bench can read: the cyclic GC's time per wall-clock second, and cProfile on demand.

    python -m bench.serve_probe --out /tmp/probe.json -- serve [serve arguments]

The GC probe is a ``gc.callbacks`` entry: it times every collection (the thread's CPU time, so preemption by other
work does not count) and adds the time to the bucket of the wall-clock second it ended in, per generation, so a bench can take the GC's share of the server's CPU over exactly its steady
window (the server's start-up and the users' joins left out). SIGUSR1 starts cProfile, SIGUSR2 stops it and writes
``<out>.prof`` (pstats), so a bench can profile the steady window only. SIGHUP runs a full collection and records
what it freed (bench/gc_leak.py). The probes cost a few µs per collection and nothing per packet; the JSON is
written when the server exits.

Used by bench/server_ab.py. A bench probe, not a production feature: the server itself tunes the GC (app/gc_tuning.py).
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import gc
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any


class GcProbe:
    """Seconds spent in collections, and collection counts, per generation and wall-clock second."""

    def __init__(self) -> None:
        self.started = 0.0
        self.buckets: dict[int, list[float]] = {}  # wall second -> [s gen0, s gen1, s gen2, n gen0, n gen1, n gen2]
        self.collected: dict[int, int] = {}  # wall second -> objects the collector freed (garbage in cycles)
        self.on_demand: list[list[int]] = []  # per SIGHUP: [objects a full collection freed, objects tracked after]
        self.garbage_types: list[dict[str, int]] = []  # per SIGHUP: what it freed, by type (the 40 commonest)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.thread_time()  # CPU time: a collection preempted by other work on a shared machine is not inflated
        if phase == "start":
            self.started = now
            return
        generation = int(info["generation"])
        bucket = self.buckets.setdefault(int(time.time()), [0.0] * 6)
        bucket[generation] += now - self.started
        bucket[3 + generation] += 1
        second = int(time.time())
        self.collected[second] = self.collected.get(second, 0) + int(info.get("collected", 0))

    def as_json(self) -> dict[str, Any]:
        return {"gc_buckets": {str(k): [round(v, 6) for v in b] for k, b in sorted(self.buckets.items())},
                "gc_threshold": gc.get_threshold(), "gc_frozen": gc.get_freeze_count(),
                "gc_collected": {str(k): v for k, v in sorted(self.collected.items())},
                "gc_on_demand": self.on_demand, "gc_garbage_types": self.garbage_types}

    def collect_now(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: a full collection now; what it freed is the cyclic garbage that was waiting for the collector.
        The types of what it freed are counted too (``gc.DEBUG_SAVEALL`` for that one collection): the cycles a
        session leaves behind, by the type of their objects."""
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            freed = gc.collect()
            types: dict[str, int] = {}
            for obj in gc.garbage:
                name = f"{type(obj).__module__}.{type(obj).__qualname__}"
                types[name] = types.get(name, 0) + 1
            gc.garbage.clear()
        finally:
            gc.set_debug(0)
        gc.collect()  # free what DEBUG_SAVEALL kept: its cycles are still cycles, or the next call would count them again
        self.on_demand.append([freed, len(gc.get_objects())])
        self.garbage_types.append(dict(sorted(types.items(), key=lambda item: -item[1])[:40]))


class ProfileSwitch:
    """SIGUSR1: start cProfile; SIGUSR2: stop and dump to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.profile: cProfile.Profile | None = None

    def start(self, signum: int, frame: FrameType | None) -> None:
        if self.profile is None:
            self.profile = cProfile.Profile(time.thread_time)  # CPU time, as the GC probe
            self.profile.enable()

    def stop(self, signum: int, frame: FrameType | None) -> None:
        if self.profile is not None:
            self.profile.disable()
            self.profile.dump_stats(str(self.path))
            self.profile = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file written at exit (and <out>.prof when profiled)")
    parser.add_argument("cli", nargs=argparse.REMAINDER, help="-- then the callsd command line (serve ...)")
    args = parser.parse_args(argv)
    cli = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    out = Path(args.out)
    probe = GcProbe()
    gc.callbacks.append(probe)
    switch = ProfileSwitch(out.with_suffix(".prof"))
    signal.signal(signal.SIGUSR1, switch.start)
    signal.signal(signal.SIGUSR2, switch.stop)
    signal.signal(signal.SIGHUP, probe.collect_now)
    atexit.register(lambda: out.write_text(json.dumps(probe.as_json())))
    from callsd.app.cli import main as callsd_main

    return callsd_main(cli)


if __name__ == "__main__":
    sys.exit(main())
