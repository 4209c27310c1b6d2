"""The signaling hub alone, per join: CPU of `SignalingHub` (handlers, broadcasts, outboxes, writers, batch frames'
linger) with no sockets, no media plane and no disk, in one process; another checkout's hub against this one's.

    .venv/bin/python -m bench.hub_joins [--calls 20 --users 8 --rounds 3] [--base-tree DIR]
    .venv/bin/python -m bench.hub_joins --callgrind [--calls 10] --base-tree DIR   # instructions per join

Why: the end-to-end join bench (bench.joins) resolves a change of a few percent only roughly on this shared host; the
hub's share of a join (docs/performance.md, "Join cost attributed") is measured here with ``process_time`` around
the joins, the linger that follows them and the leaves, each tree in its own process, alternated. Every user
asks for batch frames (protocol 1.3), so every join makes the members of its call linger.

``--callgrind``: instructions instead of CPU time, which the host's load does not move (valgrind's callgrind; its
slowdown stretches the lingers, so only the instructions are read): each tree runs once with ``--calls`` × 8 joins
and once with none, and the difference over the joins is its instructions per join (the interpreter's start-up and
imports cancel out).
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
    joins = calls * users or 1  # none: the --callgrind baseline run
    return {"cpu_us_per_join": round(cpu * 1e6 / joins, 1), "frames_per_join": round(
        sum(s.frames for s in sockets) / joins, 2)}


def _instructions(tree_path: str, calls: int, users: int) -> int:
    """Instructions (callgrind's ``Ir``) of one child run of ``calls`` × ``users`` joins, ``tree_path`` first on its
    PYTHONPATH (a base tree's shim, or "" for this checkout)."""
    import os
    import subprocess
    import sys
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [tree_path, root,
                                                                    os.environ.get("PYTHONPATH", "")])))
    with tempfile.TemporaryDirectory(prefix="hub-joins-callgrind-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
                        "bench.hub_joins", "--_child", "--calls", str(calls), "--users", str(users)],
                       env=env, capture_output=True, text=True, check=True, timeout=3600)
        with open(out) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def callgrind_per_join(base_tree: str, calls: int, users: int) -> dict[str, Any]:
    """Instructions per join of each tree (``--callgrind``)."""
    from bench.joins import _package_shim

    trees = {"base tree": _package_shim(base_tree)} if base_tree else {}
    trees["this tree"] = ""
    out: dict[str, Any] = {}
    for name, path in trees.items():
        joined, idle = _instructions(path, calls, users), _instructions(path, 0, users)
        out[name] = {"instructions_per_join": round((joined - idle) / (calls * users)), "instructions_joined":
                     joined, "instructions_idle": idle}
        print(json.dumps({"tree": name, **out[name]}), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hub_joins", description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--base-tree", default="", metavar="DIR", help="another checkout's hub against this one's")
    p.add_argument("--output", default="")
    p.add_argument("--callgrind", action="store_true", help="instructions per join under callgrind, per tree")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.callgrind:
        result = callgrind_per_join(a.base_tree, a.calls, a.users)
        if a.output:
            with open(a.output, "w") as f:
                json.dump(result, f, indent=1)
        return 0
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
