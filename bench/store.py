"""Event-log benchmark: signaling inputs through the real hub and SqliteStore, synchronous appends versus group
commit (docs/adr/0006), and what the media loop sees meanwhile.

    python -m bench.store [--inputs 4000] [--connections 64] [--call-size 8] [--rate 0] [--mode both|sync|group]
                          [--dir DIR] [--json]

K in-memory client sockets join calls of ``--call-size`` through a ``SignalingHub`` over a ``CallRecorder`` on a
real ``SqliteStore`` (WAL, synchronous=FULL) in ``--dir`` (default: a temporary directory on the same disk as
/tmp). Then each socket sends ``raise_hand``/``lower_hand`` alternately, all at once, ``--inputs`` in total; the
run ends when every input is durable and fanned out. ``--rate R`` paces the sockets to R inputs/s in total instead
(a join storm at a given rate rather than a flood). Printed per mode: inputs/s, commits (transactions) and
commits/s, inputs per commit, the time the event-loop thread spent inside the store (total, and the longest
single append), and the lateness of a Trio task that sleeps 1 ms in a loop, as the media plane's
forwarding loop would: the longest stall and the 99th percentile. ``sync`` appends each input on the event loop
(``group_commit=False``, the path before group commit); ``group`` queues records and commits every batch in a worker
thread, sending outputs once durable. The figures depend on the disk's fsync latency and on what else runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trio
from callsd.adapters.signaling import HubSettings, NullMediaPlane, SignalingHub
from callsd.adapters.store import CallRecorder, SqliteStore, open_store


class _Socket:
    """A client socket: frames pushed by the bench, events counted."""

    def __init__(self) -> None:
        self.inbox_send, self.inbox = trio.open_memory_channel[Any](64)
        self.received = 0
        self.joined = trio.Event()

    async def receive(self) -> str | bytes | None:
        return await self.inbox.receive()

    async def send(self, text: str) -> None:
        self.received += 1
        if not self.joined.is_set() and '"join_ack"' in text:
            self.joined.set()

    async def close(self, code: int, reason: str) -> None:
        pass

    async def push(self, kind: str, data: dict[str, Any] | None = None) -> None:
        await self.inbox_send.send(json.dumps({"type": kind, "data": data or {}}))


async def _ticker(lateness: list[float], stop: trio.Event) -> None:
    """Sleep 1 ms in a loop and record how late each wake-up is (the media loop's view of a stall)."""
    while not stop.is_set():
        t0 = time.perf_counter()
        await trio.sleep(0.001)
        lateness.append(time.perf_counter() - t0 - 0.001)


async def run_mode(mode: str, inputs: int, connections: int, call_size: int, directory: Path,
                   rate: float = 0.0, store_url: str = "") -> dict[str, Any]:
    path = directory / f"bench-{mode}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    # --store postgresql://...: a fresh stream per run in that database (docs/adr/0016)
    store: Any = (open_store(f"{store_url}{'&' if '?' in store_url else '?'}stream=bench-{mode}-{time.time_ns()}")
                  if store_url else SqliteStore(path))
    loop_thread = threading.get_ident()
    in_loop: list[float] = []  # seconds each append kept the event-loop thread busy
    real_append = store.append

    def timed_append(records: Any) -> None:
        t0 = time.perf_counter()
        real_append(records)
        if threading.get_ident() == loop_thread:
            in_loop.append(time.perf_counter() - t0)

    store.append = timed_append  # type: ignore[method-assign]
    recorder = CallRecorder(store, group_commit=mode == "group")
    hub = SignalingHub(recorder, recorder.machine, plane=NullMediaPlane(),
                       settings=HubSettings(rate=1e9, burst=10**9))
    sockets = [_Socket() for _ in range(connections)]
    per_socket = max(1, inputs // connections)
    lateness: list[float] = []
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            for s in sockets:
                nursery.start_soon(hub.serve_connection, s)
            for i, s in enumerate(sockets):
                await s.push("join", {"channel_id": f"call-{i // call_size}"})
            with trio.fail_after(120):
                for s in sockets:
                    await s.joined.wait()
                await hub.flush()

            async def act(s: _Socket, offset: float) -> None:
                interval = connections / rate if rate > 0 else 0.0
                if interval:
                    await trio.sleep(offset * interval)
                due = trio.current_time()
                for i in range(per_socket):
                    await s.push("raise_hand" if i % 2 == 0 else "lower_hand")
                    if interval:
                        due += interval
                        await trio.sleep_until(due)

            stop = trio.Event()
            nursery.start_soon(_ticker, lateness, stop)
            await trio.sleep(0.05)
            seq0, commits0 = recorder.seq, recorder.commits
            target = seq0 + per_socket * connections
            lateness.clear()
            in_loop.clear()
            started = time.perf_counter()
            with trio.fail_after(300):
                async with trio.open_nursery() as senders:
                    for k, s in enumerate(sockets):
                        senders.start_soon(act, s, k / connections)
                while recorder.seq < target:
                    await trio.sleep(0.001)
                await hub.flush()
            elapsed = time.perf_counter() - started
            stop.set()
            done = recorder.seq - seq0
            commits = recorder.commits - commits0
            nursery.cancel_scope.cancel()
    finally:
        store.close()
    lat_ms = sorted(x * 1000 for x in lateness) or [0.0]
    return {
        "mode": mode, "inputs": done, "seconds": round(elapsed, 3), "inputs_per_s": round(done / elapsed),
        "commits": commits, "commits_per_s": round(commits / elapsed), "inputs_per_commit": round(done / commits, 1),
        "stall_max_ms": round(lat_ms[-1], 2), "stall_p99_ms": round(lat_ms[int(0.99 * (len(lat_ms) - 1))], 2),
        "stall_p50_ms": round(statistics.median(lat_ms), 3), "ticks": len(lateness),
        "stall_p999_ms": round(lat_ms[int(0.999 * (len(lat_ms) - 1))], 2),
        "loop_in_store_ms": round(sum(in_loop) * 1000, 1), "loop_in_store_max_ms": round(max(in_loop, default=0) * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=4000, help="signaling inputs in the measured burst")
    parser.add_argument("--connections", type=int, default=64, help="client sockets sending at once")
    parser.add_argument("--call-size", type=int, default=8, help="sockets per call (each input fans out to them)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offered inputs/s over all sockets (0: every socket sends as fast as it can)")
    parser.add_argument("--mode", choices=("both", "sync", "group"), default="both")
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite logs go (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--store", default="", metavar="URL",
                        help="a postgresql:// store to measure instead of SQLite (one new stream per run)")
    args = parser.parse_args(argv)
    if args.inputs < 1 or args.connections < 1 or args.call_size < 1:
        parser.error("--inputs, --connections and --call-size must be positive")
    modes = ["sync", "group"] if args.mode == "both" else [args.mode]
    results = []
    with tempfile.TemporaryDirectory(prefix="callsd-bench-store-", dir=args.dir) as tmp:
        for mode in modes:
            results.append(trio.run(run_mode, mode, args.inputs, args.connections, args.call_size, Path(tmp),
                                    args.rate, args.store))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    offered = f"offered at {args.rate:g}/s" if args.rate > 0 else "sent at once"
    print(f"{args.connections} sockets in calls of {args.call_size}, {args.inputs} inputs {offered}, "
          "PostgreSQL synchronous_commit=on" if args.store else "SQLite WAL synchronous=FULL")
    header = ("mode", "inputs/s", "commits", "commits/s", "inputs/commit", "loop in store ms (max)",
              "1ms-tick stall max ms", "p99.9", "p99", "p50")
    print(" | ".join(header))
    for r in results:
        print(" | ".join(str(x) for x in (r["mode"], r["inputs_per_s"], r["commits"], r["commits_per_s"],
                                          r["inputs_per_commit"],
                                          f'{r["loop_in_store_ms"]} ({r["loop_in_store_max_ms"]})',
                                          r["stall_max_ms"], r["stall_p999_ms"], r["stall_p99_ms"],
                                          r["stall_p50_ms"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
