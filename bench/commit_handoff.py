"""CPU of one event-log commit hand-off, without the commit: ``trio.to_thread.run_sync`` against the recorder's
``CommitThread`` (adapters/store/commit_thread.py), alternated in one process.

    taskset -c 0 .venv/bin/python -m bench.commit_handoff [--calls 3000 --rounds 3]

The job does nothing, so what is timed (``process_time``: the Trio thread and the worker) is the hand-off alone:
waking a worker, parking the task, reporting back. Pin to one CPU as the server is (bench.capacity pins it).
"""

from __future__ import annotations

import argparse
import json
import time

import trio
from callsd.adapters.store.commit_thread import CommitThread

__all__ = ["main"]


def _nothing() -> None:
    pass


async def _rounds(calls: int, rounds: int) -> list[dict[str, float]]:
    committer = CommitThread()
    results = []
    for n in range(rounds):
        t0 = time.process_time()
        for _ in range(calls):
            await trio.to_thread.run_sync(_nothing)
        to_thread = (time.process_time() - t0) * 1e6 / calls
        t0 = time.process_time()
        for _ in range(calls):
            await committer.run_sync(_nothing)
        dedicated = (time.process_time() - t0) * 1e6 / calls
        results.append({"round": n, "to_thread_us": round(to_thread, 1), "commit_thread_us": round(dedicated, 1),
                        "ratio": round(dedicated / to_thread, 2)})
    committer.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.commit_handoff", description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    for result in trio.run(_rounds, a.calls, a.rounds):
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
