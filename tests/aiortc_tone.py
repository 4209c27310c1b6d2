"""One aiortc participant with a 440 Hz microphone, shared by the end-to-end tests and the namespace client.

aiortc runs on its own asyncio loop in a thread (the server and the tests are Trio); every call into it is bounded.
``frames`` counts decoded audio frames from the other participants, ``loud_frames`` those whose RMS is well above
silence: proof a tone arrived, not merely comfort noise.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

LOUD_RMS = 1000  # the tone is sent at amplitude 8000 (RMS ~5,660); comfort noise and silence stay far below


def sine_track(hz: float, amplitude: int) -> Any:
    """An aiortc audio source: a ``hz`` sine at ``amplitude`` in 20 ms mono frames at 48 kHz, paced by the loop's
    clock. Call it inside the aiortc loop (aiortc and av are imported there, not by the Trio tests)."""
    import av
    import numpy as np
    from aiortc.mediastreams import MediaStreamTrack

    class SineTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.start: float | None = None

        async def recv(self) -> Any:
            now = asyncio.get_running_loop().time()
            self.start = now if self.start is None else self.start
            await asyncio.sleep(max(0.0, self.start + self.n * 0.02 - now))
            t = (np.arange(960) + self.n * 960) / 48000
            pcm = (np.sin(2 * math.pi * hz * t) * amplitude).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, self.n * 960, fractions.Fraction(1, 48000)
            self.n += 1
            return frame

    return SineTrack()


class TonePeer:
    """An aiortc RTCPeerConnection that sends a tone and decodes what it receives."""

    def __init__(self, ice_servers: Sequence[dict[str, Any]] = (), *, recv_video: bool = False) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ice_servers = list(ice_servers)
        self.recv_video = recv_video
        self.pc: Any = None
        self.frames = 0
        self.loud_frames = 0

    async def call(self, coro_fn: Callable[[], Awaitable[Any]], timeout: float = 20) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro_fn(), self.loop)  # type: ignore[arg-type]
        return await trio.to_thread.run_sync(lambda: future.result(timeout), abandon_on_cancel=True)

    async def offer(self) -> str:
        async def go() -> str:
            import numpy as np
            from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

            servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                       for s in self.ice_servers]
            self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))

            @self.pc.on("track")
            def on_track(track: Any) -> None:
                async def consume() -> None:
                    while True:
                        try:
                            frame = await track.recv()
                        except Exception:
                            return
                        if track.kind != "audio":
                            continue
                        self.frames += 1
                        pcm = frame.to_ndarray().astype(np.float64)
                        if pcm.size and math.sqrt(float((pcm * pcm).mean())) > LOUD_RMS:
                            self.loud_frames += 1

                asyncio.ensure_future(consume())

            self.pc.addTrack(sine_track(440, 8000))
            if self.recv_video:
                self.pc.addTransceiver("video", direction="recvonly")
            await self.pc.setLocalDescription(await self.pc.createOffer())
            return str(self.pc.localDescription.sdp)

        return str(await self.call(go))

    async def accept(self, kind: str, sdp: str) -> str | None:
        """Apply the server's offer (returning our answer) or answer (returning None)."""

        async def go() -> str | None:
            from aiortc import RTCSessionDescription

            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
            if kind == "answer":
                return None
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            return str(self.pc.localDescription.sdp)

        return await self.call(go)  # type: ignore[no-any-return]

    @property
    def ice_state(self) -> str:
        return str(self.pc.iceConnectionState) if self.pc is not None else "new"

    async def close(self) -> None:
        async def go() -> None:
            if self.pc is not None:
                await self.pc.close()

        try:
            await self.call(go, timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            await trio.to_thread.run_sync(self.thread.join, 5)
