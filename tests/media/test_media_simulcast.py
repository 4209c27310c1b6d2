"""Simulcast through the media plane with fake peers: RID learning, one layer per receiver, switches on key frames
with seamless numbering, the receiver's estimate choosing the layer, per-layer PLIs, NACKs in receiver numbering."""

from __future__ import annotations

import struct
from typing import Any

from callsd.core.calls.events import TrackKind
from callsd.core.wire import rtcp
from callsd.core.wire.simulcast_sdp import RID_URI

from .test_media_plane import FakePeer, Rig, offer

SSRCS = {"q": 0x1000, "h": 0x2000, "f": 0x3000}
SIZES = {"q": 100, "h": 400, "f": 1200}


def simulcast_offer() -> str:
    text = offer(("video", "0", "sendrecv", 0), ufrag="uA")
    extra = [f"a=extmap:10 {RID_URI}", "a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f"]
    return text + "\r\n".join(extra) + "\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rig() -> tuple[Rig, FakePeer, FakePeer, Clock]:
    r = Rig(enable_simulcast=True)
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
    assert b.rtp[-1] == sent and r.plane.counters["nack_answered"] == 1
