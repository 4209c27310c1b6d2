"""Join latency and server CPU per join, through a relaying node vs directly on the call's owner
(bench/cluster_failover.py).

An anchor user joins channel C through node A, so A hosts C. Then batches of signaling joins alternate between
"owner" (the WebSocket on A) and "relayed" (on B: B opens a relay link to A for the client): each join opens a
WebSocket, waits for ``hello``, sends ``join`` and times it to ``join_ack``, sends ``leave``, waits for its own
``user_left`` and closes. Joins within a batch are sequential. The CPU time of every node's process
(/proc/PID/stat, 10 ms ticks) is read around each batch: per join, the owner's, the relaying node's, and all nodes'.
The order of the two modes alternates round by round so that load drifting on a shared machine hits both alike.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import open_websocket_url

from .cluster_nodes import Node

MODES = ("owner", "relayed")


@dataclass(slots=True)
class JoinFigures:
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    # per batch: CPU ms per join on (the owner, the relaying node, all nodes)
    cpu_ms: dict[str, list[tuple[float, float, float]]] = field(default_factory=lambda: {m: [] for m in MODES})


async def _expect(ws: Any, kind: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            msg = json.loads(await ws.get_message())
            if msg["type"] == kind and all(msg["data"].get(k) == v for k, v in match.items()):
                return msg["data"]  # type: ignore[no-any-return]


async def _one_join(url: str, channel: str, name: str) -> float:
    async with open_websocket_url(url) as ws:
        await _expect(ws, "hello")
        sent = time.monotonic()
        await ws.send_message(json.dumps({"type": "join", "data": {"channel_id": channel, "display_name": name}}))
        ack = await _expect(ws, "join_ack")
        latency = (time.monotonic() - sent) * 1000
        await ws.send_message(json.dumps({"type": "leave", "data": {}}))
        await _expect(ws, "user_left", session_id=ack["session_id"])
        return latency


async def measure_joins(nodes: list[Node], *, rounds: int, per_batch: int, progress: Any) -> JoinFigures:
    owner, relay = nodes[0], nodes[1]
    channel = f"joins-{time.monotonic_ns()}"
    figures = JoinFigures()
    async with open_websocket_url(owner.ws_url) as anchor:
        await _expect(anchor, "hello")
        await anchor.send_message(json.dumps({"type": "join", "data": {"channel_id": channel,
                                                                       "display_name": "anchor"}}))
        await _expect(anchor, "join_ack")

        async def drain_anchor() -> None:  # the anchor reads its broadcasts, as a real client would
            while True:
                await anchor.get_message()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain_anchor)
            for warm in (owner.ws_url, relay.ws_url):
                await _one_join(warm, channel, "warm-up")
            for r in range(rounds):
                for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                    url = owner.ws_url if mode == "owner" else relay.ws_url
                    before = [node.cpu_seconds() for node in nodes]
                    for k in range(per_batch):
                        figures.latency_ms[mode].append(await _one_join(url, channel, f"{mode}-{k}"))
                    after = [node.cpu_seconds() for node in nodes]
                    spent = [(a - b) * 1000 / per_batch for a, b in zip(after, before, strict=True)]
                    figures.cpu_ms[mode].append((spent[0], spent[1], sum(spent)))
                    progress(f"joins round {r + 1}/{rounds} {mode}: median "
                             f"{sorted(figures.latency_ms[mode][-per_batch:])[per_batch // 2]:.1f} ms, CPU per join "
                             f"owner {spent[0]:.2f} ms, relay {spent[1]:.2f} ms, all {sum(spent):.2f} ms")
            nursery.cancel_scope.cancel()
    return figures
