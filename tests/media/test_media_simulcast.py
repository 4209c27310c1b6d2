"""Simulcast through the media plane with fake peers: RID learning, one layer per receiver, switches on key frames
with seamless numbering, the receiver's estimate choosing the layer, per-layer PLIs, NACKs in receiver numbering."""

from __future__ import annotations

import struct
import time
from typing import Any

from callsd.core.calls.events import TrackKind
from callsd.core.wire import rtcp
from callsd.core.wire.rtx import unwrap_rtx, wrap_rtx
from callsd.core.wire.simulcast_sdp import REPAIRED_RID_URI, RID_URI

from .test_media_plane import FakePeer, Rig, offer

SSRCS = {"q": 0x1000, "h": 0x2000, "f": 0x3000}
SIZES = {"q": 100, "h": 400, "f": 1200}


def simulcast_offer() -> str:
    text = offer(("video", "0", "sendrecv", 0), ufrag="uA")
    extra = [f"a=extmap:10 {RID_URI}", f"a=extmap:11 {REPAIRED_RID_URI}", "a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f"]
    return text + "\r\n".join(extra) + "\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rig() -> tuple[Rig, FakePeer, FakePeer, Clock]:
    r = Rig()
    clock = Clock()
    r.plane.simulcast._clock = clock  # noqa: SLF001 - virtual time for the layer rates and PLI throttle
    r.plane.open_session("A", "chan")
    r.plane.handle_signal("A", {"type": "offer", "sdp": simulcast_offer()})
    a = FakePeer("A")
    r.peers["A"] = a
    r.plane.on_connected(a)  # type: ignore[arg-type]
    b = r.join("B", ("audio", "0", "sendrecv", 2))
    r.route("A_0", "A", "B", kind=TrackKind.VIDEO)
    r.accept("B")
    return r, a, b, clock


def layer_packet(rid: str, seq: int, frame: int, *, key: bool = False) -> bytes:
    ext = b"\xbe\xde\x00\x01" + bytes([10 << 4]) + rid.encode() + b"\x00\x00"
    vp8 = bytes([0x90, 0xC0]) + struct.pack("!H", 0x8000 | (frame + 100 * len(rid) * ord(rid)) & 0x7FFF) + \
        bytes([frame & 0xFF]) + bytes([0x00 if key else 0x01])
    body = vp8 + bytes(SIZES[rid] - len(vp8))
    return struct.pack("!BBHII", 0x90, 96, seq & 0xFFFF, (frame * 3000 + ord(rid)) & 0xFFFFFFFF, SSRCS[rid]) + ext + body


class Publisher:
    def __init__(self, r: Rig, a: FakePeer, clock: Clock) -> None:
        self.r, self.a, self.clock = r, a, clock
        self.seq = {"q": 0, "h": 30000, "f": 60000}
        self.frame = 0

    def frames(self, n: int, key: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        for _ in range(n):
            self.frame += 1
            for rid in ("q", "h", "f"):
                self.seq[rid] += 1
                self.r.plane.on_rtp(self.a, layer_packet(rid, self.seq[rid], self.frame, key=rid in key))  # type: ignore
            self.clock.now += 1 / 30
            key = set()


def seqs(peer: FakePeer) -> list[int]:
    return [struct.unpack_from("!H", p, 2)[0] for p in peer.rtp]


def plis(peer: FakePeer) -> list[int]:
    return [x.media_ssrc for p in peer.rtcp for x in rtcp.parse_rtcp(p) if isinstance(x, rtcp.Pli)]


def test_a_receiver_without_an_estimate_gets_the_top_layer_from_its_key_frame_on() -> None:
    r, a, b, clock = rig()
    pub = Publisher(r, a, clock)
    pub.frames(5)
    assert b.rtp == [] and SSRCS["f"] in plis(a)  # waiting for a key frame of the top layer, asked for one
    assert r.plane.counters["drop_unknown_ssrc"] == 0
    pub.frames(1, key={"f"})
    pub.frames(10)
    assert len(b.rtp) == 11 and all(len(p) > 1000 for p in b.rtp)
    out = seqs(b)
    assert out == [(out[0] + i) & 0xFFFF for i in range(11)]


def test_a_low_estimate_moves_the_receiver_down_on_a_key_frame_seamlessly() -> None:
    r, a, b, clock = rig()
    pub = Publisher(r, a, clock)
    pub.frames(2)  # every layer is seen sending before the first key frames
    pub.frames(1, key={"q", "h", "f"})
    pub.frames(40)  # a window passes: rates ~24, ~96, ~288 kbit/s
    assert len(b.rtp) == 41
    remb = rtcp.Feedback(packet_type=206, fmt=15, sender_ssrc=9, media_ssrc=0,
                         fci=b"REMB" + bytes([0]) + (150_000).to_bytes(3, "big"))
    r.plane.on_rtcp(b, rtcp.build_rtcp([remb]))  # type: ignore[arg-type]
    pli_before = len(plis(a))
    pub.frames(3)  # a move down stops the top layer at once (it no longer fits); a key frame is asked for
    assert len(b.rtp) == 41 and plis(a)[pli_before:] == [SSRCS["h"]]
    pub.frames(1, key={"h"})
    pub.frames(5)
    sizes = [len(p) for p in b.rtp[41:]]
    assert sizes and max(sizes) < 1000, "the middle layer (400-byte packets) after the switch"
    out = seqs(b)
    assert out == [(out[0] + i) & 0xFFFF for i in range(len(out))]
    assert r.plane.simulcast.switches == 2


def test_nacks_are_answered_in_the_receivers_numbering() -> None:
    r, a, b, clock = rig()
    pub = Publisher(r, a, clock)
    pub.frames(1, key={"f"})
    pub.frames(5)
    wanted = seqs(b)[2]
    sent: Any = b.rtp[2]
    route_ssrc = struct.unpack_from("!I", sent, 8)[0]
    r.plane.on_rtcp(b, rtcp.build_nack(sender_ssrc=9, media_ssrc=route_ssrc, lost=[wanted]))  # type: ignore
    # B negotiated RTX: the answer is on B's RTX stream (its SSRC and payload type), carrying the packet B missed
    route = next(iter(r.plane.sessions["B"].routes_in.values()))
    answer = b.rtp[-1]
    assert route.rtx_ssrc is not None and route.rtx_pt is not None
    assert struct.unpack_from("!I", answer, 8)[0] == route.rtx_ssrc and answer[1] & 0x7F == route.rtx_pt
    assert unwrap_rtx(answer, ssrc=route_ssrc, payload_type=sent[1] & 0x7F) == sent
    assert r.plane.counters["nack_answered"] == 1 and r.plane.counters["rtx_out"] == 1


def repair(rid: str, original: bytes, rtx_seq: int) -> bytes:
    """The publisher's RTX of ``original`` (a packet of layer ``rid``): its RTX SSRC, PT 97, repaired-RID."""
    wrapped = wrap_rtx(original, ssrc=SSRCS[rid] + 1, seq=rtx_seq, payload_type=97)
    assert wrapped is not None
    body = bytearray(wrapped)
    body[16] = (11 << 4) | (len(rid) - 1)  # the one-byte extension: the RID becomes the repaired RID (id 11)
    return bytes(body)


def test_a_publishers_rtx_repairs_its_layer_by_the_repaired_rid() -> None:
    r, a, b, clock = rig()
    pub = Publisher(r, a, clock)
    pub.frames(1, key={"f"})
    pub.frames(3)
    lost_frame = pub.frame + 1
    pub.seq["f"] += 1  # the next packet of f is lost on the way in (q and h still arrive)
    lost = layer_packet("f", pub.seq["f"], lost_frame)
    pub.frame += 1
    for rid in ("q", "h"):
        pub.seq[rid] += 1
        r.plane.on_rtp(a, layer_packet(rid, pub.seq[rid], lost_frame))  # type: ignore[arg-type]
    pub.frames(2)
    before = len(b.rtp)
    r.plane.on_rtp(a, repair("f", lost, 1))  # type: ignore[arg-type]
    assert len(b.rtp) == before + 1 and r.plane.counters["rtx_in"] == 1
    out = seqs(b)
    assert sorted(out) == [(min(out) + i) & 0xFFFF for i in range(len(out))]  # the hole is filled
    assert b.rtp[-1][-len(lost) + 20:] == lost[20:]
    assert r.plane.counters["drop_unknown_ssrc"] == 0
    # the same repair again (Chromium probes bandwidth with RTX copies of old packets): not forwarded twice
    r.plane.on_rtp(a, repair("f", lost, 2))  # type: ignore[arg-type]
    assert len(b.rtp) == before + 1 and r.plane.counters["drop_padding"] == 1
    # a padding probe on the same RTX stream (no original sequence number) is dropped, not forwarded
    probe = struct.pack("!BBHII", 0x90, 97, 2, 0, SSRCS["f"] + 1) + b"\xbe\xde\x00\x01" + bytes([(11 << 4)]) + \
        b"f\x00\x00"
    r.plane.on_rtp(a, probe)  # type: ignore[arg-type]
    assert len(b.rtp) == before + 1 and r.plane.counters["drop_padding"] == 2


def test_a_receivers_nack_for_what_the_publisher_never_delivered_goes_to_the_publisher() -> None:
    r, a, b, clock = rig()
    pub = Publisher(r, a, clock)
    pub.frames(1, key={"f"})
    pub.frames(3)
    pub.seq["f"] += 1  # lost on the way in: the route never sent it
    pub.frames(2)
    out = seqs(b)
    hole = next(s for s in range(out[0], out[-1]) if s not in out)
    route_ssrc = struct.unpack_from("!I", b.rtp[0], 8)[0]
    r.plane.on_rtcp(b, rtcp.build_nack(sender_ssrc=9, media_ssrc=route_ssrc, lost=[hole]))  # type: ignore
    nacks = [x for p in a.rtcp for x in rtcp.parse_rtcp(p) if isinstance(x, rtcp.Nack)]
    assert [(n.media_ssrc, list(n.lost)) for n in nacks] == [(SSRCS["f"], [pub.seq["f"] - 2])]
    assert r.plane.counters["nack_forwarded"] == 1


def test_sender_reports_of_a_simulcast_route_follow_the_timestamps_it_sent() -> None:
    r, a, b, clock = rig()
    pub = Publisher(r, a, clock)
    pub.frames(1, key={"f"})
    pub.frames(5)
    last = struct.unpack_from("!I", b.rtp[-1], 4)[0]
    route = next(iter(r.plane.sessions["B"].routes_in.values()))
    sent_at = clock.now - 1 / 30  # the publisher's clock moved on one frame after the last packet
    assert r.plane.simulcast.sr_timestamp(route, sent_at) == last
    assert r.plane.simulcast.sr_timestamp(route, sent_at + 0.5) == (last + 45_000) & 0xFFFFFFFF
    b.rtcp.clear()
    before = r.plane.simulcast.sr_timestamp(route, time.monotonic())  # the plane's reports read the real clock
    r.plane.send_reports()
    after = r.plane.simulcast.sr_timestamp(route, time.monotonic())
    srs = [x for p in b.rtcp for x in rtcp.parse_rtcp(p) if isinstance(x, rtcp.SenderReport)]
    assert [sr.ssrc for sr in srs] == [route.ssrc]
    assert before is not None and after is not None
    assert 0 <= (srs[0].rtp_timestamp - before) & 0xFFFFFFFF <= (after - before) & 0xFFFFFFFF


def test_holes_in_a_layer_are_nacked_to_the_publisher_at_most_three_times() -> None:
    r, a, b, clock = rig()
    pub = Publisher(r, a, clock)
    pub.frames(1, key={"f"})
    pub.frames(3)
    pub.seq["h"] += 1  # a packet of h is lost on the way in (no receiver is on h: only the round can ask for it)
    missing = pub.seq["h"]
    pub.frames(6)
    for _ in range(5):
        r.plane.simulcast.nack_round()
    nacks = [x for p in a.rtcp for x in rtcp.parse_rtcp(p) if isinstance(x, rtcp.Nack)]
    assert [(n.media_ssrc, list(n.lost)) for n in nacks] == [(SSRCS["h"], [missing])] * 3
    assert r.plane.counters["nack_out"] == 3


def test_a_camera_and_a_screen_with_the_same_rids_keep_their_layers_apart() -> None:
    """The web client sends its camera and its screen as simulcast with the same RIDs (q, f): a new SSRC belongs
    to the track its MID extension names, not to the first track that has its RID."""
    r = Rig()
    r.plane.open_session("A", "chan")
    extra = "".join(f"{line}\r\n" for line in (f"a=extmap:10 {RID_URI}", "a=rid:q send", "a=rid:f send",
                                                "a=simulcast:send q;f"))
    text = offer(("video", "0", "sendrecv", 0), ("video", "1", "sendrecv", 0), ufrag="uA")
    r.plane.handle_signal("A", {"type": "offer", "sdp": text.replace("a=rtcp-mux\r\n", "a=rtcp-mux\r\n" + extra)})
    a = FakePeer("A")
    r.plane.on_connected(a)  # type: ignore[arg-type]

    def packet(mid: str, rid: str, ssrc: int) -> bytes:
        ext = b"\xbe\xde\x00\x01" + bytes([4 << 4]) + mid.encode() + bytes([10 << 4]) + rid.encode()
        return struct.pack("!BBHII", 0x90, 96, 1, 0, ssrc) + ext + bytes(40)

    r.plane.on_rtp(a, packet("1", "q", 0x5151))  # type: ignore[arg-type]  # the screen's low layer first
    r.plane.on_rtp(a, packet("0", "q", 0x5050))  # type: ignore[arg-type]
    camera, screen = r.plane.simulcast.tracks["A_0"], r.plane.simulcast.tracks["A_1"]
    assert camera.ssrcs == {0x5050: 0} and screen.ssrcs == {0x5151: 0}


def test_a_receivers_key_frame_requests_reach_the_publisher_at_most_once_per_second_per_layer() -> None:
    """PLI/FIR toward a simulcast publisher stays throttled: a receiver's burst of PLIs and FIRs (Chromium sends one
    per lost frame it cannot repair) costs the publisher one key frame of the receiver's layer per second."""
    r, a, b, clock = rig()
    pub = Publisher(r, a, clock)
    pub.frames(1, key={"f"})
    pub.frames(40)  # more than a second since the key frame asked for at the start
    route_ssrc = struct.unpack_from("!I", b.rtp[0], 8)[0]
    before = len(plis(a))
    for i in range(5):
        r.plane.on_rtcp(b, rtcp.build_pli(sender_ssrc=9, media_ssrc=route_ssrc))  # type: ignore[arg-type]
        r.plane.on_rtcp(b, rtcp.build_fir(sender_ssrc=9, media_ssrc=route_ssrc, seq=i))  # type: ignore[arg-type]
    assert plis(a)[before:] == [SSRCS["f"]]
    clock.now += 0.5
    r.plane.on_rtcp(b, rtcp.build_pli(sender_ssrc=9, media_ssrc=route_ssrc))  # type: ignore[arg-type]
    assert plis(a)[before:] == [SSRCS["f"]]
    clock.now += 0.6  # a second after the first: the next request goes out
    r.plane.on_rtcp(b, rtcp.build_pli(sender_ssrc=9, media_ssrc=route_ssrc))  # type: ignore[arg-type]
    assert plis(a)[before:] == [SSRCS["f"]] * 2
    assert r.plane.counters["pli_in"] == 12
