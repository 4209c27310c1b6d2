"""The media-plane RPC (adapters/media/remote.py): a real MediaPlane behind a socketpair, driven by RemotePlane as
the hub drives the in-process plane; what comes back is the same media events, in the same dataclasses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from callsd.adapters.media.events import MediaStateChanged, SendSignal, SessionClosed, TrackPublished
from callsd.adapters.media.plane import MediaPlane, PlaneConfig
from callsd.adapters.media.remote import (
    EventPipe,
    RemotePlane,
    RpcError,
    SignalRejected,
    _Reader,
    serve_plane_rpc,
)
from callsd.core.calls.events import TrackKind
from callsd.core.calls.outputs import RouteAdded, RoutePaused

OFFER = (Path(__file__).parent / "data" / "offer_aiortc.sdp").read_text()


async def _until(predicate: Any, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def _pair(nursery: trio.Nursery, got: list[Any]) -> tuple[RemotePlane, MediaPlane, Any]:
    a, b = trio.socket.socketpair()
    pipe = EventPipe()
    plane = MediaPlane(PlaneConfig(ice_port_udp=0), pipe.emit)
    await nursery.start(plane.serve)
    server_stream = trio.SocketStream(b)
    nursery.start_soon(serve_plane_rpc, server_stream, plane, pipe)
    remote = RemotePlane(trio.SocketStream(a), got.append, name="test worker")
    address = await nursery.start(remote.serve)
    assert tuple(address) == plane.address
    return remote, plane, server_stream


async def test_rpc_round_trip_answers_publishes_routes_and_counts(nursery: trio.Nursery) -> None:
    got: list[Any] = []
    remote, plane, _ = await _pair(nursery, got)
    remote.open_session("s1", "c1")
    remote.open_session("s2", "c1")
    remote.handle_signal("s1", {"type": "offer", "sdp": OFFER})
    await _until(lambda: any(isinstance(e, TrackPublished) for e in got))
    answer = next(e for e in got if isinstance(e, SendSignal))
    assert answer.session_id == "s1" and answer.msg["type"] == "answer"
    assert f" {plane.address[1]} typ host" in answer.msg["sdp"]  # the worker's own RTC port
    track = next(e for e in got if isinstance(e, TrackPublished))
    assert track.kind is TrackKind.AUDIO and track.session_id == "s1"

    # Core routing outputs cross in the core's codec and reach the worker's forwarding table.
    remote.apply([RouteAdded(channel_id="c1", track_id=track.track_id, kind=TrackKind.AUDIO, publisher_id="s1",
                             receiver_id="s2", paused=True)])
    await _until(lambda: track.track_id in plane.sessions["s2"].routes_in)
    remote.apply([RoutePaused(channel_id="c1", track_id=track.track_id, publisher_id="s1", receiver_id="s2")])
    remote.set_screen_stream("s2", "screen-x")
    await _until(lambda: plane.sessions["s2"].screen_stream == "screen-x")

    await remote.refresh_counters()
    assert remote.counters["offers_in"] == 1 and remote.counters["answers_out"] == 1
    assert "rtp_in" in remote.counters  # the endpoint's counters come along

    remote.close_session("s2")
    await _until(lambda: "s2" not in plane.sessions)


async def test_rejected_sdp_comes_back_as_an_event_not_an_exception(nursery: trio.Nursery) -> None:
    got: list[Any] = []
    remote, plane, _ = await _pair(nursery, got)
    remote.open_session("s1", "c1")
    remote.handle_signal("s1", {"type": "offer", "sdp": "v=0\r\nnonsense\r\n"})  # does not raise
    remote.handle_signal("nobody", {"type": "offer", "sdp": OFFER})
    await _until(lambda: len([e for e in got if isinstance(e, SignalRejected)]) == 2)
    first, second = [e for e in got if isinstance(e, SignalRejected)]
    assert first.session_id == "s1" and first.action == "sdp" and first.reason
    assert second.session_id == "nobody" and second.reason == "unknown session"
    await remote.refresh_counters()
    assert remote.counters["sdp_rejected"] == 1


async def test_a_dead_worker_closes_its_sessions_and_refuses_later_signals(nursery: trio.Nursery) -> None:
    got: list[Any] = []
    remote, plane, server_stream = await _pair(nursery, got)
    remote.open_session("s1", "c1")
    remote.open_session("s2", "c1")
    remote.close_session("s2")
    await remote.refresh_counters()
    await server_stream.aclose()  # the worker's end goes away
    await _until(lambda: not remote.alive)
    assert [e for e in got if isinstance(e, SessionClosed)] == [
        SessionClosed(session_id="s1", reason="media_worker_lost")]
    # the call hears at once, so the client restarts ICE before its own checks notice (docs/client.md)
    assert [e for e in got if isinstance(e, MediaStateChanged) and e.state != "connected"] == [
        MediaStateChanged(session_id="s1", state="disconnected", reason="media_worker_lost", detail="")]
    remote.handle_signal("s1", {"type": "offer", "sdp": OFFER})
    assert isinstance(got[-1], SignalRejected) and got[-1].reason == "media worker unavailable"
    assert remote.counters  # the last snapshot is kept


async def test_a_garbage_frame_is_an_rpc_error() -> None:
    a, b = trio.socket.socketpair()
    async with trio.SocketStream(a) as sa, trio.SocketStream(b) as sb:
        await sa.send_all(b"\x00\x00\x00\x03abc")
        with pytest.raises(RpcError):
            await _Reader(sb).next()
