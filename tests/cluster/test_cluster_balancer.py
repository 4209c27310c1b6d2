"""Three nodes behind a real HAProxy (round-robin): `callsd loadtest` users of one call through the balancer land
on different nodes and hear each other; the owner is killed with SIGKILL mid-call: users on the other nodes keep
their sockets and are moved to the new owner, users of the dead node reconnect through the balancer, all hear each
other again; the PostgreSQL log verifies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from cluster_support import cluster_node, kill_owner, lease_of, node_metric, one_call_load
from haproxy_support import HAProxy

pytestmark = pytest.mark.slow


async def test_three_nodes_behind_haproxy_survive_kill_9_of_the_owner(pg_url: str, tmp_path: Path) -> None:
    nodes = {name: cluster_node(tmp_path, pg_url, name) for name in ("n1", "n2", "n3")}
    for node in nodes.values():
        await trio.to_thread.run_sync(node.start)
    balancer = HAProxy(tmp_path, [(name, node.port) for name, node in nodes.items()])
    await trio.to_thread.run_sync(balancer.start)
    out = tmp_path / "load.json"
    users, duration, kill_at = 3, 16.0, 6.0
    try:
        async with trio.open_nursery() as nursery:
            done: list[subprocess.CompletedProcess[str]] = []

            def load() -> None:
                done.append(subprocess.run(
                    one_call_load([balancer.url], users, duration, out, join_timeout=15, reconnect=True), capture_output=True, text=True, timeout=120, cwd=tmp_path))

            nursery.start_soon(trio.to_thread.run_sync, load)
            with trio.fail_after(30):
                while (owner := lease_of(pg_url)) is None:
                    await trio.sleep(0.1)
            await trio.sleep(kill_at)
            relayed = {name: node_metric(node.url, "callsd_cluster_relayed_out_total") for name, node in nodes.items()}
            assert sum(relayed.values()) >= 1, relayed  # users on other nodes than the owner, through the balancer
            await kill_owner(nodes, pg_url, owner)
        load_run = done[0]
    finally:
        await trio.to_thread.run_sync(balancer.stop)
        for node in nodes.values():
            await trio.to_thread.run_sync(node.stop)
    assert load_run.returncode in (0, 3), load_run.stdout + load_run.stderr  # 3: "a server process changed"
    doc = json.loads(out.read_text())
    assert doc["users"]["failed"] == 0 and doc["users"]["connected"] == users, doc["users"]
    assert doc["users"]["reconnects"] >= users, doc["users"]  # every user renegotiated with the new owner
    call = doc["calls"][0]  # every user hears every other on its last leg (with the new owner)
    assert call["audio_streams_received_last_leg"] == users * (users - 1), call
    verified = subprocess.run([sys.executable, "-m", "callsd.app.cli", "replay", pg_url, "--verify"],
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
