"""RTP header parsing, in-place rewriting, extension remapping and sequence helpers (core/wire/rtp.py)."""

from __future__ import annotations

import struct

import pytest
from callsd.core.wire.rtp import (
    ExtendedSeq,
    RtpError,
    RtpHeader,
    StreamRewriter,
    build_rtp,
    find_extension,
    is_rtcp,
    make_extension_remap,
    parse_rtp,
    payload_offset,
    peek_payload_type,
    peek_seq,
    peek_ssrc,
    read_audio_level,
    read_mid,
    rewrite_rtp,
    rewrite_rtx,
    seq_diff,
    seq_newer,
)

# A packet as Chromium sends Opus: one-byte extensions audio-level (id 1) and mid (id 4) and abs-send-time (id 2).
OPUS = RtpHeader(
    marker=True, payload_type=111, sequence=65535, timestamp=0xFFFFFF00, ssrc=0x11223344,
    extension_profile=0xBEDE, extensions=((1, bytes([0x80 | 30])), (2, b"\x01\x02\x03"), (4, b"0")),
)


def test_parse_reads_every_fixed_field_and_the_extensions() -> None:
    pkt = build_rtp(OPUS, b"opus-frame")
    h = parse_rtp(pkt)
    assert (h.marker, h.payload_type, h.sequence, h.timestamp, h.ssrc) == (True, 111, 65535, 0xFFFFFF00, 0x11223344)
    assert h.extensions == OPUS.extensions
    assert pkt[h.payload_offset : h.payload_end] == b"opus-frame"
    assert h.extension(4) == b"0" and h.extension(9) is None


def test_two_byte_extensions_csrcs_and_padding_round_trip() -> None:
    h = RtpHeader(
        marker=False, payload_type=96, sequence=7, timestamp=9, ssrc=1, csrcs=(5, 6),
        extension_profile=0x1000, extensions=((1, b""), (200, b"x" * 20)), padding=4,
    )
    pkt = build_rtp(h, b"vp8")
    p = parse_rtp(pkt)
    assert p.csrcs == (5, 6) and p.extensions == h.extensions and p.padding == 4
    assert pkt[p.payload_offset : p.payload_end] == b"vp8"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x60", "too short"),
        (b"\x40" + bytes(11), "version must be 2"),
        (b"\x8f" + bytes(11), "CSRC count 15"),
        (b"\x90" + bytes(11), "extension header does not fit"),
        (b"\x90" + bytes(11) + b"\xbe\xde\x00\x05", "overruns the packet"),
        (b"\x90" + bytes(11) + b"\xbe\xde\x00\x01\x13\x00\x00\x00", "overruns the block"),
        (b"\xa0" + bytes(11), "no payload bytes"),
        (b"\xa0" + bytes(11) + b"\x00\x05", "padding count 5"),
    ],
)
def test_malformed_packets_raise_rtp_error_naming_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_rtp(data)


def test_peek_helpers_and_demux() -> None:
    pkt = build_rtp(OPUS, b"x")
    assert peek_ssrc(pkt) == 0x11223344 and peek_seq(pkt) == 65535 and peek_payload_type(pkt) == 111
    assert payload_offset(pkt) == parse_rtp(pkt).payload_offset
    assert peek_ssrc(b"\x80") == -1 and peek_seq(b"") == -1 and payload_offset(b"\x90" + bytes(11)) == -1
    assert not is_rtcp(pkt)
    assert is_rtcp(b"\x80\xc8\x00\x06") and is_rtcp(b"\x81\xcd\x00\x02") and not is_rtcp(b"\x80")


def test_audio_level_and_mid_extensions() -> None:
    pkt = build_rtp(OPUS, b"x")
    level = read_audio_level(pkt, 1)
    assert level & 0x80 and level & 0x7F == 30
    assert read_audio_level(pkt, 3) == -1
    assert read_mid(pkt, 4) == "0" and read_mid(pkt, 5) is None
    no_ext = build_rtp(RtpHeader(marker=False, payload_type=111, sequence=1, timestamp=1, ssrc=1), b"x")
    assert read_audio_level(no_ext, 1) == -1 and find_extension(no_ext, 1) is None


def test_rewrite_changes_ssrc_seq_ts_pt_keeps_marker_and_payload() -> None:
    buf = bytearray(build_rtp(OPUS, b"opus-frame"))
    assert rewrite_rtp(buf, 0xAABBCCDD, 70000, 2**32 + 5, 100)
    h = parse_rtp(buf)
    assert (h.ssrc, h.sequence, h.timestamp, h.payload_type, h.marker) == (0xAABBCCDD, 70000 - 65536, 5, 100, True)
    assert h.extensions == OPUS.extensions
    assert bytes(buf[h.payload_offset :]) == b"opus-frame"


def test_extension_remap_renumbers_and_drops_what_the_receiver_did_not_negotiate() -> None:
    buf = bytearray(build_rtp(OPUS, b"frame"))
    before = len(buf)
    remap = make_extension_remap({1: 3, 4: 9})  # abs-send-time (2) not negotiated by this receiver
    assert rewrite_rtp(buf, 1, 1, 1, 111, remap)
    h = parse_rtp(buf)
    assert len(buf) == before
    assert h.extensions == ((3, bytes([0x80 | 30])), (9, b"0"))
    assert bytes(buf[h.payload_offset :]) == b"frame"


def test_two_byte_remap() -> None:
    h = RtpHeader(marker=False, payload_type=96, sequence=1, timestamp=1, ssrc=1, extension_profile=0x1000,
                  extensions=((20, b"ab"), (30, b"")))
    buf = bytearray(build_rtp(h, b"p"))
    assert rewrite_rtp(buf, 1, 1, 1, 96, make_extension_remap({20: 21}))
    assert parse_rtp(buf).extensions == ((21, b"ab"),)


def test_identity_remap_is_detected() -> None:
    assert make_extension_remap({i: i for i in range(1, 256)}).identity
    assert not make_extension_remap({1: 1}).identity


def test_sequence_comparison_wraps() -> None:
    assert seq_newer(0, 65535) and not seq_newer(65535, 0) and not seq_newer(5, 5)
    assert seq_diff(2, 65534) == 4 and seq_diff(65534, 2) == -4 and seq_diff(100, 90) == 10


def test_extended_sequence_counts_cycles() -> None:
    ext = ExtendedSeq()
    seen = [ext.update(s) for s in (65534, 65535, 0, 65533, 1, 2)]
    assert seen == [65534, 65535, 65536, 65533, 65537, 65538]
    assert ext.highest == 65538


def _pkt(ssrc: int, seq: int, ts: int) -> bytearray:
    return bytearray(build_rtp(RtpHeader(marker=False, payload_type=96, sequence=seq, timestamp=ts, ssrc=ssrc), b"v"))


def test_stream_rewriter_is_continuous_across_pause_and_publisher_switch() -> None:
    rw = StreamRewriter(ssrc=42, payload_type=100, clock_rate=90000, initial_seq=1000, initial_ts=5000)
    out = []
    for i, now in zip(range(3), (0, 33, 66), strict=True):
        buf = _pkt(7, (65534 + i) & 0xFFFF, 3000 * i)
        assert rw.rewrite(buf, now)
        out.append(parse_rtp(buf))
    assert [h.sequence for h in out] == [1000, 1001, 1002]
    assert [h.timestamp for h in out] == [5000, 8000, 11000]
    assert {h.ssrc for h in out} == {42} and {h.payload_type for h in out} == {100}
    rw.pause()
    buf = _pkt(7, 500, 999999)  # publisher kept counting while the route was paused; 1 s has passed
    assert rw.rewrite(buf, 1066)
    assert (parse_rtp(buf).sequence, parse_rtp(buf).timestamp) == (1003, 11000 + 90000)
    buf = _pkt(8, 10, 10)  # another publisher (new SSRC) 100 ms later
    assert rw.rewrite(buf, 1166)
    assert (parse_rtp(buf).sequence, parse_rtp(buf).timestamp) == (1004, 101000 + 9000)
    assert not rw.rewrite(_pkt(8, 9, 0), 1170)  # older than the switch: would collide
    late = _pkt(8, 12, 20)
    assert rw.rewrite(late, 1180) and parse_rtp(late).sequence == 1006
    reordered = _pkt(8, 11, 15)
    assert rw.rewrite(reordered, 1181) and parse_rtp(reordered).sequence == 1005
    assert rw.unmap_seq(1005) == 11 and rw.map_seq(11) == 1005


def test_stream_rewriter_output_wraps_at_16_bits() -> None:
    rw = StreamRewriter(ssrc=1, payload_type=96, clock_rate=48000, initial_seq=65535, initial_ts=2**32 - 1)
    a, b = _pkt(5, 0, 0), _pkt(5, 1, 960)
    assert rw.rewrite(a, 0) and rw.rewrite(b, 20)
    assert parse_rtp(a).sequence == 65535 and parse_rtp(b).sequence == 0
    assert parse_rtp(b).timestamp == 959
    assert struct.unpack_from("!I", b, 8)[0] == 1


def test_rtx_packets_get_their_osn_and_timestamp_through_the_media_stream() -> None:
    media = StreamRewriter(ssrc=100, payload_type=96, clock_rate=90000, initial_seq=500, initial_ts=7000)
    rtx = StreamRewriter(ssrc=101, payload_type=97, clock_rate=90000, initial_seq=9000)
    assert media.rewrite(_pkt(5, 40, 3000), 0)  # media seq 40 -> 500, ts 3000 -> 7000
    repair = bytearray(build_rtp(RtpHeader(marker=False, payload_type=97, sequence=3, timestamp=3000, ssrc=6),
                                 struct.pack("!H", 40) + b"frame"))
    assert rewrite_rtx(repair, rtx, media, 10)
    h = parse_rtp(repair)
    assert (h.ssrc, h.sequence, h.timestamp, h.payload_type) == (101, 9000, 7000, 97)
    assert bytes(repair[h.payload_offset : h.payload_offset + 2]) == struct.pack("!H", 500)
    probe = bytearray(build_rtp(RtpHeader(marker=False, payload_type=97, sequence=4, timestamp=1, ssrc=6,
                                          padding=200)))
    assert not rewrite_rtx(probe, rtx, media, 20)
