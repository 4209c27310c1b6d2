"""A one-participant aiortc client for the namespace tests, run inside a client namespace with ``ip netns exec``.

    python net_client.py --ws ws://198.51.100.10:8080/api/v1/websocket --token T --channel c --seconds 40

It joins the channel over the signaling WebSocket (docs/protocol.md), unmutes, publishes a 440 Hz tone from an
aiortc peer connection (host candidates only: whatever address the namespace has, NAT or not), answers the server's
offers, decodes what it receives, and prints one JSON object on stdout when done:

    {"session_id": ..., "frames": N, "loud_frames": M, "events": [[type, data], ...], "ice_state": "completed"}

``loud_frames`` counts decoded audio frames whose RMS is well above silence: proof the other participant's tone
arrived, not merely comfort noise. The client stops when it has heard ``--want`` loud frames and kept the call up
``--hold`` seconds more (so the other participant hears it too), or at ``--seconds``; every wait is bounded. With
``--done-dir D --peers N`` (several clients started together) each one leaves a file in D once it has heard enough
and stays until N files are there, so a fast client does not leave before a slow one has heard it.
aiortc runs on its own asyncio loop in a thread; the signaling side is Trio, like the server.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import sys
import threading
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url


class AudioPeer:
    """An aiortc RTCPeerConnection with a tone microphone, on an asyncio loop in a thread."""

    def __init__(self, ice_servers: list[dict[str, Any]]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ice_servers = ice_servers
        self.pc: Any = None
        self.frames = 0
        self.loud_frames = 0

    async def call(self, coro_fn: Any, timeout: float = 20) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro_fn(), self.loop)
        return await trio.to_thread.run_sync(lambda: future.result(timeout), abandon_on_cancel=True)

    async def offer(self) -> str:
        async def go() -> str:
            import av
            import numpy as np
            from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
            from aiortc.mediastreams import MediaStreamTrack

            class Tone(MediaStreamTrack):
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
                    pcm = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
                    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
                    frame.sample_rate, frame.pts, frame.time_base = 48000, self.n * 960, fractions.Fraction(1, 48000)
                    self.n += 1
                    return frame

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
                        self.frames += 1
                        pcm = frame.to_ndarray().astype(np.float64)
                        if pcm.size and math.sqrt(float((pcm * pcm).mean())) > 1000:
                            self.loud_frames += 1

                asyncio.ensure_future(consume())

            self.pc.addTrack(Tone())
            await self.pc.setLocalDescription(await self.pc.createOffer())
            return str(self.pc.localDescription.sdp)

        return str(await self.call(go))

    async def accept(self, kind: str, sdp: str) -> str | None:
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


async def main(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"session_id": "", "frames": 0, "loud_frames": 0, "events": [], "ice_state": "new"}
    url = args.ws + (f"?token={args.token}" if args.token else "")
    async with open_websocket_url(url) as ws:

        async def send(kind: str, data: dict[str, Any] | None = None) -> None:
            await ws.send_message(json.dumps({"type": kind, "data": data or {}}))

        async def expect(kind: str) -> dict[str, Any]:
            with trio.fail_after(10):
                while True:
                    msg = json.loads(await ws.get_message())
                    result["events"].append([msg["type"], msg["data"]])
                    if msg["type"] == kind:
                        return msg["data"]  # type: ignore[no-any-return]

        result["session_id"] = (await expect("hello"))["session_id"]
        await send("join", {"channel_id": args.channel})
        ack = await expect("join_ack")
        await send("unmute")
        peer = AudioPeer(ack.get("ice_servers") or [])
        try:
            await send("sdp", {"type": "offer", "sdp": await peer.offer()})
            heard_at: float | None = None
            with trio.move_on_after(args.seconds):
                while True:
                    msg = None
                    with trio.move_on_after(0.2):
                        msg = json.loads(await ws.get_message())
                    # handled outside the 0.2 s scope: an answer that takes longer under load (aiortc's thread)
                    # must not be abandoned half way, or the server waits for it forever and forwards nothing
                    if msg is not None and msg["type"] == "signal" and msg["data"].get("type") in ("offer", "answer"):
                        answer = await peer.accept(msg["data"]["type"], msg["data"]["sdp"])
                        if answer is not None:
                            await send("sdp", {"type": "answer", "sdp": answer})
                    elif msg is not None:
                        result["events"].append([msg["type"], msg["data"]])
                    now = trio.current_time()
                    if heard_at is None and peer.loud_frames >= args.want:
                        heard_at = now
                        if args.done_dir:
                            (Path(args.done_dir) / result["session_id"]).touch()
                    everyone = not args.done_dir or len(list(Path(args.done_dir).iterdir())) >= args.peers
                    if heard_at is not None and everyone and now - heard_at >= args.hold:
                        break
        finally:
            result.update(frames=peer.frames, loud_frames=peer.loud_frames, ice_state=peer.ice_state)
            await peer.close()
        await send("leave")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ws", required=True, help="the server's WebSocket URL")
    parser.add_argument("--token", default="")
    parser.add_argument("--channel", default="net")
    parser.add_argument("--seconds", type=float, default=40, help="give up after this long")
    parser.add_argument("--want", type=int, default=50, help="loud frames to hear before finishing")
    parser.add_argument("--hold", type=float, default=3, help="seconds to stay after hearing enough")
    parser.add_argument("--done-dir", default="", help="a folder shared by clients started together")
    parser.add_argument("--peers", type=int, default=1, help="how many clients share --done-dir")
    out = trio.run(main, parser.parse_args())
    sys.stdout.write(json.dumps(out) + "\n")
