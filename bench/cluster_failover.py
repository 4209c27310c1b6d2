"""Cluster benchmark: failover as users hear it, and joins through a relaying node vs on the owner (ADR 0017).

    python -m bench.cluster_failover [--store postgresql://USER@HOST:PORT/DB] [--runs 20] [--lease 2]
        [--rounds 4 --per-batch 40] [--output bench/results/cluster_failover.json] [--plot docs/cluster/failover.png]

Starts three `callsd serve` nodes in cluster mode with their media planes, all on loopback, on the given (empty)
database, or on a throwaway PostgreSQL from Debian's binaries (tests/pg_support.py) when none is given. Then:

1. joins (bench/cluster_joins.py): join latency and CPU per join, on the owner vs through a relaying node;
2. ``--runs`` failovers (bench/cluster_media.py): three talking users of one call on the three nodes, `kill -9` of
   the call's owner, the time until each user receives audio again on its new media leg. The killed node is
   started again before the next run; the roles rotate over the nodes.

Prints one line per batch and per run while it runs (stderr), then the distribution (n, min, median, p90, p95,
max); writes every per-run figure and the machine's conditions (load average, CPUs) to ``--output`` and plots
them to ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trio

from .cluster_joins import MODES, JoinFigures, measure_joins
from .cluster_media import FailoverRun, failover_run
from .cluster_nodes import cluster, database


def summary(values: list[float], digits: int = 3) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], digits)

    return {"n": len(ordered), "min": round(ordered[0], digits), "median": round(statistics.median(ordered), digits),
            "p90": at(0.9), "p95": at(0.95), "max": round(ordered[-1], digits)}


def _progress(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def _conditions() -> dict[str, Any]:
    return {"at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def failover_doc(runs: list[FailoverRun]) -> dict[str, Any]:
    survivors = [s for r in runs for s in r.first_audio_s[1:]]
    return {
        "first_audio_s_users_on_surviving_nodes": summary(survivors),
        "first_audio_s_user_of_the_killed_node": summary([r.first_audio_s[0] for r in runs]),
        "everyone_hears_everyone_s": summary([r.everyone_s for r in runs]),
        "runs": [asdict(r) | {"everyone_s": round(r.everyone_s, 3)} for r in runs],
    }


def joins_doc(figures: JoinFigures) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for mode in MODES:
        cpu = figures.cpu_ms[mode]
        doc[mode] = {"latency_ms": summary(figures.latency_ms[mode], 2),
                     "cpu_ms_per_join_owner": summary([c[0] for c in cpu], 2),
                     "cpu_ms_per_join_relay": summary([c[1] for c in cpu], 2),
                     "cpu_ms_per_join_all_nodes": summary([c[2] for c in cpu], 2)}
    doc["latency_ms_samples"] = {m: [round(x, 2) for x in figures.latency_ms[m]] for m in MODES}
    doc["cpu_ms_batches"] = {m: [[round(x, 3) for x in c] for c in figures.cpu_ms[m]] for m in MODES}
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="postgresql://USER@HOST:PORT/DB (an empty database); default: a throwaway one")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=4, help="join batches per mode")
    parser.add_argument("--per-batch", type=int, default=40, help="joins per batch")
    parser.add_argument("--output", type=Path, help="write the results JSON here")
    parser.add_argument("--plot", type=Path, help="plot the results to this PNG")
    args = parser.parse_args()
    doc: dict[str, Any] = {"lease_seconds": args.lease, "conditions_before": _conditions()}
    runs: list[FailoverRun] = []
    with database(args.store) as store, tempfile.TemporaryDirectory() as tmp, \
            cluster(store, args.lease, Path(tmp), media=True) as nodes:
        _progress(f"3 nodes up on {store.rsplit('@', 1)[-1]}; joins: {args.rounds} rounds x {args.per_batch}")
        figures = trio.run(lambda: measure_joins(nodes, rounds=args.rounds, per_batch=args.per_batch,
                                                 progress=_progress))
        doc["joins"] = joins_doc(figures)
        for index in range(args.runs):
            order = [nodes[(index + k) % 3] for k in range(3)]
            run = trio.run(failover_run, order, index, args.lease)
            runs.append(run)
            _progress(f"failover run {index + 1}/{args.runs} (owner {run.owner}, killed {run.kill_phase_s:.2f} s "
                      f"into the lease): first audio again {', '.join(f'{s:.2f}' for s in run.first_audio_s)} s "
                      f"(user 0 was on the killed node); everyone hears everyone at {run.everyone_s:.2f} s")
            order[0].start()
    doc["failover"] = failover_doc(runs)
    doc["conditions_after"] = _conditions()
    text = json.dumps(doc, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    if args.plot:
        from .cluster_plot import plot

        plot(doc, args.plot)
    short = {k: v for k, v in doc["failover"].items() if k != "runs"}
    print(json.dumps({"lease_seconds": args.lease, "failover": short,
                      "joins": {m: doc["joins"][m] for m in MODES}, "conditions": [doc["conditions_before"],
                                                                                  doc["conditions_after"]]},
                     indent=2))


if __name__ == "__main__":
    main()
