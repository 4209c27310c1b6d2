"""Simulcast switching rules: key-frame detection (VP8, H.264), VP8 id rewriting, and the per-receiver switcher."""

from __future__ import annotations

import struct

from callsd.core.video import (
    LayerPacket,
    LayerSwitcher,
    is_keyframe_start,
    parse_vp8_descriptor,
    rewrite_vp8_ids,
)
from hypothesis import given
from hypothesis import strategies as st


def vp8(*, start: bool = True, key: bool = True, pid: int | None = 300, tl0: int | None = 7) -> bytes:
    x = (0x80 if pid is not None else 0) | (0x40 if tl0 is not None else 0)
    out = bytes([0x80 | (0x10 if start else 0)]) + bytes([x])
    if pid is not None:
        out += struct.pack("!H", 0x8000 | pid)
    if tl0 is not None:
        out += bytes([tl0])
    return out + bytes([0x00 if key else 0x01]) + b"frame"


def test_vp8_key_frames_are_recognised_on_their_first_packet_only() -> None:
    assert is_keyframe_start("VP8", vp8())
    assert not is_keyframe_start("vp8", vp8(key=False))
    assert not is_keyframe_start("vp8", vp8(start=False))
    assert is_keyframe_start("vp8", b"\x10\x00abc")  # no extension bits: 1-byte descriptor
    assert not is_keyframe_start("vp8", b"\x90")  # truncated


def test_h264_idr_and_sps_in_single_stap_a_and_fu_a() -> None:
    assert is_keyframe_start("H264", bytes([0x65]) + b"idr")
    assert is_keyframe_start("h264", bytes([0x67]) + b"sps")
    assert not is_keyframe_start("h264", bytes([0x41]) + b"slice")
    stap = bytes([0x78]) + struct.pack("!H", 3) + bytes([0x67, 1, 2]) + struct.pack("!H", 2) + bytes([0x68, 1])
    assert is_keyframe_start("h264", stap)
    assert is_keyframe_start("h264", bytes([0x7C, 0x85]) + b"x")  # FU-A start of an IDR
    assert not is_keyframe_start("h264", bytes([0x7C, 0x05]) + b"x")  # FU-A continuation
    assert not is_keyframe_start("h264", bytes([0x78]) + struct.pack("!H", 9) + b"\x67")  # overrun
    assert not is_keyframe_start("opus", b"\x65")


def test_vp8_ids_are_rewritten_in_place_keeping_their_width() -> None:
    buf = bytearray(vp8(pid=300, tl0=7))
    assert rewrite_vp8_ids(buf, 0x7FFF + 5, 300)
    d = parse_vp8_descriptor(buf)
    assert d is not None and (d.picture_id, d.picture_id_bits, d.tl0picidx) == (4, 15, 44)
    short = bytearray(b"\x90\x80\x05\x00")
    assert rewrite_vp8_ids(short, 130, None) and parse_vp8_descriptor(short).picture_id == 2  # type: ignore[union-attr]


def pkt(layer: int, seq: int, ts: int, now: float, key: bool = False, pid: int | None = None) -> LayerPacket:
    return LayerPacket(layer=layer, seq=seq, timestamp=ts, keyframe_start=key, now_ms=now, picture_id=pid)


def test_switch_waits_for_a_key_frame_and_continues_the_numbering() -> None:
    sw = LayerSwitcher(target=0)
    assert sw.on_packet(pkt(0, 100, 1000, 0)) is None  # not a key frame: nothing to start decoding from
    first = sw.on_packet(pkt(0, 101, 1000, 0, key=True, pid=10))
    assert first is not None and first.switched and (first.seq, first.timestamp) == (101, 1000)
    assert sw.on_packet(pkt(1, 5000, 777, 0, key=True)) is None  # not the target
    assert sw.on_packet(pkt(0, 102, 4000, 33, pid=11)) is not None
    sw.target = 1
    assert sw.wants_keyframe
    assert sw.on_packet(pkt(1, 5001, 900_000, 40)) is None  # the target's delta frame: keep layer 0
    kept = sw.on_packet(pkt(0, 103, 7000, 66, pid=12))
    assert kept is not None and kept.seq == 103
    up = sw.on_packet(pkt(1, 5002, 900_000, 76, key=True, pid=900))
    assert up is not None and up.switched and up.seq == 104 and up.picture_id == 13
    assert up.timestamp == 7000 + 10 * 90  # 10 ms after the last packet sent, in 90 kHz units
    assert not sw.wants_keyframe
    assert sw.on_packet(pkt(0, 104, 10_000, 80)) is None  # the old layer is no longer forwarded
    assert sw.on_packet(pkt(1, 5001, 899_000, 81)) is None  # reordered, older than the key frame
    nxt = sw.on_packet(pkt(1, 5003, 903_000, 100, pid=901))
    assert nxt is not None and (nxt.seq, nxt.timestamp, nxt.picture_id) == (105, 7900 + 3000, 14)


layers_script = st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.integers(0, 2)), min_size=1, max_size=200)


@given(layers_script, st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.integers(0, 0x7FFF), st.integers(0, 0xFF))
def test_forwarded_numbering_is_seamless(script: list[tuple[int, bool, int]], seq0: int, ts0: int, pid0: int,
                                         tl00: int) -> None:
    """Three layers sending in order, each packet a frame of its own, each layer with its own VP8 picture ids and
    TL0PICIDX (15-bit and 8-bit, wrapping); random key frames and target changes: the receiver sees consecutive
    sequence numbers, non-decreasing timestamps and consecutive picture ids and TL0PICIDX (every frame is a TL0
    frame here), and only switches on key frames of the target."""
    sw = LayerSwitcher()
    seqs = [seq0 + 1000 * i for i in range(3)]
    frame = [0, 0, 0]
    out_seqs: list[int] = []
    out_ts: list[int] = []
    out_ids: list[tuple[int, int]] = []
    now = 0.0
    for layer, key, target in script:
        sw.target = target
        now += 5
        seqs[layer] += 1
        frame[layer] += 1
        before = sw.current
        r = sw.on_packet(LayerPacket(layer=layer, seq=seqs[layer] & 0xFFFF,
                                     timestamp=(ts0 + 3000 * frame[layer] + 7 * layer) & 0xFFFFFFFF,
                                     keyframe_start=key, now_ms=now,
                                     picture_id=(pid0 + 5000 * layer + frame[layer]) & 0x7FFF,
                                     tl0picidx=(tl00 + 90 * layer + frame[layer]) & 0xFF))
        if r is None:
            continue
        assert layer == sw.current
        if r.switched:
            assert key and layer == target and before != layer
        assert r.picture_id is not None and r.tl0picidx is not None
        if out_seqs:
            assert r.seq == (out_seqs[-1] + 1) & 0xFFFF
            assert 0 <= (r.timestamp - out_ts[-1]) & 0xFFFFFFFF < 2**31
            assert (r.picture_id, r.tl0picidx) == ((out_ids[-1][0] + 1) & 0x7FFF, (out_ids[-1][1] + 1) & 0xFF)
        out_seqs.append(r.seq)
        out_ts.append(r.timestamp)
        out_ids.append((r.picture_id, r.tl0picidx))
