"""What the loop-hold instrument (adapters/loop_holds.py) costs per Trio task step, A/B in one process.

    .venv/bin/python -m bench.loop_hold_cost [--steps 200000] [--rounds 5] [--tasks 100] [--base-tree DIR]

Runs the same workload (100 tasks, each checkpointing in a loop: the cheapest step Trio has, so the instrument's
share is as large as it can be) with and without the instrument, alternated, and prints µs per step for each and
their difference: the instrument's cost per step. CPU time of this thread (``time.thread_time``). ``--tasks 2`` makes each pass two steps,
as a server's passes are during joins (~2.3 steps per pass, ``bench.joins --counts``), so the per-pass hooks weigh
as they do there. ``--base-tree DIR``: that checkout's instrument against this one's, alternated in child
processes (``bench.joins.alternate_trees``)."""

from __future__ import annotations

import argparse
import json
import sys
import time

import trio
from callsd.adapters.loop_holds import install_loop_holds


async def _workload(steps: int, instrumented: bool, tasks: int = 100) -> float:
    uninstall = None
    if instrumented:
        _, uninstall = install_loop_holds()
    each = steps // tasks

    async def ticker() -> None:
        for _ in range(each):
            await trio.lowlevel.checkpoint()

    started = time.thread_time()
    try:
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(ticker)
    finally:
        if uninstall is not None:
            uninstall()
    return (time.thread_time() - started) / (each * tasks) * 1e6


def measure(steps: int, rounds: int, tasks: int = 100) -> dict[str, float]:
    best = {"plain": float("inf"), "instrumented": float("inf")}
    for _ in range(rounds):
        for way in ("plain", "instrumented"):
            best[way] = min(best[way], trio.run(_workload, steps, way == "instrumented", tasks))
    return {"us_per_step_plain": round(best["plain"], 3), "us_per_step_instrumented": round(best["instrumented"], 3),
            "us_per_step_added": round(best["instrumented"] - best["plain"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loop_hold_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=100, help="tasks stepping together: steps per pass")
    parser.add_argument("--base-tree", default="", metavar="DIR", help="another checkout's instrument, alternated")
    parser.add_argument("--ab-rounds", type=int, default=3, help="with --base-tree: child runs per tree")
    args = parser.parse_args(argv)
    if not args.base_tree:
        print(json.dumps(measure(args.steps, args.rounds, args.tasks)))
        return 0
    from bench.joins import alternate_trees

    child = ["-m", "bench.loop_hold_cost", "--steps", str(args.steps), "--rounds", str(args.rounds),
             "--tasks", str(args.tasks)]
    runs = list(alternate_trees(args.base_tree, args.ab_rounds, child))
    for run in runs:
        print(json.dumps(run), flush=True)
    added = {tree: sorted(r["us_per_step_added"] for r in runs if r["tree"] == tree) for tree in ("base tree",
                                                                                                  "this tree")}
    print(json.dumps({"us_per_step_added": added}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
