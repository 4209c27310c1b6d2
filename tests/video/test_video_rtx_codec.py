"""RTX packets (RFC 4588): wrap and unwrap are inverse, the OSN leads the payload, padding and garbage are refused."""

from __future__ import annotations

import struct

from callsd.core.wire.rtp import RtpHeader, build_rtp, parse_rtp
from callsd.core.wire.rtx import unwrap_rtx, wrap_rtx
from hypothesis import given
from hypothesis import strategies as st


def packet(seq: int, payload: bytes, *, marker: bool = True, ext: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    return build_rtp(RtpHeader(payload_type=96, sequence=seq, timestamp=90_000, ssrc=0x1234, marker=marker,
                               extension_profile=0xBEDE if ext else None, extensions=ext), payload)


def test_wrap_puts_the_osn_first_and_keeps_timestamp_marker_and_extensions() -> None:
    original = packet(4242, b"frame-bytes", ext=((4, b"1"),))
    rtx = wrap_rtx(original, ssrc=0xABCD, seq=7, payload_type=97)
    assert rtx is not None
    h = parse_rtp(rtx)
    assert (h.payload_type, h.sequence, h.ssrc, h.timestamp, h.marker) == (97, 7, 0xABCD, 90_000, True)
    assert h.extensions == ((4, b"1"),)
    assert rtx.endswith(struct.pack("!H", 4242) + b"frame-bytes")
    assert unwrap_rtx(rtx, ssrc=0x1234, payload_type=96) == original


def test_padding_only_rtx_and_garbage_unwrap_to_none() -> None:
    probe = build_rtp(RtpHeader(marker=False, payload_type=97, sequence=1, timestamp=0, ssrc=9, padding=224))
    assert unwrap_rtx(probe, ssrc=1, payload_type=96) is None
    assert unwrap_rtx(b"\x80\x61", ssrc=1, payload_type=96) is None
    assert wrap_rtx(b"\x00" * 20, ssrc=1, seq=1, payload_type=97) is None


@given(st.integers(0, 0xFFFF), st.binary(max_size=200), st.booleans(), st.integers(0, 0xFFFF))
def test_unwrap_inverts_wrap(seq: int, payload: bytes, marker: bool, rtx_seq: int) -> None:
    original = packet(seq, payload, marker=marker)
    rtx = wrap_rtx(original, ssrc=5, seq=rtx_seq, payload_type=97)
    assert rtx is not None and parse_rtp(rtx).sequence == rtx_seq
    assert unwrap_rtx(rtx, ssrc=0x1234, payload_type=96) == original


@given(st.binary(max_size=64))
def test_any_bytes_unwrap_or_give_none(data: bytes) -> None:
    unwrap_rtx(data, ssrc=1, payload_type=96)
    wrap_rtx(data, ssrc=1, seq=1, payload_type=97)
