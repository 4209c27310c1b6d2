"""Server CPU of the signaling socket itself: per socket (upgrade, ``hello``, close) and per message round trip
(``ping`` in, ``pong`` out), for each ``http.signaling_socket`` (ADR 0027), the modes alternated run by run.

    .venv/bin/python -m bench.ws_stack [--rounds 2 --sockets 400 --clients 50 --pings 90] [--output FILE]
    .venv/bin/python -m bench.ws_stack --base-tree DIR   # another checkout's code against this one's, direct socket

Each run starts a fresh ``callsd serve`` (bench.capacity's ``Server``: pinned to CPU 0, ephemeral ports) and reads
the server's CPU time from /proc around the measured phase, minus its idle CPU measured for 2 s before. Sockets:
``--sockets`` connections opened by 10 concurrent clients, each waiting for ``hello`` then closing. Round trips:
``--clients`` sockets, each sending ``--pings`` pings one after the other (under the per-session burst of 100, so
none is rate-limited). These are the per-join fixed costs of the WebSocket stack: a join opens one socket and
exchanges ~30 messages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from bench.capacity import Server
from bench.scratch import scratch_dir

__all__ = ["main"]

MODES = ("asgi", "direct")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _idle_cpu_per_second(pid: int) -> float:
    before = _cpu_seconds(pid)
    await trio.sleep(2.0)
    return (_cpu_seconds(pid) - before) / 2.0


async def _per_socket(url: str, pid: int, sockets: int, parallel: int = 10) -> float:
    async def one() -> None:
        async with open_websocket_url(url) as ws:
            await ws.get_message()  # hello

    for _ in range(20):  # warm up
        await one()
    idle = await _idle_cpu_per_second(pid)
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    async with trio.open_nursery() as nursery:
        for _ in range(parallel):
            nursery.start_soon(worker, sockets // parallel)
    await trio.sleep(1.0)  # the server finishes its closes
    spent = _cpu_seconds(pid) - cpu0 - idle * (time.monotonic() - t0)
    return spent * 1e6 / (sockets // parallel * parallel)


async def _per_round_trip(url: str, pid: int, clients: int, pings: int) -> float:
    ready, go, done = trio.Event(), trio.Event(), [0, 0]

    async def client() -> None:
        async with open_websocket_url(url) as ws:
            await ws.get_message()  # hello
            done[0] += 1
            if done[0] == clients:
                ready.set()
            await go.wait()
            for _ in range(pings):
                await ws.send_message('{"type":"ping"}')
                await ws.get_message()
            done[1] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
        await ready.wait()
        idle = await _idle_cpu_per_second(pid)
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        go.set()
        while done[1] < clients:
            await trio.sleep(0.01)
        spent = _cpu_seconds(pid) - cpu0 - idle * (time.monotonic() - t0)
    return spent * 1e6 / (clients * pings)


def run(mode: str, sockets: int, clients: int, pings: int, pythonpath: str = "") -> dict[str, Any]:
    """One server, both phases. ``mode``: an ``http.signaling_socket``, or "base tree"/"this tree" (direct; the
    base tree's code first on the server's ``pythonpath``)."""
    env = {"CALLSD_HTTP_SIGNALING_SOCKET": mode if mode in MODES else "direct"}  # the server child reads it
    if mode == "base tree":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, os.environ.get("PYTHONPATH", "")]))
    with scratch_dir("callsd-ws-stack-") as work, Server(work.path, env=env) as server:
        assert server.proc is not None
        url = server.url.replace("http://", "ws://") + "/api/v1/websocket"
        per_socket = trio.run(_per_socket, url, server.proc.pid, sockets)
        per_round_trip = trio.run(_per_round_trip, url, server.proc.pid, clients, pings)
    return {"mode": mode, "cpu_us_per_socket": round(per_socket, 1), "cpu_us_per_round_trip": round(per_round_trip, 1),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ws_stack", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="runs per mode, alternated")
    p.add_argument("--sockets", type=int, default=400)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--pings", type=int, default=90, help="per client (at most 100: the burst)")
    p.add_argument("--output", default="", help="write every run to this JSON file")
    p.add_argument("--base-tree", default="", metavar="DIR",
                   help="compare another checkout's code (e.g. main's) with this one's, both on the direct socket")
    a = p.parse_args(argv)
    modes = ("base tree", "this tree") if a.base_tree else MODES
    shim = ""
    if a.base_tree:
        from bench.joins import _package_shim
        shim = _package_shim(a.base_tree)
    runs = []
    for n in range(a.rounds):
        for mode in modes:
            r = run(mode, a.sockets, a.clients, min(a.pings, 100), shim)
            r["round"] = n
            runs.append(r)
            print(json.dumps(r), flush=True)
    median = {mode: {k: statistics.median(r[k] for r in runs if r["mode"] == mode)
                     for k in ("cpu_us_per_socket", "cpu_us_per_round_trip")} for mode in modes}
    print(json.dumps({"median": median}, indent=1))
    if a.output:
        with open(a.output, "w") as f:
            json.dump({"runs": runs, "median": median}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
