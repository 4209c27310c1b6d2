"""Hypothesis properties of the forwarding rewrite (adapters/media/forwarder.py).

The forwarder's inlined rewrite must produce exactly what ``core.rtp.rewrite_rtp`` (the reference) produces.
"""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

from callsd.adapters.media.events import SendSignal
from callsd.adapters.media.forwarder import Forwarder, InTrack, OutRoute
from callsd.adapters.media.plane import MediaPlane, PlaneConfig, SdpRejected
from callsd.core.calls.events import TrackKind
from callsd.core.wire.rtp import RtpHeader, build_rtp, make_extension_remap, rewrite_rtp
from hypothesis import given, settings
from hypothesis import strategies as st


class Sink:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []

    def send_rtp(self, plain: bytes) -> bool:
        self.rtp.append(plain)
        return True


def make(start_seq: int, ts_offset: int) -> tuple[Forwarder, InTrack, OutRoute, Sink]:
    fwd = Forwarder(send_pli=lambda t: None, on_voice=lambda s, v: None)
    track = InTrack(track_id="t", session="s", kind=TrackKind.AUDIO, media="audio", mid="0", ssrc=1,
                    clock_rate=48000, codecs={111: ("opus", 48000, 2, "")}, ext={}, stream_id="x")
    sink = Sink()
    route = OutRoute(track=track, receiver=SimpleNamespace(peer=sink), ssrc=0xABCDEF01, mid="s1", paused=False,
                     ts_offset=ts_offset)
    route.last_seq = start_seq
    route.set_mapping({111: 100}, (0,) * 16)
    route.negotiated = True
    track.routes["r"] = route
    track.relive()
    return fwd, track, route, sink


ops = st.lists(st.one_of(st.integers(1, 30), st.just("pause"), st.just("resume")), max_size=40)


@settings(max_examples=200, deadline=None)
@given(ops=ops, seq0=st.integers(0, 0xFFFF), ts0=st.integers(0, 0xFFFFFFFF), start=st.integers(0, 0xFFFF),
       ts_offset=st.integers(0, 0xFFFFFFFF))
def test_receiver_sees_consecutive_sequence_numbers_across_pauses(
    ops: list[int | str], seq0: int, ts0: int, start: int, ts_offset: int
) -> None:
    fwd, track, route, sink = make(start, ts_offset)
    inbound = {1: track}
    seq, ts = seq0, ts0
    sent_in: list[tuple[int, int]] = []
    for op in ops:
        if op == "pause" or op == "resume":
            paused = op == "pause"
            if route.paused != paused:
                route.paused = paused
                route.resync = True
                track.relive()
            continue
        assert isinstance(op, int)
        for _ in range(op):
            pkt = struct.pack("!BBHII", 0x80, 111, seq, ts, 1) + b"p"
            before = len(sink.rtp)
            fwd.on_rtp(inbound, pkt)
            if len(sink.rtp) > before:
                sent_in.append((seq, ts))
            else:
                assert route.paused
            seq = (seq + 1) & 0xFFFF
            ts = (ts + 960) & 0xFFFFFFFF
    outs = [struct.unpack("!BBHII", p[:12]) for p in sink.rtp]
    for (_, b1, _oseq, ots, ossrc), (_iseq, its) in zip(outs, sent_in, strict=True):
        assert ossrc == 0xABCDEF01 and b1 & 0x7F == 100
        assert (ots - its) & 0xFFFFFFFF == ts_offset  # timestamps shift by a constant: real time is kept
    for prev, cur in zip(outs, outs[1:], strict=False):
        assert (cur[2] - prev[2]) & 0xFFFF == 1
    if outs:
        assert outs[0][2] == (start + 1) & 0xFFFF


one_byte = st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=5)
two_byte = st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=20)), max_size=5)


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    """Valid RTP packets with any extension form, CSRCs, marker, padding, PT 111 (the route's) or another."""
    form = draw(st.sampled_from(["none", "one", "two"]))
    profile = {"none": None, "one": 0xBEDE, "two": 0x1000 | draw(st.integers(0, 15))}[form]
    exts = draw(one_byte) if form == "one" else draw(two_byte) if form == "two" else []
    h = RtpHeader(marker=draw(st.booleans()), payload_type=draw(st.sampled_from([111, 111, 0])),
                  sequence=draw(st.integers(0, 0xFFFF)), timestamp=draw(st.integers(0, 0xFFFFFFFF)), ssrc=1,
                  csrcs=tuple(draw(st.lists(st.integers(0, 0xFFFFFFFF), max_size=3))), extension_profile=profile,
                  extensions=tuple(exts), padding=draw(st.sampled_from([0, 0, 1, 4])))
    return build_rtp(h, draw(st.binary(min_size=1, max_size=60)))


@settings(max_examples=300, deadline=None)
@given(pkts=st.lists(packets(), min_size=1, max_size=6),
       mapping=st.dictionaries(st.integers(1, 255), st.integers(0, 255), max_size=6),
       garbage=st.booleans())
def test_forwarded_packets_equal_core_rewrite_rtp(pkts: list[bytes], mapping: dict[int, int],
                                                  garbage: bool) -> None:
    fwd, track, route, sink = make(0, 123456)
    remap = make_extension_remap(mapping)
    route.set_mapping({111: 100}, remap)
    for i, pkt in enumerate(pkts):
        if garbage and i == len(pkts) - 1 and len(pkt) > 16:
            pkt = pkt[:14]  # a truncated extension header: dropped by both
        before = len(sink.rtp)
        fwd.on_rtp({1: track}, pkt)
        buf = bytearray(pkt)
        seq, ts = struct.unpack_from("!HI", pkt, 2)
        ok = len(pkt) >= 12 and pkt[1] & 0x7F == 111 and rewrite_rtp(
            buf, route.ssrc, seq + route.seq_offset, ts + route.ts_offset, 100, remap)
        if len(sink.rtp) > before:
            assert ok and sink.rtp[-1] == bytes(buf)
            assert route.rewrite(pkt) == bytes(buf)  # the NACK path too
        elif ok:  # only padding-only probes are dropped that rewrite_rtp would forward
            assert pkt[0] & 0x20 and len(pkt) - pkt[-1] <= _payload_offset(pkt)


def _payload_offset(pkt: bytes) -> int:
    off = 12 + 4 * (pkt[0] & 0x0F)
    if pkt[0] & 0x10:
        off += 4 + 4 * struct.unpack_from("!H", pkt, off + 2)[0]
    return off


def _reference_rewrite(pkt: bytes, route: OutRoute) -> bytes | None:
    """What the receiver of ``route`` should get for ``pkt``: core's ``rewrite_rtp`` of an RTP packet addressed to
    the track (version 2, its SSRC and payload type), or None when it should get nothing."""
    if len(pkt) < 12 or pkt[0] >> 6 != 2 or pkt[1] & 0x7F != 111 or struct.unpack_from("!I", pkt, 8)[0] != 1:
        return None
    buf = bytearray(pkt)
    seq, ts = struct.unpack_from("!HI", pkt, 2)
    ok = rewrite_rtp(buf, route.ssrc, seq + route.seq_offset, ts + route.ts_offset, 100, route.remap)
    return bytes(buf) if ok else None


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64))
def test_garbage_reaches_the_receiver_only_as_the_reference_rewrite(data: bytes) -> None:
    """Any bytes a publisher sends (random, and random behind a version-2 header with the track's SSRC and payload
    type, the random bits choosing padding, extension and CSRC count): the forwarder never raises, and the
    receiver gets either nothing or exactly what core's ``rewrite_rtp`` makes of them. The one packet the
    reference would forward and the forwarder does not is a padding-only probe, and the forwarder counts it."""
    packets = [data]
    if len(data) >= 12:
        b0, b1 = 0x80 | (data[0] & 0x3F), 111 | (data[1] & 0x80)
        packets.append(bytes([b0, b1]) + data[2:8] + b"\x00\x00\x00\x01" + data[12:])
    for pkt in packets:
        fwd, track, route, sink = make(0, 0)
        fwd.on_rtp({1: track}, pkt)
        expected = _reference_rewrite(pkt, route)
        if sink.rtp:
            assert sink.rtp == [expected]
        elif expected is not None:
            assert fwd.counters.drop_padding == 1, pkt.hex()


DATA = Path(__file__).resolve().parent / "data"
OFFERS = [(DATA / name).read_text() for name in ("offer_chromium.sdp", "offer_aiortc.sdp")]


@settings(max_examples=150, deadline=None)
@given(offer=st.sampled_from(OFFERS), data=st.data())
def test_the_plane_answers_or_raises_sdp_rejected_for_any_mutated_offer(offer: str, data: st.DataObject) -> None:
    events: list[object] = []
    plane = MediaPlane(PlaneConfig(ice_port_udp=40000), events.append)
    plane.open_session("A", "chan")
    lines = offer.splitlines()
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "dup", "cut"]))
        if action == "drop" and len(lines) > 1:
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        else:
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))]
    for kind in ("offer", "answer", "offer"):
        try:
            plane.handle_signal("A", {"type": kind, "sdp": "\r\n".join(lines) + "\r\n"})
        except SdpRejected:
            continue
    answers = [e for e in events if isinstance(e, SendSignal) and e.msg["type"] == "answer"]
    assert all(a.msg["sdp"].startswith("v=0") for a in answers)
    plane.close_session("A")
