"""What a joined load-tool user costs while nothing happens on its signaling: the wait for the next message.

    .venv/bin/python -m bench.loadtool_idle                 # 1,600 users (200 calls x 8), 5 s, 3 rounds
    .venv/bin/python -m bench.loadtool_idle --users 800 --seconds 3 --rounds 2 --json out.json

Why: at the 200-call capacity shape the load tool ran at 92-97 % of its core while its media engine alone needs
~26 % (bench/loadtool_cost.py); py-spy put a quarter of the rest in Trio's deadline expiry. Each simulated user
waited for its next WebSocket message with a one-second timeout (``_receive(1.0)``), so 1,600 users made 1,600
``Cancelled`` raised and caught per second. This bench runs ``--users`` Trio tasks that wait on a memory channel
(one message per user per ``--message-interval`` s, as the server's rare steady-state messages) the two ways, in
one process, alternated: ``deadline`` (the old loop) and ``scope`` (app/loadtest/worker.py ``SimUser._stay``: a
cancel scope with no deadline, cancelled only when the run stops or the leg fails). It prints the process's CPU
% of a core for each, the median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import trio

WAYS = ("deadline", "scope")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _user(way: str, inbox: trio.MemoryReceiveChannel[bytes], stop: trio.Event, handled: list[int]) -> None:
    while not stop.is_set():
        message: bytes | None = None
        if way == "deadline":
            with trio.move_on_after(1.0):
                message = await inbox.receive()
        else:
            with trio.CancelScope():
                message = await inbox.receive()
        if message is not None:
            handled[0] += 1


async def measure(way: str, users: int, seconds: float, message_interval: float) -> dict[str, Any]:
    """One run: ``users`` waiting tasks for ``seconds`` after a one-second warm-up; CPU % of a core."""
    stop = trio.Event()
    handled = [0]
    outboxes = []
    async with trio.open_nursery() as nursery:
        for _ in range(users):
            outbox, inbox = trio.open_memory_channel[bytes](64)
            outboxes.append(outbox)
            nursery.start_soon(_user, way, inbox, stop, handled)
        await trio.sleep(1.0)
        cpu0, t0 = _cpu(), time.monotonic()
        step = message_interval / users
        end = t0 + seconds
        n = 0
        while time.monotonic() < end:  # one message to one user every `step` s: each gets one per interval
            outboxes[n % users].send_nowait(b"{}")
            n += 1
            await trio.sleep(step)
        cpu1, t1 = _cpu(), time.monotonic()
        stop.set()
        nursery.cancel_scope.cancel()
    return {"way": way, "users": users, "seconds": round(t1 - t0, 2), "messages": handled[0],
            "cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 2)}


async def compare(users: int, seconds: float, rounds: int, message_interval: float) -> dict[str, Any]:
    import os

    runs: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    load = [os.getloadavg()[0]]
    for r in range(rounds):
        for way in WAYS:
            row = await measure(way, users, seconds, message_interval)
            runs[way].append(row)
            print(f"round {r + 1}/{rounds} {way:8s} {row['cpu_percent']:6.2f} % of a core "
                  f"({row['messages']} messages)", file=sys.stderr, flush=True)
        load.append(os.getloadavg()[0])
    median = {way: sorted(x["cpu_percent"] for x in rows)[len(rows) // 2] for way, rows in runs.items()}
    return {"utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "loadavg": load, "users": users,
            "message_interval_s": message_interval, "median_cpu_percent": median, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtool_idle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1600, help="waiting users (200 calls x 8: 1,600)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per run")
    parser.add_argument("--rounds", type=int, default=3, help="the two ways alternated this many times")
    parser.add_argument("--message-interval", type=float, default=10.0,
                        help="seconds between two messages to one user (the server's steady-state traffic)")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    result = trio.run(compare, args.users, args.seconds, args.rounds, args.message_interval)
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
