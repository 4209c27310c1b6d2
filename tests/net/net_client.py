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
import json
import sys
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script inside a namespace: tests/ holds the peer
from aiortc_tone import TonePeer  # noqa: E402


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
        peer = TonePeer(ack.get("ice_servers") or [])
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
