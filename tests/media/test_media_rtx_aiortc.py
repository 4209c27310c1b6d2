"""RTX and NACK with real aiortc peers (which implement RFC 4588) through the media plane, on loopback.

Loss is injected inside the aiortc peers, so the server runs its normal fast path: the publisher drops every 20th
VP8 packet after keeping it in its retransmission history (as a lossy uplink would), and the receiver discards every
20th VP8 packet it gets (a lossy downlink). The server must then NACK the publisher for the holes and forward its
RTX repairs, and answer the receiver's NACKs from its cache with RTX packets: video keeps decoding at the receiver.
"""

from __future__ import annotations

from typing import Any

import pytest
from callsd.adapters.media.plane import MediaPlane, PlaneConfig
from callsd.core.calls import events as ev

from .conftest import AiortcClient, CallHarness, wait_until

pytestmark = pytest.mark.slow

DROP_EVERY = 20


class LossyPublisher:
    """Wraps the publisher's DTLS transport ``_send_rtp``: drop every n-th VP8 packet on its media SSRC."""

    def __init__(self, transport: Any, video_pt: int) -> None:
        self.send = transport._send_rtp
        self.video_pt = video_pt
        self.seen = self.dropped = 0

    async def __call__(self, data: bytes) -> None:
        if len(data) > 12 and data[1] & 0x7F == self.video_pt:
            self.seen += 1
            if self.seen % DROP_EVERY == 0:
                self.dropped += 1
                return
        await self.send(data)


class LossyReceiver:
    """Wraps a receiver's ``_handle_rtp_packet``: discard every n-th VP8 packet, count RTX arrivals."""

    def __init__(self, receiver: Any, video_pt: int, rtx_pt: int) -> None:
        self.handle = receiver._handle_rtp_packet
        self.video_pt, self.rtx_pt = video_pt, rtx_pt
        self.seen = self.dropped = self.rtx = 0

    async def __call__(self, packet: Any, arrival_time_ms: int) -> None:
        if packet.payload_type == self.video_pt:
            self.seen += 1
            if self.seen % DROP_EVERY == 0:
                self.dropped += 1
                return
        elif packet.payload_type == self.rtx_pt:
            self.rtx += 1
        await self.handle(packet, arrival_time_ms=arrival_time_ms)


@pytest.mark.parametrize("fast_path", ["native", "python"])
async def test_rtx_repairs_loss_on_the_uplink_and_the_downlink(loopback_only: None, fast_path: str) -> None:
    """On both fast paths: RTX is handled in Python beside the native step (ADR 0019)."""
    h = CallHarness()
    h.plane = MediaPlane(PlaneConfig(ice_port_udp=0, fast_path=fast_path), h._emit, report_interval=0.5)
    pub = AiortcClient("pub", video=True)
    sub = AiortcClient("sub", audio_hz=440)
    async with h.running([pub, sub], timeout=120):
        await h.join("P", pub)
        await h.join("S", sub)
        h.core(ev.Unmute(at=h.now(), session_id="S"))
        await wait_until(lambda: "P_0" in h.plane.tracks, what="video published", diag=h.diagnostics)
        track = h.plane.tracks["P_0"]
        assert track.rtx_ssrc is not None and track.rtx_pt is not None, "the publisher negotiated RTX"
        await wait_until(lambda: sub.frames.get("P_0", 0) > 5, timeout=40, what="first video frames",
                         diag=h.diagnostics)
        route = track.routes["S"]
        assert route.rtx_pt is not None, "the receiver negotiated RTX"

        pub_vp8 = next(iter(track.codecs))
        sub_vp8 = next(iter(route.pt_map.values()))
        lossy_up: dict[str, LossyPublisher] = {}
        lossy_down: dict[str, LossyReceiver] = {}

        async def break_uplink() -> None:
            transport = pub.pc.getSenders()[0].transport
            lossy_up["p"] = LossyPublisher(transport, pub_vp8)
            transport._send_rtp = lossy_up["p"]

        async def break_downlink() -> None:
            for t in sub.pc.getTransceivers():
                if t.receiver.track is not None and t.receiver.track.id == "P_0":
                    lossy_down["s"] = LossyReceiver(t.receiver, sub_vp8, route.rtx_pt)
                    t.receiver._handle_rtp_packet = lossy_down["s"]

        await pub.call(break_uplink)
        await sub.call(break_downlink)
        start_frames = sub.frames["P_0"]
        pli_before = h.plane.counters["pli_out"]
        up, down = lossy_up["p"], lossy_down["s"]

        def repaired() -> bool:
            c = h.plane.counters
            # the uplink's holes are NACKed by the server: on the receiver's NACK for them (the receiver sees
            # the hole first, here), else on its own scan (nack_out; unit-tested in test_media_plane.py)
            return (up.dropped >= 5 and down.dropped >= 5 and c["nack_forwarded"] + c["nack_out"] > 0
                    and c["rtx_in"] >= 3
                    and c["rtx_out"] >= 3 and down.rtx >= 3 and sub.frames["P_0"] - start_frames >= 60)

        await wait_until(repaired, timeout=60, what="loss repaired by NACK/RTX both ways", diag=lambda: (
            f"{h.diagnostics()}\nup dropped={up.dropped} down dropped={down.dropped} rtx at sub={down.rtx}"))
        # video kept decoding through ~5 % loss without falling back on key frames
        assert h.plane.counters["pli_out"] - pli_before <= 3
        # the receiver's REMB (aiortc sends it for video) and its reports' loss feed its bandwidth estimate
        await wait_until(lambda: h.plane.counters["remb_in"] > 0 and h.plane.counters["loss_reports"] > 0,
                         what="REMB and loss reports from the receiver", diag=h.diagnostics)
        assert h.plane.estimates.estimate("S") is not None
