"""Chromium publishes simulcast VP8 (two RID layers, 160 and 320 pixels wide, small enough that the browser's
start bitrate enables both: it gets no delay-based feedback from the server); an aiortc receiver gets one layer at a time through the
plane, switched on key frames when its estimate changes, and keeps decoding across the switches."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest
import trio
from callsd.adapters.media.plane import MediaPlane, PlaneConfig
from callsd.core.calls import events as ev

from .conftest import AiortcClient, CallHarness, wait_until
from .test_media_chromium import CHROMIUM, ChromiumClient

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIMULCAST_PAGE_JS = """
async () => {
  const pc = new RTCPeerConnection({iceServers: []});
  window.pc = pc;
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}});
  pc.addTransceiver(stream.getVideoTracks()[0], {direction: 'sendonly', streams: [stream], sendEncodings: [
    {rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 80000},
    {rid: 'f', scaleResolutionDownBy: 2, maxBitrate: 200000},
  ]});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
}
"""


class SimulcastChromium(ChromiumClient):
    page_js = SIMULCAST_PAGE_JS


class SizingClient(AiortcClient):
    """An aiortc receiver that records the width of every decoded video frame."""

    def __init__(self, name: str) -> None:
        super().__init__(name, audio_hz=440)
        self.widths: list[int] = []

    async def _consume(self, track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames[track.id] = self.frames.get(track.id, 0) + 1
                if track.kind == "video":
                    self.widths.append(int(frame.width))
        except Exception:
            return


async def test_a_receiver_switches_simulcast_layers_with_its_estimate(loopback_only: None) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Debian's chromium is not installed: run scripts/system-deps.sh (make test does)", pytrace=False)
    h = CallHarness()
    h.plane = MediaPlane(PlaneConfig(ice_port_udp=0), h._emit, report_interval=0.5)
    browser = SimulcastChromium()
    peer = SizingClient("s")
    estimate: list[int | None] = [None]
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            await nursery.start(h.plane.serve)
            nursery.start_soon(h.pump)
            try:
                await h.join("W", browser)  # type: ignore[arg-type]
                await h.join("S", peer)
                h.core(ev.Unmute(at=h.now(), session_id="S"))
                await wait_until(lambda: "W_0" in h.plane.simulcast.tracks, timeout=30, what="simulcast track",
                                 diag=h.diagnostics)
                st = h.plane.simulcast.tracks["W_0"]
                # the receiver's estimate, as the layer choice reads it (a limited link, then a free one)
                h.plane.simulcast._estimate = lambda sid: estimate[0]  # noqa: SLF001
                h.plane.simulcast._proven = None  # noqa: SLF001 - moves up read that estimate too (ADR 0025)
                await wait_until(lambda: len(st.ssrcs) == 2, timeout=40, what="both layers sending",
                                 diag=lambda: f"{h.diagnostics()}\nrates={st.rates} ssrcs={st.ssrcs}")
                await wait_until(lambda: len(peer.widths) > 10 and peer.widths[-1] == 320, timeout=40,
                                 what="the full layer", diag=lambda: f"{h.diagnostics()}\nwidths={peer.widths[-5:]} "
                                 f"rates={st.rates}")
                estimate[0] = 100_000
                await wait_until(lambda: peer.widths[-1] == 160, timeout=30, what="the low layer",
                                 diag=lambda: f"{h.diagnostics()}\nwidths={peer.widths[-5:]} rates={st.rates}")
                low_at = len(peer.widths)
                estimate[0] = 50_000_000
                await wait_until(lambda: peer.widths[-1] == 320, timeout=30, what="back to the full layer",
                                 diag=lambda: f"{h.diagnostics()}\nwidths={peer.widths[-5:]} rates={st.rates} "
                                 f"{[(r.switcher.target, r.switcher.current, r.choice) for r in st.routes.values()]}"
                                 f" pli={st.last_pli} ssrcs={st.ssrcs}")
                assert len(peer.widths) > low_at
                assert h.plane.simulcast.switches >= 3
            finally:
                h.stop()
                await peer.close()
                await browser.close()
                nursery.cancel_scope.cancel()
    assert asyncio  # the clients run their own loops
