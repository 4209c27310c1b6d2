"""Cluster benchmark: failover time after `kill -9` of a call's owner, and join latency on the owner vs relayed.

    python -m bench.cluster_failover --store postgresql://USER@HOST:PORT/DB [--runs 20] [--lease 2] [--json]

Starts three `callsd serve` nodes (cluster mode, loopback, signaling only: `--no-media`) on the given database. Each
run uses a new channel: alice joins through node A (so A takes the channel's lease and hosts the call: the "first
join" figure includes that), then bob joins through node B (relayed to A) and carol through A (on the owner); the
join_ack latency of each is recorded (from sending `join`), bob's and carol's alternating in order. Then A is killed with SIGKILL and the time until bob's
socket, kept by B, receives the `join_ack` (`reconnected: true`) from the call's new owner is the failover time:
lease expiry + acquiring the lease + rebuilding the call from the log + the resumed `reconnect`. A is started again
before the next run, and the roles rotate over the nodes. Media renegotiation comes after that and is not included
(the cluster tests check audio flows again; see docs/cluster.md). Prints the distribution (min, median, p90, max).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

SECRET = "bench-cluster-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, name: str, store: str, lease: float, where: Path) -> None:
        self.name, self.port = name, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, CALLSD_HTTP_LISTEN="127.0.0.1", CALLSD_HTTP_PORT=str(self.port),
                        CALLSD_STORE_URL=store, CALLSD_STORE_DATA_DIR=str(where / name), CALLSD_AUTH_MODE="open",
                        CALLSD_CLUSTER_ENABLED="true", CALLSD_CLUSTER_NODE_ID=name, CALLSD_CLUSTER_SECRET=SECRET,
                        CALLSD_CLUSTER_ADVERTISE=f"127.0.0.1:{self.port}", CALLSD_CLUSTER_LEASE_SECONDS=str(lease),
                        CALLSD_LOG_LEVEL="warning")
        self.log = where / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "callsd.app.cli", "serve", "--no-media"],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"node {self.name} did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


async def _expect(ws: Any, kind: str, timeout: float) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            msg = json.loads(await ws.get_message())
            if msg["type"] == kind:
                return msg["data"]  # type: ignore[no-any-return]


async def _join(ws: Any, channel: str, name: str) -> float:
    await _expect(ws, "hello", 10)
    sent = time.monotonic()
    await ws.send_message(json.dumps({"type": "join", "data": {"channel_id": channel, "display_name": name}}))
    await _expect(ws, "join_ack", 10)
    return (time.monotonic() - sent) * 1000


async def _run(nodes: list[Node], index: int) -> tuple[float, float, float, float]:
    owner, front = nodes[index % 3], nodes[(index + 1) % 3]
    channel = f"bench-{os.getpid()}-{index}"
    async with open_websocket_url(owner.url.replace("http", "ws") + "/api/v1/websocket") as alice, \
            open_websocket_url(front.url.replace("http", "ws") + "/api/v1/websocket") as bob, \
            open_websocket_url(owner.url.replace("http", "ws") + "/api/v1/websocket") as carol:
        first = await _join(alice, channel, "alice")
        if index % 2:
            local = await _join(carol, channel, "carol")
            relayed = await _join(bob, channel, "bob")
        else:
            relayed = await _join(bob, channel, "bob")
            local = await _join(carol, channel, "carol")
        await trio.to_thread.run_sync(owner.kill)
        killed = time.monotonic()
        back = await _expect(bob, "join_ack", 30)
        assert back["reconnected"] is True
        failover = time.monotonic() - killed
    await trio.to_thread.run_sync(owner.start)
    return first, local, relayed, failover


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "min": round(ordered[0], 3), "median": round(statistics.median(ordered), 3),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3), "max": round(ordered[-1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="postgresql://USER@HOST:PORT/DB (an empty database)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        nodes = [Node(f"n{i + 1}", args.store, args.lease, Path(tmp)) for i in range(3)]
        for node in nodes:
            node.start()
        firsts: list[float] = []
        local: list[float] = []
        relayed: list[float] = []
        failover: list[float] = []
        try:
            for index in range(args.runs):
                first, a, b, f = trio.run(_run, nodes, index)
                firsts.append(first)
                local.append(a)
                relayed.append(b)
                failover.append(f)
                print(f"run {index + 1}/{args.runs}: first join (hosts) {first:.1f} ms, join on the owner {a:.1f} ms, relayed {b:.1f} ms, "
                      f"failover {f:.2f} s", file=sys.stderr, flush=True)
        finally:
            for node in nodes:
                node.stop()
    doc = {"lease_seconds": args.lease, "first_join_ms_hosting": _summary(firsts), "join_ms_on_owner": _summary(local), "join_ms_relayed": _summary(relayed),
           "failover_s": _summary(failover), "load_average": os.getloadavg()}
    print(json.dumps(doc, indent=2) if args.json else doc)


if __name__ == "__main__":
    main()
