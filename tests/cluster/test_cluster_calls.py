"""Three `callsd serve` nodes on one PostgreSQL log: one call, its users on different nodes (relayed to the owner);
the owner killed with SIGKILL: the call continues on another node; the log verifies."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

import psycopg
import pytest
import trio
from cluster_support import cluster_node, node_metric, one_call_load, owner_of, peer

pytestmark = pytest.mark.slow


def _replay_verify(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callsd.app.cli", "replay", url, "--verify"], capture_output=True,
                          text=True, timeout=120)


async def test_one_call_over_three_nodes_survives_kill_9_of_its_owner(pg_url: str, tmp_path: Path) -> None:
    nodes = {name: cluster_node(tmp_path, pg_url, name) for name in ("n1", "n2", "n3")}
    for node in nodes.values():
        await trio.to_thread.run_sync(node.start)
    try:
        async with AsyncExitStack() as stack:
            alice = await stack.enter_async_context(peer(nodes["n1"]))
            bob = await stack.enter_async_context(peer(nodes["n2"]))
            carol = await stack.enter_async_context(peer(nodes["n3"]))
            ack = await alice.join("room", "alice")
            assert owner_of(pg_url, "room") == ("n1", 1)  # the first joiner's node owns the call
            assert (await bob.join("room", "bob"))["call_id"] == ack["call_id"]  # relayed n2 -> n1
            assert (await carol.join("room", "carol"))["call_id"] == ack["call_id"]  # relayed n3 -> n1
            await alice.expect("user_joined", session_id=carol.session_id)
            await bob.send("raise_hand")
            for who in (alice, bob, carol):
                await who.expect("user_raised_hand", session_id=bob.session_id)  # acknowledged via the owner

            assert node_metric(nodes["n1"].url, "callsd_cluster_calls_owned") == 1
            assert node_metric(nodes["n1"].url, "callsd_cluster_relayed_in_total") == 2
            assert node_metric(nodes["n2"].url, "callsd_cluster_relayed_out_total") == 1
            assert node_metric(nodes["n2"].url, "callsd_cluster_calls_owned") == 0

            # kill -9 of the owner: bob and carol keep their sockets, and are resumed on the next owner.
            killed = time.monotonic()
            await trio.to_thread.run_sync(nodes["n1"].kill)
            for who in (bob, carol):
                resumed = await who.expect("join_ack", timeout=15)
                assert resumed["reconnected"] is True and resumed["call_id"] == ack["call_id"]
            moved_after = time.monotonic() - killed
            owner, epoch = owner_of(pg_url, "room")
            assert owner in ("n2", "n3") and epoch == 2
            state = resumed["state"]
            hands = {p["session_id"]: p["raised_hand"] for p in state["participants"]}
            assert hands[bob.session_id] > 0  # the acknowledged input survived the owner
            await carol.send("raise_hand")
            await bob.expect("user_raised_hand", session_id=carol.session_id)
            print(f"call moved to {owner} (epoch {epoch}) {moved_after:.1f} s after kill -9 of its owner")
            assert node_metric(nodes[owner].url, "callsd_cluster_calls_owned") == 1
            assert node_metric(nodes[owner].url, "callsd_cluster_leases_acquired_total") == 1
            assert sum(node_metric(nodes[n].url, "callsd_cluster_sessions_resumed_total") for n in ("n2", "n3")) == 2
            assert moved_after < 10

            # alice, whose node died, reconnects through another node with her session id and secret.
            alice2 = await stack.enter_async_context(peer(nodes["n2"]))
            await alice2.send("reconnect", {"session_id": alice.session_id, "channel_id": "room",
                                            "reconnect_secret": alice.secret})
            back = await alice2.expect("join_ack")
            assert back["reconnected"] is True and back["session_id"] == alice.session_id
            await bob.expect("user_reconnected", session_id=alice.session_id)
    finally:
        for node in nodes.values():
            await trio.to_thread.run_sync(node.stop)
    verified = _replay_verify(pg_url)  # every stream of the database: here the one of channel "room"
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "== stream 'channel/room'" in verified.stdout and "verify: all" in verified.stdout, verified.stdout


async def test_loadtest_users_of_one_call_on_three_nodes_hear_each_other(pg_url: str, tmp_path: Path) -> None:
    """`callsd loadtest --url N1 --url N2 --url N3`: users dealt round-robin, as a load balancer would; the call is
    hosted by one node and every user hears every other (real RTP through the owner's media plane)."""
    nodes = [cluster_node(tmp_path, pg_url, name) for name in ("n1", "n2", "n3")]
    for node in nodes:
        await trio.to_thread.run_sync(node.start)
    out = tmp_path / "load.json"
    try:
        load = await trio.to_thread.run_sync(lambda: subprocess.run(
            one_call_load([n.url for n in nodes], 3, 5, out, join_timeout=15), capture_output=True, text=True, timeout=120, cwd=tmp_path))
    finally:
        for node in nodes:
            await trio.to_thread.run_sync(node.stop)
    assert load.returncode == 0, load.stdout + load.stderr
    doc = json.loads(out.read_text())
    per_url = doc["users"]["per_url"]
    assert sorted(per_url) == sorted(n.url.replace("http", "ws") + "/api/v1/websocket" for n in nodes)
    assert all(c == {"users": 1, "joined": 1, "connected": 1} for c in per_url.values()), per_url
    overall = doc["overall"]
    assert overall["audio_streams_received"] == overall["audio_streams_expected"] == 6, overall
    assert overall["packets_received"] > 300, overall
    assert "users per" not in load.stdout
    assert all(n.url.replace("http", "ws") in load.stdout for n in nodes)  # the summary lists each node's users
    channel = doc["calls"][0]["channel_id"] if doc.get("calls") else None
    with psycopg.connect(pg_url, autocommit=True) as db:
        owners = db.execute("SELECT owner FROM call_leases").fetchall()
    assert len(owners) == 1, (owners, channel)  # one call, one owner


async def test_a_socket_that_joins_another_channel_is_served_by_that_channels_owner(pg_url: str,
                                                                                    tmp_path: Path) -> None:
    n1, n2 = (cluster_node(tmp_path, pg_url, name) for name in ("n1", "n2"))
    for node in (n1, n2):
        await trio.to_thread.run_sync(node.start)
    try:
        async with peer(n2) as bob, peer(n1) as alice:
            await bob.send("ping")  # before any channel is known: the node answers itself
            await bob.expect("pong")
            await bob.join("a", "bob")
            await alice.join("a", "alice")  # relayed n1 -> n2
            assert owner_of(pg_url, "a") == ("n2", 1)
            await alice.send("leave")
            await bob.expect("user_left", session_id=alice.session_id)
            ack = await alice.join("b", "alice")  # the same socket, another channel
            assert ack["channel_id"] == "b" and owner_of(pg_url, "b") == ("n1", 1)
            await alice.send("raise_hand")
            await alice.expect("user_raised_hand")
    finally:
        for node in (n1, n2):
            await trio.to_thread.run_sync(node.stop)
    verified = _replay_verify(pg_url)
    assert verified.returncode == 0 and verified.stdout.count("== stream") == 2, verified.stdout + verified.stderr
