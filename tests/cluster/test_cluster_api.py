"""The HTTP API of a single server on every cluster node, with the cluster's answers: `/api/v1/channels` lists the
ongoing calls of every node (whichever hosts them), follows a call to its new owner after `kill -9`, and filters by
token in token mode; `/metrics` per node: calls owned, sockets, relays, leases and the PostgreSQL write latency."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
from callsd.app.auth import create_token
from cluster_support import cluster_node, peer
from serve_support import ServeProcess

pytestmark = pytest.mark.slow


def _get(node: ServeProcess, path: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(node.url + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            body = resp.read().decode()
            return resp.status, json.loads(body) if path.startswith("/api/") else body
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode())


def _listed(node: ServeProcess, token: str | None = None) -> dict[str, tuple[str, int]]:
    status, doc = _get(node, "/api/v1/channels", token)
    assert status == 200, doc
    return {c["channel_id"]: (c["call_id"], c["participants"]) for c in doc["channels"]}


async def _until(what: str, check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await trio.sleep(0.1)


def _samples(node: ServeProcess) -> dict[str, float]:
    """Every sample of the node's /metrics, by its name and labels."""
    _, text = _get(node, "/metrics")
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


async def test_channels_lists_every_nodes_calls_and_follows_a_takeover(pg_url: str, tmp_path: Path) -> None:
    n1, n2, n3 = (cluster_node(tmp_path, pg_url, name) for name in ("n1", "n2", "n3"))
    for node in (n1, n2, n3):
        await trio.to_thread.run_sync(node.start)
    try:
        async with AsyncExitStack() as stack:
            alice = await stack.enter_async_context(peer(n1))
            bob = await stack.enter_async_context(peer(n2))
            carol = await stack.enter_async_context(peer(n2))
            a = (await alice.join("a", "alice"))["call_id"]  # channel a: hosted by n1
            assert (await bob.join("a", "bob"))["call_id"] == a  # relayed n2 -> n1
            b = (await carol.join("b", "carol"))["call_id"]  # channel b: hosted by n2
            want = {"a": (a, 2), "b": (b, 1)}
            for node in (n1, n2, n3):  # n3 hosts nothing and answers for the whole cluster
                await _until(f"{node.url} lists {want}", lambda node=node: _listed(node) == want)

            await trio.to_thread.run_sync(n1.kill)  # a moves to n2 (bob's node resumes him there)
            await bob.expect("join_ack", timeout=15)
            for node in (n2, n3):  # the same call, now published by its new owner; alice is disconnected, not gone
                await _until(f"{node.url} lists a after the takeover",
                             lambda node=node: _listed(node).get("a") == (a, 2), timeout=15)
            await carol.send("leave")
            await carol.expect("user_left", session_id=carol.session_id)
            await _until("b is gone from n3's list once its call ended", lambda: "b" not in _listed(n3))
    finally:
        for node in (n1, n2, n3):
            await trio.to_thread.run_sync(node.stop)


async def test_channels_in_token_mode_lists_only_the_tokens_channels(pg_url: str, tmp_path: Path) -> None:
    secret = "token-secret-for-the-cluster-0123456789"
    env = {"CALLSD_AUTH_MODE": "token", "CALLSD_AUTH_SECRET": secret}
    n1, n2 = (cluster_node(tmp_path, pg_url, name) for name in ("n1", "n2"))
    for node in (n1, n2):
        node.env.update(env)
        await trio.to_thread.run_sync(node.start)

    def token(*channels: str) -> str:
        return create_token(secret=secret, user_id="u", channels=list(channels), expires_at=int(time.time()) + 600)

    try:
        async with AsyncExitStack() as stack:
            for node, channel in ((n1, "red"), (n2, "blue")):
                who = await stack.enter_async_context(peer(node))
                await who.send("join", {"channel_id": channel, "display_name": channel, "token": token(channel)})
                await who.expect("join_ack")
            for node in (n1, n2):
                await _until("both calls listed",
                             lambda node=node: set(_listed(node, token("red", "blue"))) == {"red", "blue"})
            assert set(_listed(n2, token("red"))) == {"red"}  # hosted on the other node, and allowed
            assert set(_listed(n1, token("blue"))) == {"blue"}
            status, doc = _get(n1, "/api/v1/channels")
            assert status == 401 and doc["error"]["code"], doc
    finally:
        for node in (n1, n2):
            await trio.to_thread.run_sync(node.stop)


async def test_metrics_per_node_count_owned_calls_sockets_relays_leases_and_store_latency(pg_url: str,
                                                                                           tmp_path: Path) -> None:
    n1, n2 = (cluster_node(tmp_path, pg_url, name) for name in ("n1", "n2"))
    for node in (n1, n2):
        await trio.to_thread.run_sync(node.start)
    try:
        async with peer(n1) as alice, peer(n2) as bob:
            await alice.join("room", "alice")
            await bob.join("room", "bob")
            await bob.send("raise_hand")
            await alice.expect("user_raised_hand", session_id=bob.session_id)
            await trio.sleep(1.5)  # a few lease renewals (every third of the 2 s lease)
            one, two = _samples(n1), _samples(n2)
    finally:
        for node in (n1, n2):
            await trio.to_thread.run_sync(node.stop)
    assert one['callsd_cluster_calls_owned{node="n1"}'] == 1 and two['callsd_cluster_calls_owned{node="n2"}'] == 0
    assert one['callsd_cluster_client_sockets{node="n1"}'] == 1 == two['callsd_cluster_client_sockets{node="n2"}']
    assert one['callsd_cluster_relayed_in_total{node="n1"}'] == 1 == two['callsd_cluster_relayed_out_total{node="n2"}']
    assert one['callsd_cluster_leases_acquired_total{node="n1"}'] == 1
    assert one['callsd_cluster_lease_renewals_total{node="n1"}'] >= 1
    assert one['callsd_cluster_lease_losses_total{node="n1"}'] == 0
    appends = one['callsd_cluster_store_seconds_count{node="n1",op="append"}']
    assert appends >= 3  # joins, the hand: every acknowledged input waited for one of these commits
    assert one['callsd_cluster_store_seconds_bucket{le="+Inf",node="n1",op="append"}'] == appends
    assert 0 < one['callsd_cluster_store_seconds_sum{node="n1",op="append"}'] < appends * 5
    assert one['callsd_cluster_store_seconds_count{node="n1",op="renew_lease"}'] >= 1
    assert not any(key.startswith("callsd_cluster_store_seconds") for key in two)  # n2 hosts nothing: no writes


async def test_a_node_uses_one_database_connection_per_hosted_channel_plus_two(pg_url: str, tmp_path: Path) -> None:
    """Each hosted channel writes on its own connection; lease renewals of all of them share one (the node's
    RenewalConnection), the directory another: N + 2, where it was 2 N + 2."""
    import psycopg

    n1 = cluster_node(tmp_path, pg_url, "n1")
    channels = 5
    await trio.to_thread.run_sync(n1.start)
    try:
        async with AsyncExitStack() as stack:
            for k in range(channels):
                who = await stack.enter_async_context(peer(n1))
                await who.join(f"c{k}", f"u{k}")
            await trio.sleep(1.5)  # every keeper renewed at least once (every third of the 2 s lease)
            with psycopg.connect(pg_url, autocommit=True) as db:
                count = db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND pid <> pg_backend_pid()").fetchone()
                renewals = _samples(n1)['callsd_cluster_lease_renewals_total{node="n1"}']
    finally:
        await trio.to_thread.run_sync(n1.stop)
    assert count is not None and count[0] == channels + 2, count
    assert renewals >= channels


async def test_metrics_listen_serves_the_nodes_metrics_on_their_own_address(pg_url: str, tmp_path: Path) -> None:
    from serve_support import free_port

    port = free_port()
    n1 = cluster_node(tmp_path, pg_url, "n1", CALLSD_METRICS_LISTEN=f"127.0.0.1:{port}")
    await trio.to_thread.run_sync(n1.start)
    try:
        with urllib.request.urlopen(n1.url + "/healthz", timeout=5) as resp:  # as a single server's, and the node
            health = json.loads(resp.read())
        assert health["node"] == "n1" and health["rtc"]["advertised"]["addresses"] == ["127.0.0.1"], health
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert 'callsd_cluster_calls_owned{node="n1"} 0.0' in resp.read().decode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(n1.url + "/metrics", timeout=5)
        assert refused.value.code == 404  # not on the HTTP port
    finally:
        await trio.to_thread.run_sync(n1.stop)
