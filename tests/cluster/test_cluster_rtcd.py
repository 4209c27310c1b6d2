"""A cluster whose media runs on an rtcd host (issue 12: "media for a call is on the owner's media plane,
integrated, or the rtcd hosts it places on"): two `callsd serve` nodes behind a real HAProxy, both with
``rtc.rtcd_url`` naming one `callsd rtcd` process on 127.0.0.2. `callsd loadtest` users of one call land on both
nodes; the owner places every session of the call on the rtcd host (its media plane), wherever the user's WebSocket
landed, and they hear each other through it. `kill -9` of the owner: the other node takes the call over at the next
epoch, places the sessions on the rtcd host again, and every user hears every other on its last media leg."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from cluster_support import cluster_node, kill_owner, lease_of, node_metric, one_call_load
from haproxy_support import HAProxy
from rtcd_support import CLIENT, KEY, RtcdProcess, basic

pytestmark = pytest.mark.slow


def _connected_on(rtcd: RtcdProcess) -> float:
    """Media sessions that ever reached "connected" on the rtcd host (its /metrics)."""
    req = urllib.request.Request(rtcd.base + "/metrics", headers={"Authorization": basic(CLIENT, KEY)})
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('callsd_rtcd_rtc_conn_states_total{type="connected"}'))


async def _until(what: str, check: Callable[[], bool], timeout: float) -> None:
    with trio.fail_after(timeout):
        while not await trio.to_thread.run_sync(check):
            await trio.sleep(0.2)
    print("seen:", what)


async def test_a_cluster_places_its_calls_media_on_an_rtcd_host_and_again_after_kill_9(pg_url: str,
                                                                                       tmp_path: Path) -> None:
    rtcd = RtcdProcess(tmp_path, "127.0.0.2")
    await trio.to_thread.run_sync(rtcd.start)
    await trio.to_thread.run_sync(rtcd.register)
    nodes = {name: cluster_node(tmp_path, pg_url, name, CALLSD_RTC_RTCD_URL=rtcd.base, CALLSD_RTC_RTCD_CLIENT_ID=CLIENT,
                                CALLSD_RTC_RTCD_AUTH_KEY=KEY) for name in ("n1", "n2")}
    balancer = HAProxy(tmp_path, [(name, node.port) for name, node in nodes.items()])
    out = tmp_path / "load.json"
    users, duration, kill_at = 3, 18.0, 6.0
    try:
        for node in nodes.values():
            await trio.to_thread.run_sync(node.start)
        await trio.to_thread.run_sync(balancer.start)
        async with trio.open_nursery() as nursery:
            done: list[subprocess.CompletedProcess[str]] = []

            def load() -> None:
                done.append(subprocess.run(
                    one_call_load([balancer.url], users, duration, out, reconnect=True), capture_output=True, text=True, timeout=150, cwd=tmp_path))

            nursery.start_soon(trio.to_thread.run_sync, load)
            with trio.fail_after(30):
                while (owner := lease_of(pg_url)) is None:
                    await trio.sleep(0.1)
            # Every user's media session is on the rtcd host, placed there by the owner.
            await _until(f"{users} sessions of one call on the rtcd host, connected",
                         lambda: rtcd.system()["sessions"] == users and rtcd.system()["calls"] == 1
                         and _connected_on(rtcd) == users, 30)
            await trio.sleep(max(0.0, kill_at - 1))
            relayed = sum(node_metric(node.url, "callsd_cluster_relayed_out_total") for node in nodes.values())
            assert relayed >= 1  # users on the node that does not own the call, relayed to the owner
            now = await kill_owner(nodes, pg_url, owner)
            # The dead owner's link to the rtcd host closed its sessions; the new owner placed them again there,
            # and they connected a second time.
            await _until(f"the call's {users} sessions placed again by {now[0]} and connected",
                         lambda: _connected_on(rtcd) >= 2 * users and rtcd.system()["sessions"] == users
                         and rtcd.system()["calls"] == 1, 20)
        load_run = done[0]
    finally:
        await trio.to_thread.run_sync(balancer.stop)
        for node in nodes.values():
            await trio.to_thread.run_sync(node.stop)
        await trio.to_thread.run_sync(rtcd.stop)
    assert load_run.returncode in (0, 3), load_run.stdout + load_run.stderr  # 3: "a server process changed"
    doc = json.loads(out.read_text())
    assert doc["users"]["failed"] == 0 and doc["users"]["connected"] == users, doc["users"]
    assert doc["users"]["reconnects"] >= users, doc["users"]  # every user renegotiated with the new owner
    assert doc["calls"][0]["audio_streams_received_last_leg"] == users * (users - 1), doc["calls"][0]
    verified = subprocess.run([sys.executable, "-m", "callsd.app.cli", "replay", pg_url, "--verify"],
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
