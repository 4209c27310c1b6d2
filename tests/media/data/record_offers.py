"""One-off: record real SDP offers from aiortc and Chromium into this folder.

Run with the project venv: ``.venv/bin/python tests/media/data/record_offers.py``. No network: the peer connections
only create offers (aiortc gathers no candidate without interfaces; Chromium may list host candidates, which the
tests ignore).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


async def aiortc_offer() -> str:
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())
    pc.addTrack(VideoStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


JS = """async () => {
  const pc = new RTCPeerConnection();
  const stream = new MediaStream();
  for (const kind of ['audio', 'video']) pc.addTransceiver(kind, {direction: 'sendrecv', streams: [stream]});
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  pc.close();
  return offer.sdp;
}"""


# What the web client's first offer holds (app/static/media.js): the microphone sending, the camera's section
# inactive, and eight receive slots (protocol 1.4, ADR 0020).
JS_SLOTS = """async () => {
  const pc = new RTCPeerConnection();
  const stream = new MediaStream();
  pc.addTransceiver('audio', {direction: 'sendonly', streams: [stream]});
  pc.addTransceiver('video', {direction: 'inactive'});
  for (let n = 0; n < 8; n++) pc.addTransceiver('audio', {direction: 'recvonly'});
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  pc.close();
  return offer.sdp;
}"""


def chromium_offer(script: str = JS) -> str:
    from playwright.sync_api import sync_playwright

    args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection", "--disable-background-networking", "--no-sandbox",
            "--disable-gpu", "--disable-component-update", "--no-first-run", "--disable-sync"]
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium", headless=True,
                                                   args=args)
        try:
            page = ctx.new_page()
            page.goto("about:blank")
            return str(page.evaluate(script))
        finally:
            ctx.close()


if __name__ == "__main__":
    import sys

    if "--chromium-only" not in sys.argv and "--slots-only" not in sys.argv:
        (HERE / "offer_aiortc.sdp").write_text(asyncio.run(aiortc_offer()))
    if "--slots-only" not in sys.argv:
        (HERE / "offer_chromium.sdp").write_text(chromium_offer())
    (HERE / "offer_chromium_slots.sdp").write_text(chromium_offer(JS_SLOTS))
    print("recorded", sorted(p.name for p in HERE.glob("*.sdp")))
