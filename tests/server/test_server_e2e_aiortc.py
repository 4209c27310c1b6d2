"""End to end over the real server and media plane: two aiortc peers join through the signaling WebSocket, their
audio reaches each other, and a mute (through the core's paused routes) stops it at the other side."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from aiortc_tone import TonePeer
from callsd.adapters.metrics import BANDWIDTH_FEEDBACK

pytestmark = pytest.mark.slow


async def _signal_pump(client: Any, peer: TonePeer, events: list[dict[str, Any]]) -> None:
    """Answer the server's offers, apply its answers; keep every other event."""
    while True:
        msg = await client.recv(timeout=120)
        if msg["type"] == "signal" and msg["data"]["type"] in ("offer", "answer"):
            answer = await peer.accept(msg["data"]["type"], msg["data"]["sdp"])
            if answer is not None:
                await client.send("sdp", {"type": "answer", "sdp": answer})
        else:
            events.append(msg)


async def _until(predicate: Any, timeout: float = 30) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


async def test_two_aiortc_peers_hear_each_other_and_mute_stops_audio(start_server, connect, http_get, monkeypatch):
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    info, _ = await start_server(media=True)
    assert info.rtc_address is not None
    peers = [TonePeer(recv_video=True), TonePeer(recv_video=True)]
    events: list[list[dict[str, Any]]] = [[], []]
    try:
        async with connect(info) as a, connect(info) as b, trio.open_nursery() as nursery:
            for client, peer, log in zip((a, b), peers, events, strict=True):
                await client.request("join", {"channel_id": "e2e"}, expect="join_ack")
                await client.send("unmute")
                await client.send("sdp", {"type": "offer", "sdp": await peer.offer()})
                nursery.start_soon(_signal_pump, client, peer, log)
            await _until(lambda: peers[0].frames > 25 and peers[1].frames > 25)

            await a.send("mute")
            await _until(lambda: any(e["type"] == "user_muted" for e in events[1]))
            # b's audio at a (b is unmuted: a still hears b, 50 frames/s) is the clock: wait for it to advance
            # rather than for wall time, so a loaded machine makes this slower, not wrong.
            drained = peers[0].frames + 25  # ~0.5 s: packets already in flight arrive meanwhile
            await _until(lambda: peers[0].frames >= drained)
            before, still = peers[1].frames, peers[0].frames
            await _until(lambda: peers[0].frames >= still + 75)  # 1.5 s more of b's audio
            assert peers[1].frames - before <= 3  # a's audio no longer reaches b
            nursery.cancel_scope.cancel()
        _, _, body = await http_get(info.http_port, "/metrics")
        samples = dict(line.rsplit(" ", 1) for line in body.decode().splitlines() if line.startswith("callsd_"))
        assert float(samples["callsd_rtc_sessions_total"]) == 2
        assert float(samples['callsd_rtc_conn_states_total{type="connected"}']) == 2
        assert float(samples['callsd_rtc_rtp_packets_total{direction="in",type="rtp"}']) > 50
        assert float(samples['callsd_rtc_rtp_packets_total{direction="out",type="rtp"}']) > 50
        assert float(samples['callsd_rtc_rtp_bytes_total{direction="out",type="rtp"}']) > 1000
        assert float(samples['callsd_websocket_events_total{direction="out",type="signal"}']) >= 2
        # the bandwidth-estimation counters are exported, every type (their values: tests/media)
        for kind in BANDWIDTH_FEEDBACK:
            assert f'callsd_rtc_bandwidth_feedback_total{{type="{kind}"}}' in samples, kind
        assert "callsd_rtc_bandwidth_estimates" in samples
    finally:
        for peer in peers:
            await peer.close()


async def test_reconnect_with_a_new_peer_connection_gets_media_again(start_server, connect, monkeypatch):
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    info, _ = await start_server(media=True)
    peers = [TonePeer(recv_video=True), TonePeer(recv_video=True), TonePeer(recv_video=True)]
    events: list[list[dict[str, Any]]] = [[], [], []]
    try:
        async with connect(info) as a, trio.open_nursery() as nursery:
            await a.request("join", {"channel_id": "e2e"}, expect="join_ack")
            await a.send("unmute")
            await a.send("sdp", {"type": "offer", "sdp": await peers[0].offer()})
            nursery.start_soon(_signal_pump, a, peers[0], events[0])
            async with connect(info) as b, trio.open_nursery() as b_nursery:
                await b.request("join", {"channel_id": "e2e"}, expect="join_ack")
                await b.send("unmute")
                await b.send("sdp", {"type": "offer", "sdp": await peers[1].offer()})
                b_nursery.start_soon(_signal_pump, b, peers[1], events[1])
                await _until(lambda: peers[0].frames > 25 and peers[1].frames > 25)
                b_nursery.cancel_scope.cancel()
            await peers[1].close()  # the page is gone: socket and peer connection
            await _until(lambda: any(e["type"] == "user_disconnected" for e in events[0]))

            async with connect(info) as b2, trio.open_nursery() as b_nursery:
                ack = await b2.request("reconnect", b.reconnect_data("e2e"), expect="join_ack")
                assert ack["reconnected"] is True
                await b2.send("sdp", {"type": "offer", "sdp": await peers[2].offer()})
                b_nursery.start_soon(_signal_pump, b2, peers[2], events[2])
                heard = peers[0].frames
                await _until(lambda: peers[2].frames > 25 and peers[0].frames > heard + 25)
                b_nursery.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    finally:
        for peer in (peers[0], peers[2]):
            await peer.close()


def _with_audio_sections(sdp: str, count: int) -> str:
    """``sdp`` with its audio section repeated to ``count`` sending audio sections (new mids, one BUNDLE group)."""
    head, *sections = sdp.replace("\r\n", "\n").split("\nm=")
    sections = ["m=" + s for s in sections]
    audio = next(s for s in sections if s.startswith("m=audio"))
    mid = next(line for line in audio.split("\n") if line.startswith("a=mid:"))[6:]
    extra = [audio.replace(f"a=mid:{mid}\n", f"a=mid:x{i}\n").replace("a=recvonly", "a=sendrecv")
             for i in range(count - 1)]
    mids = [mid] + [f"x{i}" for i in range(count - 1)] + [
        line[6:] for s in sections if s is not audio for line in s.split("\n") if line.startswith("a=mid:")]
    head = "\n".join(line if not line.startswith("a=group:BUNDLE") else "a=group:BUNDLE " + " ".join(mids)
                     for line in head.split("\n"))
    body = "\n".join([head] + [s.rstrip("\n") for s in [audio, *extra] + [s for s in sections if s is not audio]])
    return body.replace("\n", "\r\n") + "\r\n"


async def test_an_offer_publishing_hundreds_of_tracks_is_refused_and_the_call_keeps_its_media(
        start_server, connect, monkeypatch):
    """Issue 8 item 2: a 470-section offer (the attack) and a 3-microphone offer are refused with their reasons;
    nothing is published, nobody is re-offered, and the other participants' audio keeps flowing."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    info, _ = await start_server(media=True)
    peers = [TonePeer(recv_video=True), TonePeer(recv_video=True), TonePeer(recv_video=True)]
    events: list[list[dict[str, Any]]] = [[], []]
    try:
        async with connect(info) as a, connect(info) as b, connect(info) as attacker, \
                trio.open_nursery() as nursery:
            for client, peer, log in zip((a, b), peers, events, strict=False):
                await client.request("join", {"channel_id": "e2e"}, expect="join_ack")
                await client.send("unmute")
                await client.send("sdp", {"type": "offer", "sdp": await peer.offer()})
                nursery.start_soon(_signal_pump, client, peer, log)
            await _until(lambda: peers[0].frames > 25 and peers[1].frames > 25)
            await attacker.request("join", {"channel_id": "e2e"}, expect="join_ack")
            await attacker.send("unmute")
            real = await peers[2].offer()
            flood = _with_audio_sections(real, 470)
            assert len(flood) > 200_000
            for offer, reason in ((flood, "too_many_sections"), (_with_audio_sections(real, 3), "too_many_tracks")):
                heard = [p.frames for p in peers[:2]]
                error = await attacker.request("sdp", {"type": "offer", "sdp": offer}, expect="error")
                assert (error["code"], error["action"]) == ("sdp_rejected", "sdp")
                assert reason in error["message"]
                await _until(lambda h=heard: all(p.frames > n + 25 for p, n in zip(peers, h, strict=False)),
                             timeout=10)  # a and b still hear each other
            sid = attacker.session_id
            assert info.hub.machine.participant(sid).tracks == ()  # nothing was published, so nothing was routed
            assert not any(e["type"] == "error" for log in events for e in log)
            nursery.cancel_scope.cancel()
    finally:
        for peer in peers:
            await peer.close()
