"""What the loop-hold instrument (adapters/loop_holds.py) costs per Trio task step, A/B in one process.

    .venv/bin/python -m bench.loop_hold_cost [--steps 200000] [--rounds 5]

Runs the same workload (100 tasks, each checkpointing in a loop: the cheapest step Trio has, so the instrument's
share is as large as it can be) with and without the instrument, alternated, and prints µs per step for each and
their difference: the instrument's cost per step. CPU time of this thread (``time.thread_time``)."""

from __future__ import annotations

import argparse
import json
import sys
import time

import trio
from callsd.adapters.loop_holds import install_loop_holds

TASKS = 100


async def _workload(steps: int, instrumented: bool) -> float:
    uninstall = None
    if instrumented:
        _, uninstall = install_loop_holds()
    each = steps // TASKS

    async def ticker() -> None:
        for _ in range(each):
            await trio.lowlevel.checkpoint()

    started = time.thread_time()
    try:
        async with trio.open_nursery() as nursery:
            for _ in range(TASKS):
                nursery.start_soon(ticker)
    finally:
        if uninstall is not None:
            uninstall()
    return (time.thread_time() - started) / (each * TASKS) * 1e6


def measure(steps: int, rounds: int) -> dict[str, float]:
    best = {"plain": float("inf"), "instrumented": float("inf")}
    for _ in range(rounds):
        for way in ("plain", "instrumented"):
            best[way] = min(best[way], trio.run(_workload, steps, way == "instrumented"))
    return {"us_per_step_plain": round(best["plain"], 3), "us_per_step_instrumented": round(best["instrumented"], 3),
            "us_per_step_added": round(best["instrumented"] - best["plain"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loop_hold_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.steps, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
