"""The signaling hub alone, per join: CPU of `SignalingHub` (handlers, broadcasts, outboxes, writers, batch frames'
linger) with no sockets, no media plane and no disk, in one process; another checkout's hub against this one's.

    .venv/bin/python -m bench.hub_joins [--calls 20 --users 8 --rounds 3] [--base-tree DIR]

Why: the end-to-end join bench (bench.joins) resolves a change of a few percent only roughly on this shared host; the
hub's share of a join (docs/performance.md, "Join cost attributed") is measured here with ``process_time`` around
the joins, the linger that follows them and the leaves, each tree in its own process, alternated. Every user
asks for batch frames (protocol 1.3), so every join makes the members of its call linger.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
from typing import Any

import trio

__all__ = ["main"]


class _Socket:
    """A client socket in memory: what it is sent is counted, what it sends is pushed."""

    def __init__(self) -> None:
        self.inbox_send, self.inbox = trio.open_memory_channel[str | None](64)
        self.frames = 0

    async def receive(self) -> str | bytes | None:
        return await self.inbox.receive()

    async def send(self, text: str) -> None:
        self.frames += 1

    async def close(self, code: int, reason: str) -> None:
        pass


class _Recorder:
    """A synchronous recorder without a store (durable at once): the hub's own CPU, not the log's."""

    group_commit = False

    def __init__(self) -> None:
        from callsd.core.calls.machine import CallsMachine
        self.machine = CallsMachine()
        self.seq = 0

    @property
    def durable_seq(self) -> int:
        return self.seq

    def handle(self, event: Any) -> list[Any]:
        self.seq += 1
        return self.machine.handle(event)

    async def wait_durable(self, seq: int) -> None:
        pass

    async def commit_loop(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()


async def _run(calls: int, users: int) -> dict[str, Any]:
    from callsd.adapters.signaling import HubSettings, NullMediaPlane, SignalingHub

    recorder = _Recorder()
    hub = SignalingHub(recorder, recorder.machine, plane=NullMediaPlane(),
                       settings=HubSettings(rate=1e9, burst=10**9))
    sockets: list[_Socket] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        cpu0 = time.process_time()
        for user in range(users):  # a wave: one user joins every call, then the next user of each
            for call in range(calls):
                socket = _Socket()
                sockets.append(socket)
                nursery.start_soon(partial(hub.serve_connection, socket, batch_allowed=True))
                await socket.inbox_send.send(json.dumps({"type": "join", "data": {
                    "channel_id": f"call-{call}", "display_name": f"u{call}-{user}", "batch": True}}))
                await trio.sleep(0.002)
        await trio.sleep(0.4)  # every linger ends
        for socket in sockets:
            await socket.inbox_send.send(None)
        while hub.open_connections:
            await trio.sleep(0.01)
        await trio.sleep(0.4)
        cpu = time.process_time() - cpu0
        nursery.cancel_scope.cancel()
    joins = calls * users
    return {"cpu_us_per_join": round(cpu * 1e6 / joins, 1), "frames_per_join": round(
        sum(s.frames for s in sockets) / joins, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hub_joins", description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--base-tree", default="", metavar="DIR", help="another checkout's hub against this one's")
    p.add_argument("--output", default="")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._child:
        trio.run(_run, 2, 2)  # warm up: imports, first-use compiles (dataclasses), caches
        print(json.dumps(trio.run(_run, a.calls, a.users)))
        return 0
    from bench.joins import alternate_trees

    child = ["-m", "bench.hub_joins", "--_child", "--calls", str(a.calls), "--users", str(a.users)]
    runs: list[dict[str, Any]] = []
    for run in alternate_trees(a.base_tree, a.rounds, child):
        runs.append(run)
        print(json.dumps(run), flush=True)
    trees = dict.fromkeys(r["tree"] for r in runs)
    median = {name: statistics.median(r["cpu_us_per_join"] for r in runs if r["tree"] == name) for name in trees}
    print(json.dumps({"median_cpu_us_per_join": median}))
    if a.output:
        with open(a.output, "w") as f:
            json.dump({"runs": runs, "median_cpu_us_per_join": median}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
