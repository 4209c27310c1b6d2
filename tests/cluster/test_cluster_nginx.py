"""Three nodes behind a real nginx running deploy/proxy/nginx.conf (round-robin, WebSocket upgrade, TLS
termination): `callsd loadtest` users of one call through nginx land on different nodes and hear each other (real
RTP through the owner's media plane); a client over TLS (wss:// to nginx, plain to the nodes) joins a call."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
import trio
from cluster_support import cluster_node, node_metric, one_call_load
from nginx_support import Nginx
from trio_websocket import open_websocket_url

pytestmark = pytest.mark.slow


async def _join_over_tls(proxy: Nginx, channel: str) -> dict[str, object]:
    url = proxy.tls_url.replace("https", "wss") + "/api/v1/websocket"
    async with open_websocket_url(url, ssl_context=proxy.tls_context()) as ws:
        hello = json.loads(await ws.get_message())
        assert hello["type"] == "hello", hello
        await ws.send_message(json.dumps({"type": "join", "data": {"channel_id": channel, "display_name": "tls"}}))
        with trio.fail_after(20):
            while (msg := json.loads(await ws.get_message()))["type"] != "join_ack":
                pass
        return msg["data"]  # type: ignore[no-any-return]


async def test_load_users_behind_nginx_land_on_several_nodes_and_hear_each_other(pg_url: str,
                                                                                  tmp_path: Path) -> None:
    nodes = {name: cluster_node(tmp_path, pg_url, name) for name in ("n1", "n2", "n3")}
    proxy = Nginx(tmp_path, [node.port for node in nodes.values()])
    out = tmp_path / "load.json"
    users = 4
    try:
        for node in nodes.values():
            await trio.to_thread.run_sync(node.start)
        await trio.to_thread.run_sync(proxy.start)
        load = await trio.to_thread.run_sync(lambda: subprocess.run(
            one_call_load([proxy.url], users, 6, out), capture_output=True, text=True, timeout=120, cwd=tmp_path))
        accepted = {name: node_metric(node.url, "callsd_cluster_client_sockets_accepted_total")
                    for name, node in nodes.items()}
        relayed = sum(node_metric(node.url, "callsd_cluster_relayed_out_total") for node in nodes.values())
        with urllib.request.urlopen(proxy.tls_url + "/api/v1/config", timeout=5,
                                    context=proxy.tls_context()) as resp:
            assert json.loads(resp.read())["protocol"] >= 1  # TLS terminated by nginx, plain HTTP to a node
        ack = await _join_over_tls(proxy, "over-tls")
        assert ack["channel_id"] == "over-tls" and ack["call_id"]
    finally:
        await trio.to_thread.run_sync(proxy.stop)
        for node in nodes.values():
            await trio.to_thread.run_sync(node.stop)
    # 3: "the server process changed": the tool's /metrics reads, round-robin too, reach different nodes
    assert load.returncode in (0, 3), load.stdout + load.stderr
    print("client sockets per node through nginx:", accepted, "relayed:", relayed)
    assert sum(accepted.values()) == users, accepted
    assert sum(1 for n in accepted.values() if n) >= 2, accepted  # one call's users on different nodes
    assert relayed >= 1  # some of them relayed to the call's owner
    overall = json.loads(out.read_text())["overall"]
    assert overall["audio_streams_received"] == overall["audio_streams_expected"] == users * (users - 1), overall
    assert overall["packets_received"] > 300, overall
