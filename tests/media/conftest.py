"""Fixtures for the media-plane tests: a MediaPlane on an ephemeral loopback port, a real ``CallsMachine``, and
aiortc peers each running in its own thread with its own asyncio loop.

``CallHarness`` plays the server's part: it feeds the plane's ``TrackPublished``/``TrackUnpublished`` into the core
and applies the core's routing outputs back, and carries SDP between the plane and each client (a stand-in for
the signaling WebSocket).
"""

from __future__ import annotations

import asyncio
import fractions
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from aiortc_tone import sine_track
from callsd.adapters.media.events import (
    SendSignal,
    SessionClosed,
    SessionConnected,
    TrackPublished,
    TrackUnpublished,
    VoiceActivity,
)
from callsd.adapters.media.plane import MediaPlane, PlaneConfig
from callsd.core.calls import events as ev
from callsd.core.calls.machine import CallsMachine


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice gathers 127.0.0.1 and nothing else (it skips loopback by default)."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def make_tracks(audio_hz: float | None, video: bool) -> list[Any]:
    """Build aiortc source tracks (called inside the client's loop)."""
    import av
    import numpy as np
    from aiortc.mediastreams import MediaStreamTrack

    class FramesTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.t0: float | None = None

        async def recv(self) -> Any:
            loop = asyncio.get_running_loop()
            if self.t0 is None:
                self.t0 = loop.time()
            wait = self.t0 + self.n / 15 - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            img = np.full((120, 160, 3), (self.n * 7) % 255, dtype=np.uint8)
            img[:, (self.n * 3) % 160] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = self.n * 6000
            frame.time_base = fractions.Fraction(1, 90000)
            self.n += 1
            return frame

    tracks: list[Any] = []
    if audio_hz is not None:
        tracks.append(sine_track(audio_hz, 12000))
    if video:
        tracks.append(FramesTrack())
    return tracks


class AiortcClient:
    """One aiortc RTCPeerConnection living in its own thread and asyncio loop; driven from Trio."""

    def __init__(self, name: str, *, audio_hz: float | None = None, video: bool = False) -> None:
        self.name = name
        self.audio_hz = audio_hz
        self.video = video
        self.frames: dict[str, int] = {}  # remote track id (the server's track_id) -> decoded frames
        self.kinds: dict[str, str] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"aiortc-{name}", daemon=True)
        self.thread.start()
        self.pc: Any = None
        self.senders: list[Any] = []
        self._tasks: list[asyncio.Task[Any]] = []

    async def call(self, fn: Callable[[], Any], timeout: float = 20.0) -> Any:
        fut = asyncio.run_coroutine_threadsafe(fn(), self.loop)
        return await trio.to_thread.run_sync(lambda: fut.result(timeout), abandon_on_cancel=True)

    async def _setup(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            self.frames.setdefault(track.id, 0)
            self.kinds[track.id] = track.kind
            self._tasks.append(asyncio.ensure_future(self._consume(track)))

        for t in make_tracks(self.audio_hz, self.video):
            self.senders.append(self.pc.addTrack(t))
        # aiortc gives a server-offered section of a kind it has no transceiver for its own transport, and only
        # the first such section is moved onto the BUNDLE transport; a recvonly transceiver of each kind avoids it
        if self.audio_hz is None:
            self.pc.addTransceiver("audio", direction="recvonly")
        if not self.video:
            self.pc.addTransceiver("video", direction="recvonly")

    async def _consume(self, track: Any) -> None:
        try:
            while True:
                await track.recv()
                self.frames[track.id] = self.frames.get(track.id, 0) + 1
        except Exception:
            return

    async def offer(self) -> str:
        await self.call(self._setup)

        async def go() -> str:
            await self.pc.setLocalDescription(await self.pc.createOffer())
            return str(self.pc.localDescription.sdp)

        return str(await self.call(go))

    async def add_video_and_offer(self) -> str:
        """Start sending a (screen) video track and make a new offer, as a client starting a share does."""

        async def go() -> str:
            (track,) = make_tracks(None, True)
            self.senders.append(self.pc.addTrack(track))
            await self.pc.setLocalDescription(await self.pc.createOffer())
            return str(self.pc.localDescription.sdp)

        return str(await self.call(go))

    async def set_answer(self, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        async def go() -> None:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

        await self.call(go)

    async def answer(self, sdp: str) -> str:
        from aiortc import RTCSessionDescription

        async def go() -> str:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            return str(self.pc.localDescription.sdp)

        return str(await self.call(go))

    def directions(self) -> dict[str, str | None]:
        """Remote track id -> current direction of its transceiver (``inactive`` once the server dropped it)."""
        out: dict[str, str | None] = {}
        if self.pc is None:
            return out
        for t in self.pc.getTransceivers():
            track = t.receiver.track
            if track is not None:
                out[track.id] = t.currentDirection
        return out

    async def close(self) -> None:
        async def go() -> None:
            for task in self._tasks:
                task.cancel()
            if self.pc is not None:
                await self.pc.close()

        try:
            await self.call(go, timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            await trio.to_thread.run_sync(self.thread.join, 5)


class CallHarness:
    """The server's role: core machine + media plane + SDP relay to aiortc clients."""

    CHANNEL = "chan1"

    def __init__(self) -> None:
        self.machine = CallsMachine()
        self.plane = MediaPlane(PlaneConfig(ice_port_udp=0), self._emit, report_interval=0.5)
        self.clients: dict[str, AiortcClient] = {}
        self.events: list[Any] = []
        self.voice: list[VoiceActivity] = []
        self.connected: set[str] = set()
        self.closed: dict[str, str] = {}
        self.errors: list[BaseException] = []
        self._send, self._recv = trio.open_memory_channel[Any](1000)
        self._t = 1_000_000
        self._pump_scope = trio.CancelScope()

    def now(self) -> int:
        self._t += 10
        return self._t

    def _emit(self, event: Any) -> None:
        self.events.append(event)
        self._send.send_nowait(event)

    def core(self, event: ev.InputEvent) -> list[Any]:
        outs = self.machine.handle(event)
        self.plane.apply(outs)
        return outs

    async def pump(self) -> None:
        with self._pump_scope:
            async for e in self._recv:
                try:
                    await self._dispatch(e)
                except Exception as exc:
                    if getattr(e, "session_id", None) not in self.clients:
                        continue  # that client left while we talked to it
                    self.errors.append(exc)  # surfaced by the test
                    raise

    @asynccontextmanager
    async def running(self, clients: list[Any], *, timeout: float = 60) -> AsyncIterator[None]:
        """The plane serving and the core pump running for the body, all of it within ``timeout`` seconds;
        afterwards the harness stops and every client in ``clients`` is closed."""
        with trio.fail_after(timeout):
            async with trio.open_nursery() as nursery:
                await nursery.start(self.plane.serve)
                nursery.start_soon(self.pump)
                try:
                    yield
                finally:
                    self.stop()
                    for x in clients:
                        await x.close()
                    nursery.cancel_scope.cancel()

    def stop(self) -> None:
        """Stop relaying (before the clients are closed at the end of a test)."""
        self._pump_scope.cancel()

    async def _dispatch(self, e: Any) -> None:
        if isinstance(e, SendSignal):
            client = self.clients.get(e.session_id)
            if client is None:
                return
            if e.msg["type"] == "answer":
                await client.set_answer(e.msg["sdp"])
            else:
                answer = await client.answer(e.msg["sdp"])
                if e.session_id in self.plane.sessions:
                    self.plane.handle_signal(e.session_id, {"type": "answer", "sdp": answer})
        elif isinstance(e, TrackPublished):
            self.core(ev.PublishTrack(at=self.now(), session_id=e.session_id, track_id=e.track_id, kind=e.kind))
        elif isinstance(e, TrackUnpublished):
            self.core(ev.UnpublishTrack(at=self.now(), session_id=e.session_id, track_id=e.track_id))
        elif isinstance(e, VoiceActivity):
            self.voice.append(e)
        elif isinstance(e, SessionConnected):
            self.connected.add(e.session_id)
        elif isinstance(e, SessionClosed):
            self.closed[e.session_id] = e.reason

    async def join(self, sid: str, client: AiortcClient) -> None:
        self.clients[sid] = client
        self.plane.open_session(sid, self.CHANNEL)
        self.core(ev.JoinCall(at=self.now(), channel_id=self.CHANNEL, session_id=sid, user_id=f"u-{sid}",
                              call_id="call1"))
        offer = await client.offer()
        self.plane.handle_signal(sid, {"type": "offer", "sdp": offer})

    async def leave(self, sid: str) -> None:
        client = self.clients.pop(sid)
        self.core(ev.LeaveCall(at=self.now(), session_id=sid))
        self.plane.close_session(sid)
        await client.close()

    def diagnostics(self) -> str:
        lines = [f"connected={sorted(self.connected)} closed={self.closed} errors={self.errors}",
                 f"plane={self.plane.counters}", f"transport={self.plane.endpoint.counters.snapshot()}"]
        lines.append("tracks: " + ", ".join(
            f"{t.track_id}(ssrc={t.ssrc} in={t.packets} out={[r.packets for r in t.routes.values()]}"
            f" pt={list(t.codecs)} map={[r.pt_map for r in t.routes.values()]})" for t in self.plane.tracks.values()))
        for sid, c in self.clients.items():
            if isinstance(c, AiortcClient):
                lines.append(f"{sid}: frames={c.frames} directions={c.directions()}")
        lines.append("events=" + ", ".join(type(e).__name__ for e in self.events))
        return "\n".join(lines)

    def track_of(self, sid: str, kind: str) -> str:
        for t in self.plane.tracks.values():
            if t.session.session_id == sid and t.media == kind:
                return t.track_id
        raise KeyError((sid, kind))


async def wait_until(
    cond: Callable[[], bool], timeout: float = 20.0, what: str = "", diag: Callable[[], str] | None = None
) -> None:
    """Poll ``cond`` every 50 ms; fail the test after ``timeout`` seconds (with ``diag()`` in the message)."""
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await trio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or cond}\n{diag() if diag else ''}")
