"""``callsd serve`` with ``rtc.media_workers = 2``: each call lands on one `callsd rtcd` process with its own RTC
port, media flows through it to real aiortc peers, mute still stops audio, /metrics sums the workers' counters, and
a killed worker's sessions are reported closed while the other call keeps its media."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from aiortc_tone import TonePeer

pytestmark = pytest.mark.slow


def _e2e() -> Any:
    """tests/server/test_server_e2e_aiortc.py's helpers, by path (--import-mode=importlib adds nothing to sys.path)."""
    name = "callsd_tests_e2e_aiortc_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_server_e2e_aiortc.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


E2E = _e2e()
_until = E2E._until
Peer = partial(TonePeer, recv_video=True)


async def _pump(client: Any, peer: Any, events: list[dict[str, Any]], ports: list[int]) -> None:
    """Like the e2e pump, and note the RTC port in each server SDP's host candidate."""
    while True:
        msg = await client.recv(timeout=120)
        if msg["type"] == "signal" and msg["data"]["type"] in ("offer", "answer"):
            ports.extend(int(p) for p in re.findall(r"a=candidate:\S+ 1 udp \d+ \S+ (\d+) typ host",
                                                     msg["data"]["sdp"]))
            answer = await peer.accept(msg["data"]["type"], msg["data"]["sdp"])
            if answer is not None:
                await client.send("sdp", {"type": "answer", "sdp": answer})
        else:
            events.append(msg)


async def _metrics(http_get: Any, port: int) -> dict[str, float]:
    _, _, body = await http_get(port, "/metrics")
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in body.decode().splitlines()
                                     if line.startswith("callsd_"))}


@pytest.fixture
def loopback_aioice(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


async def _two_calls(info: Any, connect: Any, nursery: trio.Nursery, stack: Any) -> tuple[list[Any], list[Any],
                                                                                       list[list[int]], list[Any]]:
    peers = [Peer() for _ in range(4)]
    stack.extend(peers)
    events: list[list[dict[str, Any]]] = [[] for _ in range(4)]
    ports: list[list[int]] = [[] for _ in range(4)]
    clients = []
    for n in range(4):
        client = await nursery.start(_open_client, connect, info)
        clients.append(client)
        await client.request("join", {"channel_id": f"call{n // 2}"}, expect="join_ack")
        await client.send("unmute")
        await client.send("sdp", {"type": "offer", "sdp": await peers[n].offer()})
        nursery.start_soon(_pump, client, peers[n], events[n], ports[n])
    await _until(lambda: all(p.frames > 25 for p in peers), timeout=60)
    return peers, clients, ports, events


async def _open_client(connect: Any, info: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    async with connect(info) as client:
        task_status.started(client)
        await trio.sleep_forever()


async def test_two_calls_on_two_workers_carry_audio_mute_and_metrics(start_server, connect, http_get,
                                                                    loopback_aioice) -> None:
    info, _ = await start_server(media=True, rtc={"media_workers": 2})
    router = info.hub.plane
    assert len(router.planes) == 2 and info.rtc_address == router.addresses[0]
    stack: list[Any] = []
    try:
        async with trio.open_nursery() as nursery:
            peers, clients, ports, events = await _two_calls(info, connect, nursery, stack)
            # each call sits on one worker, the two calls on different workers, and SDPs advertise its own port
            assert router.channel_worker["call0"] != router.channel_worker["call1"]
            worker_ports = [{router.addresses[router.channel_worker[f"call{n // 2}"]][1]} for n in range(4)]
            assert [set(p) for p in ports] == worker_ports
            assert worker_ports[0] != worker_ports[2]

            await clients[0].send("mute")
            await _until(lambda: any(e["type"] == "user_muted" for e in events[1]))
            # The other call's audio (50 frames/s) is the clock: wait for it to advance, not for wall time.
            drained = peers[3].frames + 25  # ~0.5 s: packets already in flight arrive meanwhile
            await _until(lambda: peers[3].frames >= drained)  # the other call is untouched
            before, other = peers[1].frames, peers[3].frames
            await _until(lambda: peers[3].frames >= other + 75)  # 1.5 s more of the other call's audio
            assert peers[1].frames - before <= 3  # muted through the worker

            samples = await _metrics(http_get, info.http_port)
            per_worker = [p.counters["rtp_out"] for p in router.planes]
            assert min(per_worker) > 50
            assert samples['callsd_rtc_rtp_packets_total{direction="out",type="rtp"}'] >= sum(per_worker)
            assert samples['callsd_rtc_conn_states_total{type="connected"}'] == 4
            nursery.cancel_scope.cancel()
    finally:
        for peer in stack:
            await peer.close()


async def test_a_killed_worker_closes_its_sessions_and_the_other_call_keeps_media(start_server, connect,
                                                                                 loopback_aioice) -> None:
    info, _ = await start_server(media=True, rtc={"media_workers": 2})
    hub, router = info.hub, info.hub.plane
    stack: list[Any] = []
    try:
        async with trio.open_nursery() as nursery:
            peers, clients, _ports, _events = await _two_calls(info, connect, nursery, stack)
            victim = router.channel_worker["call0"]
            os.kill(router.processes[victim].pid, signal.SIGKILL)
            await _until(lambda: not router.planes[victim].alive)
            # the server reports call0's media sessions closed: their tracks leave the core, no routes remain
            await _until(lambda: hub.counters.rtc_conn_states["closed"] == 2)
            await _until(lambda: all(not hub.machine.participant(c.session_id).tracks for c in clients[:2]))
            assert not any(r for r in hub.machine.routes("call0"))
            heard = peers[3].frames
            await _until(lambda: peers[3].frames > heard + 50)  # call1 still has audio
            # a new offer from call0 is placed on the surviving worker
            await clients[0].send("sdp", {"type": "offer", "sdp": await peers[0].offer()})
            await _until(lambda: router.session_worker[clients[0].session_id] != victim)
            nursery.cancel_scope.cancel()
    finally:
        for peer in stack:
            await peer.close()


async def test_a_rejected_sdp_gets_the_same_error_through_a_worker(start_server, connect) -> None:
    local, _ = await start_server(media=True)
    remote, _ = await start_server(media=True, rtc={"media_workers": 1})
    errors = []
    for info in (local, remote):
        async with connect(info) as client:
            await client.request("join", {"channel_id": "c"}, expect="join_ack")
            errors.append(await client.request("sdp", {"type": "offer", "sdp": "v=0\r\nbroken\r\n"}, expect="error"))
            await client.send("ice", {"candidate": None})  # ICE-lite: ignored in both cases, no error
            assert not [m for m in await client.nothing_pending(0.3) if m["type"] == "error"]
    assert errors[0]["code"] == "sdp_rejected"
    assert errors[0] == errors[1]
